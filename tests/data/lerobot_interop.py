"""The lerobot side of tests/data/test_lerobot_interop.py: run by `.venv-lerobot/bin/python` (make lerobot-env), never
imported by clearvla or by the main test environment. It uses only the real `lerobot` package and numpy.

    python lerobot_interop.py read ROOT OUT       LeRobotDataset on a clearvla dataset at ROOT -> OUT.json + OUT.npz
    python lerobot_interop.py write ROOT MODE OUT LeRobotDataset.create / add_frame / save_episode, MODE av1 | h264 |
                                                  png, one camera "front" -> OUT.json + OUT.npz (frames written, and
                                                  frames as LeRobot decodes them)

OUT.json holds what LeRobot reports (features, fps, episode bounds, tasks, ...); OUT.npz the frames, uint8
[N, H, W, 3] per camera, in dataset index order.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.aggregate import aggregate_datasets
from lerobot.datasets.compute_stats import compute_episode_stats
from lerobot.datasets.lerobot_dataset import LeRobotDataset

FPS = 10
SIZE = (48, 64)  # H, W: not square, so a transposed frame shows


def _uint8(frame) -> np.ndarray:
    """LeRobot's float [3, H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return np.round(frame.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def _decoded(dataset: LeRobotDataset) -> dict[str, np.ndarray]:
    return {key: np.stack([_uint8(dataset[i][key]) for i in range(len(dataset))]) for key in dataset.meta.camera_keys}


def _episode_stats(dataset: LeRobotDataset) -> dict[str, dict[str, list]]:
    """LeRobot's own per-episode statistics of episode 0's numeric features, from the frames it loads."""
    meta = dataset.meta
    start, end = int(meta.episodes[0]["dataset_from_index"]), int(meta.episodes[0]["dataset_to_index"])
    rows = dataset.hf_dataset.select(range(start, end)).with_format("numpy")
    keys = [k for k, f in meta.features.items() if f["dtype"] not in ("image", "video", "string")]
    data = {k: np.asarray(rows[k]).reshape(end - start, -1) if meta.features[k]["shape"] != [1] else np.asarray(rows[k])
            for k in keys}
    stats = compute_episode_stats(data, meta.features)
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


def read(root: Path, out: Path) -> None:
    """Everything the test compares, as LeRobot sees the dataset at `root`."""
    dataset = LeRobotDataset("clearvla/ours", root=root)
    meta = dataset.meta
    report = {
        "features": {k: {"dtype": f["dtype"], "shape": list(f["shape"])} for k, f in meta.features.items()},
        "fps": meta.fps, "total_episodes": meta.total_episodes, "total_frames": meta.total_frames,
        "camera_keys": meta.camera_keys,
        "bounds": [[int(e["dataset_from_index"]), int(e["dataset_to_index"])] for e in meta.episodes],
        "episode_tasks": [list(e["tasks"]) for e in meta.episodes],
        "tasks": {str(t): int(i) for t, i in zip(meta.tasks.index, meta.tasks["task_index"])},
        "frame_tasks": [dataset[i]["task"] for i in (0, len(dataset) - 1)],
        "episode_stats": _episode_stats(dataset),
        "stats_keys": sorted(meta.stats),
    }
    frame = dataset[0]
    report["sample_shapes"] = {k: list(v.shape) for k, v in frame.items() if hasattr(v, "shape")}
    window = LeRobotDataset("clearvla/ours", root=root, delta_timestamps={"action": [0.0, 1 / meta.fps, 2 / meta.fps]})
    last = window[int(meta.episodes[0]["dataset_to_index"]) - 1]  # the window runs past the episode's end: padded
    report["delta"] = {"shape": list(last["action"].shape), "pad": last["action_is_pad"].tolist()}
    aggregated = out.parent / f"{out.name}-aggregated"
    shutil.rmtree(aggregated, ignore_errors=True)
    copy = out.parent / f"{out.name}-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    aggregate_datasets(["clearvla/ours", "clearvla/copy"], "clearvla/both", roots=[root, copy], aggr_root=aggregated)
    both = LeRobotDataset("clearvla/both", root=aggregated)
    report["aggregated"] = {"total_episodes": both.meta.total_episodes, "total_frames": both.meta.total_frames,
                            "last_index": int(both[len(both) - 1]["index"])}
    frames = _decoded(dataset)
    np.savez(out.with_suffix(".npz"), **frames, aggregated_last=_decoded_last(both))
    out.with_suffix(".json").write_text(json.dumps(report))


def _decoded_last(dataset: LeRobotDataset) -> np.ndarray:
    """The last frame of the first camera of `dataset`."""
    return _uint8(dataset[len(dataset) - 1][dataset.meta.camera_keys[0]])


def write(root: Path, mode: str, out: Path) -> None:
    """A two-episode dataset written by LeRobot's own writer in `mode`, then read back by LeRobot."""
    from lerobot.configs.video import RGBEncoderConfig

    features = {
        "observation.images.front": {"dtype": "image" if mode == "png" else "video", "shape": [*SIZE, 3],
                                     "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [6], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": None},
    }
    options = {"rgb_encoder": RGBEncoderConfig(vcodec="h264")} if mode == "h264" else {}
    dataset = LeRobotDataset.create("lerobot/written", fps=FPS, features=features, root=root, robot_type="so100",
                                    use_videos=mode != "png", **options)
    rng = np.random.default_rng(0)
    written, actions = [], []
    ys, xs = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    for e, length in enumerate((7, 9)):
        for t in range(length):
            # smooth moving waves, as cameras see (a hard colour edge is smeared by any codec's 4:2:0 chroma)
            red = 128 + 90 * np.sin(2 * np.pi * (xs + 3 * t) / SIZE[1])
            green = 128 + 90 * np.cos(2 * np.pi * (ys + 5 * e) / SIZE[0])
            image = np.stack([red, green, np.full(xs.shape, 60 + 10 * t)], -1).round().astype(np.uint8)
            action = rng.normal(0, 0.01, 7).astype(np.float32)
            dataset.add_frame({"observation.images.front": image, "observation.state": rng.normal(size=6).astype(np.float32),
                               "action": action, "task": f"push the block {('left', 'right')[e]}"})
            written.append(image)
            actions.append(action)
        dataset.save_episode()
    dataset.finalize()
    back = LeRobotDataset("lerobot/written", root=root)
    report = {"fps": back.meta.fps, "total_episodes": back.meta.total_episodes, "total_frames": back.meta.total_frames,
              "codec": back.meta.features["observation.images.front"].get("info", {}).get("video.codec")}
    np.savez(out.with_suffix(".npz"), written=np.stack(written), decoded=_decoded(back)["observation.images.front"],
             actions=np.stack(actions))
    out.with_suffix(".json").write_text(json.dumps(report))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "read":
        read(Path(args[0]), Path(args[1]))
    elif command == "write":
        write(Path(args[0]), args[1], Path(args[2]))
    else:
        sys.exit(f"unknown command {command!r}; use read or write")
