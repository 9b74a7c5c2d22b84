"""Synthetic data the data tests write themselves: episodes, and RLDS shards in the OpenX layout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from clearvla.data.episode import Episode

SIZE = 32  # image side: small keeps video encoding and JPEG work negligible


def frames(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """[n, size, size, 3] uint8: smooth gradients drifting over time, distinct per seed (video-friendly)."""
    y, x = np.mgrid[0:size, 0:size] * (128.0 / size)
    base = int(np.random.default_rng(seed).integers(0, 60))
    return np.stack(
        [np.stack([40 + x + t + base, 40 + y + base, np.full_like(x, 60 + 2 * base + t)], -1) for t in range(n)]
    ).clip(0, 255).astype(np.uint8)


def make_episode(n: int = 12, seed: int = 0, *, instruction: str = "pick up the red block", size: int = SIZE,
                 wrist: bool = True, name: str = "toy") -> Episode:
    """An OpenVLA-convention episode: small deltas, binary gripper (open, then closed), 8-D proprio."""
    rng = np.random.default_rng(seed)
    actions = rng.normal(0.0, 0.01, size=(n, 7)).astype(np.float32)
    actions[:, 6] = (np.arange(n) < n // 2).astype(np.float32)
    images = {"image": frames(n, seed, size)}
    if wrist:
        images["wrist_image"] = frames(n, seed + 100, size)[:, ::-1].copy()
    terminal = np.arange(n) == n - 1
    return Episode(images, actions, instruction, rng.normal(size=(n, 8)).astype(np.float32), is_terminal=terminal,
                   dataset_name=name, metadata={"seed": seed})


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt.upper(), **({"quality": 95} if fmt == "jpeg" else {}))
    return buffer.getvalue()


def _image_feature(shape: tuple[int, ...], fmt: str) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
            "image": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": "uint8", "encodingFormat": fmt}}


def _tensor_feature(shape: tuple[int, ...], dtype: str = "float32") -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": dtype, "encoding": "none"}}


def _scalar(dtype: str) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.scalar.Scalar",
            "tensor": {"shape": {}, "dtype": dtype, "encoding": "none"}}


def _text() -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}


def _dict(features: dict) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": features}}


def write_rlds(root: Path, name: str, episodes: list[dict], *, shards: int = 1, image_format: str = "png") -> Path:
    """Write `episodes` (each {"steps": {flat step key: [T, ...] array or list}, "file_path": str}) as an RLDS
    dataset `root/name/1.0.0` in the OpenX layout, with the `tfrecord` package's writer (independent of clearvla).
    PNG images by default, so pixels compare exactly; OpenX itself uses JPEG."""
    from tfrecord import TFRecordWriter

    directory = root / name / "1.0.0"
    directory.mkdir(parents=True)
    step_features: dict = {}
    first = episodes[0]["steps"]
    for key, value in first.items():
        parts = key.split("/")
        node = step_features
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if key.startswith("observation/image") or key.endswith("wrist_image"):
            node[parts[-1]] = _image_feature(np.asarray(value).shape[1:], image_format)
        elif isinstance(value, list) and isinstance(value[0], str):
            node[parts[-1]] = _text()
        elif np.asarray(value).ndim == 1:
            node[parts[-1]] = _scalar("bool" if np.asarray(value).dtype == bool else "float32")
        else:
            node[parts[-1]] = _tensor_feature(np.asarray(value).shape[1:])

    def nest(tree: dict) -> dict:
        return _dict({k: nest(v) if "pythonClassName" not in v else v for k, v in tree.items()})

    features = _dict({
        "steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                  "sequence": {"feature": nest(step_features), "length": "-1"}},
        "episode_metadata": _dict({"file_path": _text()}),
    })
    (directory / "features.json").write_text(json.dumps(features, indent=2))
    per_shard = [episodes[i::shards] for i in range(shards)]
    (directory / "dataset_info.json").write_text(json.dumps({
        "name": name, "version": "1.0.0", "fileFormat": "tfrecord", "moduleName": f"{name}.{name}_dataset_builder",
        "splits": [{"name": "train", "shardLengths": [str(len(s)) for s in per_shard], "numBytes": "0",
                    "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"}],
    }))
    for i, shard in enumerate(per_shard):
        writer = TFRecordWriter(str(directory / f"{name}-train.tfrecord-{i:05d}-of-{shards:05d}"))
        for episode in shard:
            datum = {"episode_metadata/file_path": (episode.get("file_path", "raw.h5").encode(), "byte")}
            for key, value in episode["steps"].items():
                if key.startswith("observation/image") or key.endswith("wrist_image"):
                    datum[f"steps/{key}"] = ([encode_image(im, image_format) for im in value], "byte")
                elif isinstance(value, list):
                    datum[f"steps/{key}"] = ([v.encode() for v in value], "byte")
                elif np.asarray(value).dtype == bool:
                    datum[f"steps/{key}"] = (np.asarray(value, dtype=np.int64).reshape(-1).tolist(), "int")
                else:
                    datum[f"steps/{key}"] = (np.asarray(value, dtype=np.float32).reshape(-1).tolist(), "float")
            writer.write(datum)
        writer.close()
    return directory


def rlds_steps(n: int, seed: int, *, instruction: str, action: dict | np.ndarray, state: np.ndarray | None,
               cameras: tuple[str, ...], instruction_key: str = "language_instruction") -> dict:
    """The `steps` of one RLDS episode: cameras under observation/, flags, instruction per step."""
    steps: dict = {f"observation/{cam}": frames(n, seed + i) for i, cam in enumerate(cameras)}
    if state is not None:
        steps["observation/state"] = state
    if isinstance(action, dict):
        steps.update({f"action/{k}": v for k, v in action.items()})
    else:
        steps["action"] = action
    steps[instruction_key] = [instruction] * n
    steps["is_first"] = np.arange(n) == 0
    steps["is_last"] = np.arange(n) == n - 1
    steps["is_terminal"] = np.arange(n) == n - 1
    return steps
