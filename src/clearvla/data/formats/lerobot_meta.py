"""LeRobot v3.0 metadata: names, path templates, and the meta/ files (info, stats, tasks, episodes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clearvla.data.episode import Episode
from clearvla.errors import DataError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ATTENTION_PREFIX = "observation.attention."  # clearvla's per-camera attention masks (training-only; LeRobot ignores them)
ACTION = "action"
METADATA_COLUMN = "clearvla/metadata"
EPISODES_PER_META_FILE = 10_000
EEF_ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
_QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
_INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def vector_stats(x: np.ndarray, quantiles: bool = True) -> dict[str, list]:
    """[N, D] -> LeRobot stats: min, max, mean, std (population), count, and q01..q99 per dimension."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
           "count": [len(x)]}
    if quantiles:
        out.update({name: np.quantile(x, q, axis=0).tolist() for name, q in _QUANTILES.items()})
    return out


class _ImageStats:
    """Running per-channel statistics of frames scaled to [0, 1], on every 4th pixel (LeRobot samples too)."""

    def __init__(self) -> None:
        self.sum, self.sumsq = np.zeros(3), np.zeros(3)
        self.min, self.max = np.full(3, np.inf), np.full(3, -np.inf)
        self.pixels = self.frames = 0

    def add(self, frames: np.ndarray) -> None:
        x = frames[:, ::4, ::4].reshape(-1, 3).astype(np.float64) / 255.0
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)
        self.min, self.max = np.minimum(self.min, x.min(0)), np.maximum(self.max, x.max(0))
        self.pixels += len(x)
        self.frames += len(frames)

    def to_dict(self) -> dict[str, list]:
        mean = self.sum / max(self.pixels, 1)
        std = np.sqrt(np.maximum(self.sumsq / max(self.pixels, 1) - mean**2, 0.0))
        as_c11 = lambda v: [[[float(c)]] for c in v]  # noqa: E731  LeRobot's [3, 1, 1] image stats layout
        return {
            "min": as_c11(self.min), "max": as_c11(self.max), "mean": as_c11(mean), "std": as_c11(std),
            "count": [self.frames],
        }


