"""LeRobot v3.0 metadata: names, path templates, and the meta/ files (info, stats, tasks, episodes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clearvla.data.episode import Episode
from clearvla.data.formats.lerobot_stats import aggregate, image_stats, vector_stats
from clearvla.errors import DataError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
# clearvla's per-camera attention masks (training only): h*w uint8 per frame, flat. Earlier recordings declared
# shape [h, w] for the same flat column, which LeRobot cannot read (it casts to nested lists); now shape [h*w] with
# the mask size in the feature's "info".
ATTENTION_PREFIX = "observation.attention."
MASK_HEIGHT, MASK_WIDTH = "mask.height", "mask.width"
ACTION = "action"
METADATA_COLUMN = "clearvla/metadata"
EPISODES_PER_META_FILE = 10_000
EEF_ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
_INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


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
        self._frames: dict[str, list[np.ndarray]] = {}  # numeric per-frame features, per episode, for stats.json
        self._image_stats: dict[str, list[dict[str, list]]] = {}  # per camera, per episode
        self._n_frames = 0

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

    def _numeric(self, episode: Episode, index: int) -> dict[str, np.ndarray]:
        """The episode's numeric per-frame features (attention masks aside) as [T, D] arrays."""
        n = len(episode)
        frame_index = np.arange(n)
        columns = {ACTION: episode.actions, **({STATE: episode.proprio} if episode.proprio is not None else {}),
                   "timestamp": (frame_index / self.fps).astype(np.float32), "frame_index": frame_index, "episode_index": np.full(n, index),
                   "index": self._n_frames + frame_index, "task_index": np.full(n, self.tasks[episode.instruction]),
                   "next.done": np.asarray(episode.is_terminal, dtype=np.float64)}
        return {key: np.asarray(values).reshape(n, -1) for key, values in columns.items()}

    def add_episode(self, episode: Episode, row: dict[str, Any]) -> None:
        """Record one written episode: its meta/episodes `row` (file locations) gains tasks, length, stats."""
        index = self.n_episodes
        row = {"episode_index": index, "tasks": [episode.instruction], "length": len(episode), **row}
        per_feature: dict[str, dict[str, list]] = {}
        for key, values in self._numeric(episode, index).items():
            per_feature[key] = vector_stats(values)
            self._frames.setdefault(key, []).append(values)
        for name, frames in episode.images.items():
            per_feature[IMAGE_PREFIX + name] = image_stats(frames)
            self._image_stats.setdefault(IMAGE_PREFIX + name, []).append(per_feature[IMAGE_PREFIX + name])
        for key, stats in per_feature.items():
            row.update({f"stats/{key}/{stat}": value for stat, value in stats.items()})
        row[METADATA_COLUMN] = json.dumps(episode.metadata, default=_jsonable, sort_keys=True)
        meta_file = index // EPISODES_PER_META_FILE
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = meta_file // CHUNKS_SIZE, meta_file % CHUNKS_SIZE
        self.rows.append(row)
        self._n_frames += len(episode)

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
            features[ATTENTION_PREFIX + name] = {"dtype": "uint8", "shape": [h * w], "names": None,
                                                 "info": {MASK_HEIGHT: h, MASK_WIDTH: w}}
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in _INDEX_FEATURES[1:]:
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
        return features

    def _stats(self) -> dict[str, Any]:
        """meta/stats.json: exact statistics of every numeric feature; images aggregated from the episodes' (as
        LeRobot aggregates them)."""
        stats: dict[str, Any] = {key: vector_stats(np.concatenate(parts)) for key, parts in self._frames.items()}
        stats.update({key: aggregate(parts) for key, parts in self._image_stats.items()})
        return stats

    def write(self, root: Path) -> None:
        meta = root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        n_frames = self._n_frames
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
