"""LeRobot v3.0 datasets: clearvla's native on-disk format, read and written.

    meta/info.json                                   codebase_version "v3.0", fps, features, path templates, totals
    meta/stats.json                                  per-feature min/max/mean/std/count (+ q01..q99 for vectors)
    meta/tasks.parquet                               task (the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, data file + row range
                                                     (dataset_from_index / dataset_to_index), per camera the video
                                                     file and from/to timestamps, per-episode stats
    data/chunk-000/file-000.parquet                  one row per frame: action, observation.state, timestamp,
                                                     frame_index, episode_index, index, task_index, next.done
    videos/observation.images.<camera>/chunk-000/file-000.mp4   many episodes per file, one after another

Files roll over at `data_files_size_in_mb` / `video_files_size_in_mb`; 1000 files make a chunk. Episode cameras map to
`observation.images.<name>`, proprio to `observation.state`, attention masks to `observation.attention.<name>` (h*w
uint8 per frame, flat, declared with shape [h*w] and the mask size in the feature's "info"; LeRobot loads it as one
more vector; older recordings declared [h, w], which LeRobot cannot load and we still read). Episode metadata
round-trips as JSON in the extra episodes column `clearvla/metadata` (LeRobot ignores it). Datasets LeRobot wrote
(AV1 or H.264 video, or PNG images in the parquet files) read the same way; camera names are the dataset's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clearvla.data.episode import Episode
from clearvla.data.formats import SkipLog, hash_files, iter_source
from clearvla.data.formats.lerobot_meta import (
    ACTION,
    ATTENTION_PREFIX,
    CHUNKS_SIZE,
    DATA_PATH,
    IMAGE_PREFIX,
    MASK_HEIGHT,
    MASK_WIDTH,
    METADATA_COLUMN,
    STATE,
    VIDEO_PATH,
    MetaBuilder,
    read_episodes,
    read_tasks,
)
from clearvla.data.formats.parquet_rows import EpisodeRows
from clearvla.data.formats.video import VideoEncoder, decode_frames
from clearvla.errors import DataError

_MB = 1 << 20


def _vectors(column: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    """A list / fixed-size-list column of n rows -> [n, D] float32."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, -1)


