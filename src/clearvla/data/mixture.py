"""Weighted mixtures of datasets, with OpenVLA's sampling semantics and a train/val split by episode.

OpenVLA (`make_interleaved_dataset`): each dataset d has a sampling weight w_d; with `balance_weights` the weights
are multiplied by the dataset sizes (number of transitions) N_d, then normalised, so frames are drawn from d with
probability p_d = w_d * N_d / sum_e(w_e * N_e) (or w_d / sum_e w_e without balancing). A weight of 1 for every
dataset and balancing gives every frame of the mixture the same chance.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from clearvla.actions.normalize import NormStats
from clearvla.data.cleaning import CleaningConfig, CleaningReport
from clearvla.data.formats import EpisodeSource, open_source
from clearvla.data.index import DatasetIndex, scan_dataset
from clearvla.data.stats import action_norm_stats, save_dataset_statistics
from clearvla.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a mixture. `name` overrides the dataset's own name (its norm_stats key). `normalize_like`
    names another dataset of the mixture whose statistics normalise this one's actions and state (the same robot
    and action space, e.g. handover recordings beside the demonstrations); it then adds no norm_stats key."""

    path: str | Path
    weight: float = 1.0
    name: str | None = None
    format: str = "auto"
    standardize: str | None = "auto"
    normalize_like: str | None = None


def sampling_probabilities(weights: Sequence[float], sizes: Sequence[int], balance: bool) -> np.ndarray:
    """OpenVLA's per-dataset sampling probabilities (see the module docstring)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ConfigError(f"mixture weights must be finite, >= 0 and not all 0, got {list(weights)}")
    if balance:
        w = w * np.asarray(sizes, dtype=np.float64)
    return w / w.sum()


def split_episodes(n: int, val_fraction: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions 0..n-1 split into (train, val) by a seeded permutation; val gets round(val_fraction * n) episodes
    but train keeps at least one. The same (seed, name, n) always gives the same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(n)
    n_val = min(int(round(val_fraction * n)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class MixtureMember:
    """One dataset in a mixture: its source, cleaned index, sampling probability and split (positions into
    `index.episodes`)."""

    source: EpisodeSource
    index: DatasetIndex
    weight: float
    probability: float
    train: np.ndarray
    val: np.ndarray
    normalize_like: str | None = None

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def stats_key(self) -> str:
        """The norm_stats key that normalises this dataset."""
        return self.normalize_like or self.name


class Mixture:
    """Datasets ready for the loader: cleaned, with statistics, weights and a train/val split."""

    def __init__(self, members: list[MixtureMember]) -> None:
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"dataset names in a mixture must be unique (they key norm_stats), got {names}")
        own = {m.name for m in members if m.normalize_like is None}
        for m in members:
            if m.normalize_like is not None and m.normalize_like not in own:
                raise ConfigError(f"dataset {m.name!r}: normalize_like {m.normalize_like!r} is not a dataset of this "
                                  f"mixture with its own statistics (those are: {', '.join(sorted(own))})")
        self.members = members
        self.action_stats = {m.name: action_norm_stats(self.norm_stats, m.stats_key) for m in members}

    @classmethod
    def build(
        cls,
        datasets: Sequence[DatasetSpec | str | Path] | Mapping[str, float],
        *,
        cleaning: CleaningConfig | None = None,
        balance_weights: bool = True,
        val_fraction: float = 0.05,
        seed: int = 0,
        on_error: str = "fail",
        cache_dir: str | Path | None = None,
        progress: Callable[[str, int], Callable[[int], None]] | None = None,
    ) -> "Mixture":
        """Open, clean and index every dataset (cached by content hash in `cache_dir`).

        `datasets`: specs, plain paths (weight 1), or {path: weight}. `progress(name, total)` may return a
        per-episode callback (the CLI passes tqdm bars).
        """
        if isinstance(datasets, Mapping):
            specs = [DatasetSpec(path, float(weight)) for path, weight in datasets.items()]
        else:
            specs = [d if isinstance(d, DatasetSpec) else DatasetSpec(d) for d in datasets]
        if not specs:
            raise ConfigError("a mixture needs at least one dataset")
        opened = []
        for spec in specs:
            source = open_source(spec.path, format=spec.format, name=spec.name, standardize=spec.standardize)
            callback = progress(source.name, len(source)) if progress is not None else None
            index = scan_dataset(source, cleaning, on_error=on_error, cache_dir=cache_dir, progress=callback)
            opened.append((spec, source, index))
        weights = [spec.weight for spec, _, _ in opened]
        probabilities = sampling_probabilities(weights, [index.num_transitions for _, _, index in opened], balance_weights)
        members = []
        for (spec, source, index), p in zip(opened, probabilities):
            train, val = split_episodes(len(index.episodes), val_fraction, seed, index.name)
            members.append(MixtureMember(source, index, spec.weight, float(p), train, val, spec.normalize_like))
            log.info("%s: %d episodes (%d val), %d transitions, p=%.4f",
                     index.name, len(index.episodes), len(val), index.num_transitions, p)
        return cls(members)

    def proprio_stats(self, name: str) -> NormStats:
        """The NormStats that normalise dataset `name`'s robot state (the statistics its actions use)."""
        member = next(m for m in self.members if m.name == name)
        return action_norm_stats(self.norm_stats, member.stats_key, "proprio")

    @property
    def norm_stats(self) -> dict[str, Any]:
        """{dataset_name: statistics} of the datasets with their own statistics: OpenVLA's `norm_stats` /
        dataset_statistics.json content."""
        return {m.name: m.index.statistics for m in self.members if m.normalize_like is None}

    @property
    def reports(self) -> list[CleaningReport]:
        return [m.index.report for m in self.members]

    @property
    def probabilities(self) -> dict[str, float]:
        return {m.name: m.probability for m in self.members}

    def save_norm_stats(self, path: str | Path) -> Path:
        """Write dataset_statistics.json (what an OpenVLA checkpoint ships as norm_stats)."""
        return save_dataset_statistics(path, self.norm_stats)
