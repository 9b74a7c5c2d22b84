"""Readers and writers for on-disk robot datasets (RLDS/TFRecord, LeRobot v3, HDF5).

Every reader is an `EpisodeSource`: random access to episodes by index, each load raising `DataError` that names
the file and the record / episode. `iter_source` walks a source under the user's `on_error` choice: "fail" stops
at the first bad episode, "skip" logs it, counts it in a `SkipLog` and goes on; nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from clearvla.data.episode import Episode
from clearvla.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("fail", "skip")
FORMATS = ("lerobot", "rlds", "hdf5")


class EpisodeSource(Protocol):
    """Random access to the episodes of one dataset."""

    path: Path
    name: str  # dataset name: the key of norm_stats
    format: str  # one of FORMATS

    def __len__(self) -> int: ...

    def load(self, index: int, *, images: bool = True, cameras: Sequence[str] | None = None) -> Episode:
        """Episode `index` (0 <= index < len). images=False skips decoding (images == {}); `cameras` limits
        which are decoded. Raises DataError naming the file and record / episode."""
        ...

    def fingerprint(self) -> str:
        """Hex digest of the content that determines actions, instructions and step counts."""
        ...


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
    return on_error


@dataclass
class SkipLog:
    """Episodes skipped under on_error="skip": each message names the file and record / episode."""

    messages: list[str] = field(default_factory=list)

    def record(self, error: DataError) -> None:
        self.messages.append(str(error))
        log.warning("skipped: %s (%d skipped so far)", error, len(self.messages))

    def __len__(self) -> int:
        return len(self.messages)


def iter_source(
    source: EpisodeSource,
    *,
    on_error: str = "fail",
    images: bool = True,
    cameras: Sequence[str] | None = None,
    indices: Iterable[int] | None = None,
    skips: SkipLog | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Episode]]:
    """(index, episode) for each readable episode in `indices` (default: all), honouring `on_error`.
    `progress(1)` is called once per episode attempted, read or skipped."""
    check_on_error(on_error)
    skips = SkipLog() if skips is None else skips
    for index in range(len(source)) if indices is None else indices:
        try:
            episode = source.load(index, images=images, cameras=cameras)
        except DataError as e:
            if on_error == "fail":
                raise
            skips.record(e)
            episode = None
        if progress is not None:
            progress(1)
        if episode is not None:
            yield index, episode


def hash_files(paths: Iterable[Path], root: Path, extra: str = "") -> str:
    """blake2b over (relative path, bytes) of each file, in sorted order; `extra` is mixed in first."""
    digest = hashlib.blake2b(extra.encode(), digest_size=16)
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return digest.hexdigest()


def detect_format(path: str | Path) -> str:
    """"lerobot" (meta/info.json), "rlds" (features.json / dataset_info.json / *.tfrecord*) or "hdf5" (.hdf5/.h5)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() in (".hdf5", ".h5"):
            return "hdf5"
        if ".tfrecord" in path.name:
            return "rlds"
    elif (path / "meta" / "info.json").is_file():
        return "lerobot"
    elif (path / "features.json").is_file() or (path / "dataset_info.json").is_file() or any(path.glob("*.tfrecord*")):
        return "rlds"
    elif any(path.glob("*.hdf5")) or any(path.glob("*.h5")):
        return "hdf5"
    raise DataError(
        f"{path}: cannot tell the dataset format (expected a LeRobot v3 directory with meta/info.json, an RLDS "
        "directory with features.json / dataset_info.json and *.tfrecord* shards, or .hdf5 files)"
    )


def open_source(
    path: str | Path,
    *,
    format: str = "auto",
    name: str | None = None,
    standardize: str | None = "auto",
) -> EpisodeSource:
    """Open a dataset of any supported format. `name` overrides the dataset name (norm_stats key).
    `standardize` picks the action standardisation for RLDS ("auto": by dataset name) and HDF5 ("auto": LIBERO's
    signed gripper); None keeps raw actions."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "lerobot":
        from clearvla.data.formats.lerobot import LeRobotSource

        return LeRobotSource(path, dataset_name=name)
    if fmt == "rlds":
        from clearvla.data.formats.rlds import RLDSSource

        return RLDSSource(path, dataset_name=name, standardize=standardize)
    if fmt == "hdf5":
        from clearvla.data.formats.hdf5 import HDF5Source

        convention = "signed_close1" if standardize == "auto" else standardize
        return HDF5Source(path, dataset_name=name, gripper_convention=convention)
    raise ConfigError(f"unknown dataset format {format!r}; use auto or one of: {', '.join(FORMATS)}")
