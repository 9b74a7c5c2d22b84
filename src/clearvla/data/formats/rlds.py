"""RLDS / TFDS datasets as Open X-Embodiment publishes them, read without TensorFlow.

Layout of one dataset version directory (e.g. `bridge_orig/1.0.0/`):
    dataset_info.json                           name, version, splits (shard counts)
    features.json                               TFDS FeaturesDict: `steps` is a Dataset of per-step features
    <name>-train.tfrecord-00000-of-00064 ...    one `tf.train.Example` per episode

TFDS flattens an episode into one Example: step feature `steps/observation/image` is a bytes list with one encoded
JPEG/PNG per step, `steps/action` a float list of T*7 values, `steps/is_first` an int64 list, `steps/language_instruction`
one string per step; episode-level features (`episode_metadata/file_path`) hold one value. Images are decoded
with Pillow only for the steps and cameras actually used.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from clearvla.data.episode import Episode
from clearvla.data.formats import hash_files
from clearvla.data.formats.oxe import standardizer_for
from clearvla.data.formats.tfrecord import RecordSpan, index_records, parse_example, read_record
from clearvla.errors import DataError


@dataclass(frozen=True)
class FeatureSpec:
    """One leaf of features.json, flattened: `key` is the Example key ("steps/observation/image")."""

    key: str
    kind: str  # "image" | "tensor" | "text"
    dtype: str  # numpy name ("uint8", "float32", "bool", "string")
    shape: tuple[int, ...]  # per step for step features; -1 = unknown
    step: bool  # inside the `steps` sequence
    encoding: str = "none"  # images: "jpeg" | "png"; tensors: "none" | "bytes" | "zlib"


def _shape(node: dict) -> tuple[int, ...]:
    dims = node.get("shape", {}).get("dimensions", [])
    return tuple(-1 if d in (None, "None") else int(d) for d in dims)


def parse_features(tree: dict, prefix: str = "", step: bool = False) -> dict[str, FeatureSpec]:
    """TFDS features.json tree -> {flat key: FeatureSpec}. Unknown leaf types are left out."""
    out: dict[str, FeatureSpec] = {}
    if "featuresDict" in tree:
        for name, child in tree["featuresDict"].get("features", {}).items():
            out.update(parse_features(child, f"{prefix}{name}/", step))
    elif "sequence" in tree:
        out.update(parse_features(tree["sequence"]["feature"], prefix, True))
    elif "image" in tree:
        image = tree["image"]
        fmt = image.get("encodingFormat") or "png"
        out[prefix[:-1]] = FeatureSpec(prefix[:-1], "image", image.get("dtype", "uint8"), _shape(image), step, fmt)
    elif "tensor" in tree:
        tensor = tree["tensor"]
        kind = "text" if tensor.get("dtype") == "string" else "tensor"
        out[prefix[:-1]] = FeatureSpec(
            prefix[:-1], kind, tensor.get("dtype", "float32"), _shape(tensor), step, tensor.get("encoding", "none")
        )
    elif "text" in tree:
        out[prefix[:-1]] = FeatureSpec(prefix[:-1], "text", "string", (), step)
    elif "classLabel" in tree:
        out[prefix[:-1]] = FeatureSpec(prefix[:-1], "tensor", "int64", (), step)
    return out


class EncodedImages:
    """Per-step encoded images of one camera, decoded on demand."""

    def __init__(self, frames: list[bytes], where: str) -> None:
        self.frames = frames
        self.where = where

    def __len__(self) -> int:
        return len(self.frames)

    def decode_all(self, steps: slice = slice(None)) -> np.ndarray:
        """[K, H, W, 3] uint8 RGB for the steps in `steps`."""
        out = []
        for k in range(*steps.indices(len(self.frames))):
            try:
                with Image.open(io.BytesIO(self.frames[k])) as image:
                    out.append(np.asarray(image.convert("RGB")))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise DataError(f"{self.where}, step {k}: cannot decode image ({e})") from None
        if not out:
            return np.zeros((0, 1, 1, 3), np.uint8)
        try:
            return np.stack(out)
        except ValueError:
            raise DataError(f"{self.where}: images change size within the episode") from None


def _decode_tensor(spec: FeatureSpec, value: Any, n: int, where: str) -> Any:
    if spec.encoding in ("bytes", "zlib"):
        dtype = np.dtype("uint8" if spec.dtype == "bool" else spec.dtype)
        raw = [zlib.decompress(v) if spec.encoding == "zlib" else v for v in value]
        arrays = [np.frombuffer(v, dtype=dtype).reshape([d if d >= 0 else -1 for d in spec.shape] or ()) for v in raw]
        array = np.stack(arrays) if spec.step else arrays[0]
    else:
        array = np.asarray(value)
    if spec.dtype == "bool":
        array = array.astype(bool)
    elif np.issubdtype(array.dtype, np.number) and spec.dtype in ("float16", "float64", "float32"):
        array = array.astype(np.float32)
    known = all(d >= 0 for d in spec.shape)
    try:
        if spec.step:
            return array.reshape((n, *spec.shape) if known else (n, -1))
        return array.reshape(spec.shape) if known else array
    except ValueError:
        raise DataError(f"{where}: feature {spec.key!r} has {array.size} values, not {n} steps of shape {spec.shape}") from None


def decode_example(features: dict[str, FeatureSpec], example: dict[str, Any], where: str) -> dict:
    """Flat Example values -> nested trajectory dict with the `steps/` prefix removed; episode-level features
    keep their prefix (e.g. traj["episode_metadata"]["file_path"]). Images stay encoded (EncodedImages)."""
    n = None
    for spec in features.values():
        if spec.step and spec.key in example and (spec.kind in ("image", "text") or spec.shape == ()):
            n = len(example[spec.key])
            break
    traj: dict = {}
    for spec in features.values():
        if spec.key not in example:
            continue
        value = example[spec.key]
        if spec.step and n is None:
            raise DataError(f"{where}: cannot tell the number of steps (no scalar, text or image step feature)")
        if spec.kind == "image":
            decoded: Any = EncodedImages(list(value), f"{where}, feature {spec.key}")
        elif spec.kind == "text":
            texts = [v.decode("utf-8", "replace") for v in value]
            decoded = texts if spec.step else (texts[0] if texts else "")
        else:
            decoded = _decode_tensor(spec, value, n or 0, where)
        if spec.step and len(decoded) != n:
            raise DataError(f"{where}: feature {spec.key!r} has {len(decoded)} steps, others have {n}")
        parts = spec.key.split("/")
        if parts[0] == "steps":
            parts = parts[1:]
        node = traj
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = decoded
    return traj


class RLDSSource:
    """Episodes of one RLDS dataset version directory (or a single shard file next to its features.json)."""

    format = "rlds"

    def __init__(
        self, path: str | Path, *, dataset_name: str | None = None, standardize: str | None = "auto", split: str = "train"
    ) -> None:
        self.path = Path(path)
        directory = self.path.parent if self.path.is_file() else self.path
        info = self._read_json(directory / "dataset_info.json", required=False) or {}
        tree = self._read_json(directory / "features.json", required=False) or info.get("features")
        if not isinstance(tree, dict):
            raise DataError(f"{directory}: no features.json (TFDS feature description) found")
        self.features = parse_features(tree)
        if not self.features:
            raise DataError(f"{directory}/features.json: no readable features")
        default_name = directory.parent.name if directory.name[:1].isdigit() else directory.name
        self.name = dataset_name or info.get("name") or default_name
        self.standardization, self._standardize = standardizer_for(self.name, standardize)
        self.shards = [self.path] if self.path.is_file() else self._find_shards(directory, info, split)

    @staticmethod
    def _read_json(path: Path, required: bool) -> Any:
        if not path.is_file():
            if required:
                raise DataError(f"{path}: missing")
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None

    def _find_shards(self, directory: Path, info: dict, split: str) -> list[Path]:
        shards = sorted(directory.glob(f"*-{split}.tfrecord*")) or sorted(directory.glob("*.tfrecord*"))
        if not shards:
            raise DataError(f"{directory}: no *.tfrecord* shards for split {split!r}")
        for entry in info.get("splits", []):
            expected = len(entry.get("shardLengths", []))
            if entry.get("name") == split and expected and expected != len(shards):
                raise DataError(
                    f"{directory}: dataset_info.json lists {expected} {split} shards but {len(shards)} are present"
                )
        return shards

    @cached_property
    def spans(self) -> list[RecordSpan]:
        return [span for shard in self.shards for span in index_records(shard)]

    def __len__(self) -> int:
        return len(self.spans)

    def fingerprint(self) -> str:
        directory = self.path.parent if self.path.is_file() else self.path
        meta = [p for p in (directory / "features.json", directory / "dataset_info.json") if p.is_file()]
        return hash_files([*self.shards, *meta], directory, extra=f"rlds:{self.name}:{self.standardization}")

    def load(self, index: int, *, images: bool = True, cameras: Sequence[str] | None = None) -> Episode:
        span = self.spans[index]
        where = f"{span.path}: record {span.index}"
        example = parse_example(read_record(span), where)
        traj = decode_example(self.features, example, where)
        try:
            std = self._standardize(traj)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        except (KeyError, ValueError, IndexError) as e:
            raise DataError(f"{where}: cannot standardise as {self.standardization} ({type(e).__name__}: {e})") from None
        decoded = {}
        if images:
            obs = traj.get("observation", {})
            for name, key in std.cameras.items():
                if (cameras is None or name in cameras) and isinstance(obs.get(key), EncodedImages):
                    decoded[name] = obs[key].decode_all(std.keep)
        terminal = np.asarray(traj["is_terminal"], dtype=bool)[std.keep] if "is_terminal" in traj else None
        metadata: dict[str, Any] = {"source": f"{span.path.name}:{span.index}", "standardization": self.standardization}
        if std.dropped_leading_zero:
            metadata["dropped_leading_zero_steps"] = std.dropped_leading_zero
        for key, value in traj.items():
            if key not in ("observation", "action") and isinstance(value, dict):
                for sub, item in value.items():
                    metadata[f"{key}/{sub}"] = item.item() if isinstance(item, np.ndarray) and item.size == 1 else item
        try:
            return Episode(
                decoded, std.actions, std.instruction, std.proprio,
                is_terminal=terminal, dataset_name=self.name, metadata=metadata,
            )
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