class MetaBuilder:
    """Collects what meta/ needs while a LeRobotWriter streams episodes, and writes it at the end."""

    def __init__(self, *, fps: int, robot_type: str, data_mb: int, video_mb: int) -> None:
        self.fps, self.robot_type, self.data_mb, self.video_mb = fps, robot_type, data_mb, video_mb
        self.rows: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {}
        self.cameras: dict[str, tuple[int, int]] | None = None
        self.action_dim = 0
        self.proprio_dim: int | None = None
        self.attention: dict[str, tuple[int, int]] = {}
        self._actions: list[np.ndarray] = []
        self._proprio: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._task_per_episode: list[int] = []
        self._images: dict[str, _ImageStats] = {}

    @property
    def n_episodes(self) -> int:
        return len(self.rows)

    def check_schema(self, episode: Episode) -> None:
        cameras = {name: tuple(frames.shape[1:3]) for name, frames in episode.images.items()}
        proprio = None if episode.proprio is None else episode.proprio.shape[1]
        attention = {name: tuple(masks.shape[1:]) for name, masks in (episode.attention or {}).items()}
        if self.cameras is None:
            self.cameras, self.action_dim, self.proprio_dim = cameras, episode.actions.shape[1], proprio
            self.attention = attention
            self._images = {name: _ImageStats() for name in cameras}
            return
        got = (cameras, episode.actions.shape[1], proprio, attention)
        want = (self.cameras, self.action_dim, self.proprio_dim, self.attention)
        if got != want:
            raise DataError(
                f"episode {self.n_episodes} does not match the dataset: cameras/sizes, action dim, proprio dim, "
                f"attention masks {got} vs {want} of episode 0"
            )

    def task_index(self, instruction: str) -> int:
        return self.tasks.setdefault(instruction, len(self.tasks))

    def add_episode(self, episode: Episode, row: dict[str, Any]) -> None:
        index = self.n_episodes
        row = {"episode_index": index, "tasks": [episode.instruction], "length": len(episode), **row}
        for key, values in ((ACTION, episode.actions), (STATE, episode.proprio)):
            if values is not None:
                for stat, value in vector_stats(values, quantiles=False).items():
                    row[f"stats/{key}/{stat}"] = value
        row[METADATA_COLUMN] = json.dumps(episode.metadata, default=_jsonable, sort_keys=True)
        meta_file = index // EPISODES_PER_META_FILE
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = meta_file // CHUNKS_SIZE, meta_file % CHUNKS_SIZE
        self.rows.append(row)
        self._actions.append(episode.actions)
        if episode.proprio is not None:
            self._proprio.append(episode.proprio)
        self._lengths.append(len(episode))
        self._task_per_episode.append(self.tasks[episode.instruction])
        for name, frames in episode.images.items():
            self._images[name].add(frames)

    def _features(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, (h, w) in (self.cameras or {}).items():
            features[IMAGE_PREFIX + name] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False},
            }
        if self.proprio_dim is not None:
            names = [f"state_{i}" for i in range(self.proprio_dim)]
            features[STATE] = {"dtype": "float32", "shape": [self.proprio_dim], "names": names}
        names = EEF_ACTION_NAMES if self.action_dim == 7 else [f"action_{i}" for i in range(self.action_dim)]
        features[ACTION] = {"dtype": "float32", "shape": [self.action_dim], "names": names}
        for name, (h, w) in self.attention.items():
            features[ATTENTION_PREFIX + name] = {"dtype": "uint8", "shape": [h, w], "names": ["height", "width"]}
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in _INDEX_FEATURES[1:]:
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
        return features

    def _stats(self) -> dict[str, Any]:
        if not self.rows:
            return {}
        stats: dict[str, Any] = {ACTION: vector_stats(np.concatenate(self._actions))}
        if self._proprio:
            stats[STATE] = vector_stats(np.concatenate(self._proprio))
        frame_index = np.concatenate([np.arange(n) for n in self._lengths])
        columns = {
            "timestamp": frame_index / self.fps,
            "frame_index": frame_index,
            "episode_index": np.repeat(np.arange(len(self._lengths)), self._lengths),
            "index": np.arange(len(frame_index)),
            "task_index": np.repeat(self._task_per_episode, self._lengths),
        }
        stats.update({key: vector_stats(values[:, None]) for key, values in columns.items()})
        stats.update({IMAGE_PREFIX + name: s.to_dict() for name, s in self._images.items()})
        return stats

    def write(self, root: Path) -> None:
        meta = root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        n_frames = int(sum(self._lengths))
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": self.n_episodes, "total_frames": n_frames, "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": self.data_mb, "video_files_size_in_mb": self.video_mb,
            "fps": self.fps, "splits": {"train": f"0:{self.n_episodes}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if self.cameras else None,
            "features": self._features(),
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4))
        (meta / "stats.json").write_text(json.dumps(self._stats(), indent=4))
        tasks = pa.table({
            "task_index": pa.array(list(self.tasks.values()), pa.int64()),
            "task": pa.array(list(self.tasks), pa.string()),
        })
        # pandas metadata makes `pd.read_parquet` give LeRobot's frame: task strings as the index.
        pandas_meta = {"index_columns": ["task"], "column_indexes": [], "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}]}
        pq.write_table(tasks.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), root / TASKS_PATH)
        for start in range(0, max(self.n_episodes, 1), EPISODES_PER_META_FILE):
            rows = self.rows[start : start + EPISODES_PER_META_FILE]
            n = start // EPISODES_PER_META_FILE
            path = root / EPISODES_PATH.format(chunk_index=n // CHUNKS_SIZE, file_index=n % CHUNKS_SIZE)
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(rows) if rows else pa.table({"episode_index": pa.array([], pa.int64())})
            pq.write_table(table, path)


def read_episodes(root: Path) -> list[dict[str, Any]]:
    """meta/episodes rows (per-episode stats columns left out), sorted by episode_index."""
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DataError(f"{root}: no meta/episodes/*/*.parquet files")
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            names = pq.read_schema(path).names
            rows += pq.read_table(path, columns=[c for c in names if not c.startswith("stats/")]).to_pylist()
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: cannot read episodes metadata ({e})") from None
    return sorted(rows, key=lambda r: r["episode_index"])


def read_tasks(root: Path) -> dict[int, str]:
    """task_index -> task, from meta/tasks.parquet (the task is a column or the pandas index)."""
    path = root / TASKS_PATH
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read tasks ({e})") from None
    column = "task" if "task" in table.column_names else next((c for c in table.column_names if c != "task_index"), None)
    if column is None or "task_index" not in table.column_names:
        raise DataError(f"{path}: needs a task_index column and the task strings")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(column).to_pylist())}
