"""Export any readable dataset, optionally cleaned, as a NEW LeRobot v3 dataset (sources are never modified)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clearvla.data.cleaning import CleaningConfig, CleaningPlan, plan_cleaning
from clearvla.data.formats import EpisodeSource, SkipLog, iter_source
from clearvla.data.formats.lerobot import LeRobotWriter
from clearvla.errors import ConfigError, DataError

# Control rates of datasets whose files do not record one (RLDS has no fps field; LIBERO's HDF5 neither).
KNOWN_FPS = {"bridge_orig": 5, "bridge_dataset": 5, "fractal20220817_data": 3, "libero": 20}


def default_fps(source: EpisodeSource) -> int | None:
    """The source's own frame rate (LeRobot), a known dataset's, or None."""
    fps = getattr(source, "fps", None)
    if fps:
        return int(round(fps))
    if source.name in KNOWN_FPS:
        return KNOWN_FPS[source.name]
    return KNOWN_FPS["libero"] if source.name.startswith("libero") else None


@dataclass
class ExportResult:
    path: Path
    episodes: int
    frames: int
    skipped: list[str]  # reader errors skipped under on_error="skip"


def plan_for_export(
    source: EpisodeSource, cleaning: CleaningConfig, *, on_error: str, progress: Callable[[int], None] | None = None
) -> tuple[CleaningPlan, SkipLog]:
    """The cleaning plan of `source` (first pass, actions only), with the episodes the reader skipped."""
    skips = SkipLog()
    episodes = iter_source(source, on_error=on_error, images=False, skips=skips, progress=progress)
    plan = plan_cleaning(episodes, cleaning, source.name)
    plan.report.dropped_episodes["unreadable"] += len(skips)
    plan.report.episodes_in += len(skips)
    return plan, skips


def export_lerobot(
    source: EpisodeSource,
    root: str | Path,
    *,
    fps: int | None = None,
    robot_type: str = "unknown",
    plan: CleaningPlan | None = None,
    on_error: str = "fail",
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write `source` (only `plan`'s kept episodes and steps, when given) as a new LeRobot v3 dataset at `root`."""
    root = Path(root)
    if root.resolve() == Path(source.path).resolve():
        raise ConfigError(f"{root}: the output must be a new directory, not the source dataset")
    fps = fps or default_fps(source)
    if not fps:
        raise ConfigError(f"{source.path}: the dataset does not record its frame rate; pass fps (e.g. --fps 10)")
    entries = {e.index: e for e in plan.episodes} if plan is not None else None
    indices = sorted(entries) if entries is not None else None
    skips = SkipLog()
    frames = episodes = 0
    with LeRobotWriter(root, fps=fps, robot_type=robot_type) as writer:
        for index, episode in iter_source(source, on_error=on_error, indices=indices, skips=skips, progress=progress):
            if entries is not None:
                entry = entries[index]
                if len(episode) <= int(entry.steps[-1]):
                    raise DataError(f"{source.path}: episode {index} changed between the cleaning pass and the export")
                episode = plan.apply(entry, episode)
            writer.add_episode(episode)
            episodes += 1
            frames += len(episode)
    return ExportResult(root, episodes, frames, skips.messages)
