"""The cleaned view of one dataset that statistics, mixtures and the loader share, cached by content hash.

A scan reads every episode without images, applies the cleaning rules and computes the statistics. The result
(kept steps, cleaned actions, instructions, report, statistics) is cached under
`blake2b(dataset file bytes, cleaning settings, on_error, cache version)`, so an unchanged dataset is never scanned
twice and any change to its files or to the rules gives a fresh scan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clearvla.data.cleaning import CleanEpisode, CleaningConfig, CleaningReport, plan_cleaning
from clearvla.data.formats import EpisodeSource, SkipLog, check_on_error, iter_source
from clearvla.data.stats import compute_statistics
from clearvla.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = "1"


@dataclass
class DatasetIndex:
    """Kept episodes of one dataset (source order), with its cleaning report and statistics block."""

    name: str
    key: str  # content hash this index is cached under
    episodes: list[CleanEpisode]
    report: CleaningReport
    statistics: dict[str, Any]  # OpenVLA per-dataset block (see clearvla.data.stats)
    skipped: list[str]  # reader errors skipped under on_error="skip"

    @property
    def num_transitions(self) -> int:
        return int(self.statistics["num_transitions"])

    @property
    def num_trajectories(self) -> int:
        return len(self.episodes)


def cache_key(source: EpisodeSource, cleaning: CleaningConfig, on_error: str) -> str:
    text = "\n".join([CACHE_VERSION, source.format, source.name, source.fingerprint(), cleaning.key(), on_error])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _cache_path(cache_dir: Path, name: str, key: str) -> Path:
    return cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{key}.npz"


def _save(path: Path, index: DatasetIndex) -> None:
    lengths = [len(e.steps) for e in index.episodes]
    width = index.episodes[0].actions.shape[1] if index.episodes else 0
    meta = {
        "name": index.name, "key": index.key, "instructions": [e.instruction for e in index.episodes],
        "report": index.report.to_dict(), "statistics": index.statistics, "skipped": index.skipped,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        source_index=np.asarray([e.index for e in index.episodes], dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        steps=np.concatenate([e.steps for e in index.episodes]) if lengths else np.zeros(0, np.int64),
        actions=np.concatenate([e.actions for e in index.episodes]) if lengths else np.zeros((0, width), np.float32),
        meta=np.asarray(json.dumps(meta)),
    )
    os.replace(tmp, path)


def _load(path: Path) -> DatasetIndex:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        offsets, steps, actions, sources = data["offsets"], data["steps"], data["actions"], data["source_index"]
        episodes = [
            CleanEpisode(int(sources[i]), steps[offsets[i] : offsets[i + 1]], actions[offsets[i] : offsets[i + 1]], None, text)
            for i, text in enumerate(meta["instructions"])
        ]
    report = CleaningReport.from_dict(meta["report"])
    return DatasetIndex(meta["name"], meta["key"], episodes, report, meta["statistics"], meta["skipped"])


def scan_dataset(
    source: EpisodeSource,
    cleaning: CleaningConfig | None = None,
    *,
    on_error: str = "fail",
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> DatasetIndex:
    """Clean `source` (actions only) and compute its statistics, reusing the cache in `cache_dir` when the
    dataset and settings are unchanged. Raises DataError when no episode survives."""
    cleaning = cleaning or CleaningConfig()
    check_on_error(on_error)
    key = cache_key(source, cleaning, on_error)
    path = _cache_path(Path(cache_dir), source.name, key) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            index = _load(path)
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable statistics cache %s (%s)", path, e)
        else:
            if index.skipped:
                log.warning("%s: %d unreadable episodes were skipped when this cached index was built, e.g. %s",
                            source.name, len(index.skipped), index.skipped[0])
            if progress is not None:
                progress(len(source))
            return index
    skips = SkipLog()
    episodes = iter_source(source, on_error=on_error, images=False, skips=skips, progress=progress)
    plan = plan_cleaning(episodes, cleaning, source.name)
    plan.report.dropped_episodes["unreadable"] += len(skips)
    plan.report.episodes_in += len(skips)
    if not plan.episodes:
        raise DataError(
            f"{source.path}: no usable episodes in dataset {source.name!r} after cleaning ({plan.report.to_dict()})"
        )
    actions = np.concatenate([e.actions for e in plan.episodes])
    proprios = [e.proprio for e in plan.episodes]
    proprio = np.concatenate(proprios) if all(p is not None for p in proprios) else None
    statistics = compute_statistics(actions, proprio, len(plan.episodes), gripper_dim=cleaning.gripper_dim)
    for episode in plan.episodes:
        episode.proprio = None  # not needed after the statistics; keeps the index small
    index = DatasetIndex(source.name, key, plan.episodes, plan.report, statistics, skips.messages)
    if path is not None:
        _save(path, index)
    return index