class LeRobotWriter:
    """Writes a NEW LeRobot v3.0 dataset; the directory appears only when `close()` finishes (atomic rename).

    Use as a context manager: an exception inside the block discards everything written. Every episode must
    have the cameras, image sizes, action and proprio widths of the first.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        robot_type: str = "unknown",
        crf: int = 18,
        data_files_size_in_mb: int = 100,
        video_files_size_in_mb: int = 500,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise DataError(f"{self.root}: already exists and is not empty; LeRobotWriter only writes new datasets")
        if fps <= 0:
            raise DataError(f"fps must be positive, got {fps}")
        self.fps, self.crf = int(fps), crf
        self._tmp = self.root.parent / f".{self.root.name}.partial-{uuid.uuid4().hex[:8]}"
        self._tmp.mkdir(parents=True)
        self._meta = MetaBuilder(
            fps=self.fps, robot_type=robot_type, data_mb=data_files_size_in_mb, video_mb=video_files_size_in_mb
        )
        self._data_limit, self._video_limit = data_files_size_in_mb * _MB, video_files_size_in_mb * _MB
        self._data_writer: pq.ParquetWriter | None = None
        self._data_file = -1  # running file number; chunk = n // CHUNKS_SIZE, file = n % CHUNKS_SIZE
        self._data_bytes = 0
        self._videos: dict[str, VideoEncoder] = {}
        self._video_file: dict[str, int] = {}
        self._frames = 0
        self._closed = False

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _path(self, template: str, n: int, **kw: Any) -> Path:
        return self._tmp / template.format(chunk_index=n // CHUNKS_SIZE, file_index=n % CHUNKS_SIZE, **kw)

    def add_episode(self, episode: Episode) -> None:
        """Append one episode (frames encoded now; nothing is held back but metadata and statistics)."""
        if self._closed:
            raise DataError(f"{self.root}: writer is closed")
        if len(episode) == 0:
            raise DataError(f"{self.root}: episode {self._meta.n_episodes} has no steps")
        self._meta.check_schema(episode)
        index = self._meta.n_episodes
        row: dict[str, Any] = {}
        for name in episode.cameras:
            key = IMAGE_PREFIX + name
            encoder = self._videos.get(key)
            if encoder is None or encoder.bytes_written >= self._video_limit:
                if encoder is not None:
                    encoder.close()
                self._video_file[key] = self._video_file.get(key, -1) + 1
                _, h, w, _ = episode.images[name].shape
                path = self._path(VIDEO_PATH, self._video_file[key], video_key=key)
                encoder = self._videos[key] = VideoEncoder(path, fps=self.fps, width=w, height=h, crf=self.crf)
            start, end = encoder.append(episode.images[name])
            n = self._video_file[key]
            row.update({f"videos/{key}/chunk_index": n // CHUNKS_SIZE, f"videos/{key}/file_index": n % CHUNKS_SIZE,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end})
        table = self._frame_table(episode, index)
        if self._data_writer is None or self._data_bytes >= self._data_limit:
            if self._data_writer is not None:
                self._data_writer.close()
            self._data_file += 1
            path = self._path(DATA_PATH, self._data_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer, self._data_bytes = pq.ParquetWriter(path, table.schema), 0
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        row.update({"data/chunk_index": self._data_file // CHUNKS_SIZE, "data/file_index": self._data_file % CHUNKS_SIZE,
                    "dataset_from_index": self._frames, "dataset_to_index": self._frames + len(episode)})
        self._frames += len(episode)
        self._meta.add_episode(episode, row)

    def _frame_table(self, episode: Episode, episode_index: int) -> pa.Table:
        n = len(episode)
        columns: dict[str, pa.Array] = {}
        if episode.proprio is not None:
            columns[STATE] = pa.FixedSizeListArray.from_arrays(pa.array(episode.proprio.reshape(-1)), episode.proprio.shape[1])
        columns[ACTION] = pa.FixedSizeListArray.from_arrays(pa.array(episode.actions.reshape(-1)), episode.actions.shape[1])
        for name, masks in sorted((episode.attention or {}).items()):
            columns[ATTENTION_PREFIX + name] = pa.FixedSizeListArray.from_arrays(pa.array(masks.reshape(-1)), masks[0].size)
        frame_index = np.arange(n, dtype=np.int64)
        columns["timestamp"] = pa.array((frame_index / self.fps).astype(np.float32))
        columns["frame_index"] = pa.array(frame_index)
        columns["episode_index"] = pa.array(np.full(n, episode_index, dtype=np.int64))
        columns["index"] = pa.array(self._frames + frame_index)
        columns["task_index"] = pa.array(np.full(n, self._meta.task_index(episode.instruction), dtype=np.int64))
        columns["next.done"] = pa.array(np.asarray(episode.is_terminal, dtype=bool))
        return pa.table(columns)

    def close(self) -> None:
        """Finish the files, write meta/ (info, stats, tasks, episodes) and move the dataset into place."""
        if self._closed:
            return
        try:
            for encoder in self._videos.values():
                encoder.close()
            if self._data_writer is not None:
                self._data_writer.close()
            self._meta.write(self._tmp)
            if self.root.exists():
                if any(self.root.iterdir()):
                    raise DataError(f"{self.root}: appeared and is not empty while writing; result left in {self._tmp}")
                self.root.rmdir()
            os.replace(self._tmp, self.root)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard everything written (the target directory is never created)."""
        self._closed = True
        for encoder in self._videos.values():
            try:
                encoder.close()
            except Exception:  # already broken: the files are deleted next anyway
                pass
        if self._data_writer is not None:
            try:
                self._data_writer.close()
            except Exception:
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)


class LeRobotSource:
    """Episodes of a LeRobot v3 dataset directory, by position in meta/episodes (sorted by episode_index)."""

    format = "lerobot"

    def __init__(self, root: str | Path, *, dataset_name: str | None = None) -> None:
        self.path = Path(root)
        info_path = self.path / "meta" / "info.json"
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{info_path}: cannot read ({e})") from None
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise DataError(f"{info_path}: codebase_version {version!r} is not supported; only LeRobot v3.x datasets are")
        self.name = dataset_name or self.path.name
        self.fps = float(self.info["fps"])
        features = self.info.get("features", {})
        self.video_keys = [k for k, f in features.items() if f.get("dtype") == "video"]
        self.image_keys = [k for k, f in features.items() if f.get("dtype") == "image"]
        self.cameras = [self.camera_name(k) for k in self.video_keys + self.image_keys]  # the dataset's own names
        self.episodes = read_episodes(self.path)
        self.tasks = read_tasks(self.path)
        self._files: dict[Path, EpisodeRows] = {}

    def __len__(self) -> int:
        return len(self.episodes)

    @staticmethod
    def camera_name(key: str) -> str:
        return key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key

    def fingerprint(self) -> str:
        meta = [p for p in (self.path / "meta").rglob("*") if p.is_file() and p.name != "stats.json"]
        return hash_files([*meta, *(self.path / "data").rglob("*.parquet")], self.path, extra=f"lerobot:{self.name}")

    def load(self, index: int, *, images: bool = True, cameras: Sequence[str] | None = None) -> Episode:
        row = self.episodes[index]
        ep = int(row["episode_index"])
        where = f"{self.path}: episode {ep}"
        path = self.path / self.info.get("data_path", DATA_PATH).format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
        )
        if path not in self._files:
            self._files[path] = EpisodeRows(path)
        frames = self._files[path].read(ep, None if cameras is None else self._columns(cameras))
        n = len(frames)
        if n == 0:
            raise DataError(f"{where}: no frames in {path}")
        if n != int(row["length"]):
            raise DataError(f"{where}: {path} has {n} frames, meta/episodes says {row['length']}")
        try:
            actions = _vectors(frames.column(ACTION), n)
            proprio = _vectors(frames.column(STATE), n) if STATE in frames.column_names else None
            task_index = int(frames.column("task_index")[0].as_py())
            terminal = None
            if "next.done" in frames.column_names:
                terminal = frames.column("next.done").to_numpy(zero_copy_only=False).astype(bool)
            attention = self._attention(frames, n)
        except (KeyError, pa.ArrowException, ValueError) as e:
            raise DataError(f"{where}: malformed frames in {path} ({e})") from None
        decoded: dict[str, np.ndarray] = {}
        if images:
            for key in self.video_keys + self.image_keys:
                name = self.camera_name(key)
                if cameras is not None and name not in cameras:
                    continue
                decoded[name] = self._video(key, row, n, where) if key in self.video_keys else self._images(frames, key, where)
        metadata = json.loads(row.get(METADATA_COLUMN) or "{}")
        metadata["episode_index"] = ep
        try:
            return Episode(decoded, actions, self.tasks.get(task_index, ""), proprio, is_terminal=terminal,
                           dataset_name=self.name, metadata=metadata, attention=attention)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None

    def _columns(self, cameras: Sequence[str]) -> list[str]:
        """The data-file columns an episode with these cameras needs: everything but other cameras' masks and images."""
        def other_camera(key: str) -> bool:
            prefix = next((p for p in (ATTENTION_PREFIX, IMAGE_PREFIX) if key.startswith(p)), None)
            return prefix is not None and key[len(prefix):] not in cameras

        return [k for k in self.info.get("features", {}) if not other_camera(k)] + ["task_index", "next.done"]

    def _attention(self, frames: pa.Table, n: int) -> dict[str, np.ndarray] | None:
        """Per-camera attention masks [n, h, w] uint8 (sizes from info.json's features), or None if none recorded."""
        masks = {}
        for key, feature in self.info.get("features", {}).items():
            if key.startswith(ATTENTION_PREFIX) and key in frames.column_names:
                h, w = self._mask_size(key, feature)
                column = frames.column(key).combine_chunks().flatten()
                masks[key.removeprefix(ATTENTION_PREFIX)] = column.to_numpy(zero_copy_only=False).astype(np.uint8).reshape(n, h, w)
        return masks or None

    def _mask_size(self, key: str, feature: dict) -> tuple[int, int]:
        """(h, w) of an attention feature: shape [h*w] with info mask.height / mask.width, or (older) shape [h, w]."""
        shape, info = feature.get("shape", []), feature.get("info") or {}
        if len(shape) == 2:
            return int(shape[0]), int(shape[1])
        if len(shape) == 1 and MASK_HEIGHT in info and MASK_WIDTH in info and info[MASK_HEIGHT] * info[MASK_WIDTH] == shape[0]:
            return int(info[MASK_HEIGHT]), int(info[MASK_WIDTH])
        raise DataError(f"{self.path / 'meta' / 'info.json'}: feature {key!r} needs shape [h*w] with info {MASK_HEIGHT} "
                        f"and {MASK_WIDTH}, or shape [h, w]; got shape {shape}, info {info}")

    def _video(self, key: str, row: dict, n: int, where: str) -> np.ndarray:
        path = self.path / self.info.get("video_path", VIDEO_PATH).format(
            video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"])
        )
        start = round(float(row[f"videos/{key}/from_timestamp"]) * self.fps)
        return decode_frames(path, start=start, count=n, fps=self.fps, where=f"{where}, camera {key}")

    @staticmethod
    def _images(frames: pa.Table, key: str, where: str) -> np.ndarray:
        import io

        from PIL import Image

        out = []
        for k, cell in enumerate(frames.column(key).to_pylist()):
            try:
                with Image.open(io.BytesIO(cell["bytes"])) as image:
                    out.append(np.asarray(image.convert("RGB")))
            except (OSError, TypeError, KeyError) as e:
                raise DataError(f"{where}, camera {key}, frame {k}: cannot decode image ({e})") from None
        return np.stack(out)


def read_lerobot(root: str | Path, *, on_error: str = "fail", skips: SkipLog | None = None) -> Iterator[Episode]:
    """Every episode of a LeRobot v3 dataset, in episode order. on_error="skip" logs and counts unreadable
    episodes in `skips` (pass one to see them) instead of failing."""
    for _, episode in iter_source(LeRobotSource(root), on_error=on_error, skips=skips):
        yield episode
