"""Dataset statistics in OpenVLA's `norm_stats` / `dataset_statistics.json` format.

    {dataset_name: {"action":  {"mean", "std", "max", "min", "q01", "q99", "mask"},   each a [A] list
                    "proprio": {"mean", "std", "max", "min", "q01", "q99"},           each a [P] list
                    "num_transitions": int, "num_trajectories": int}}

q01 / q99 are `np.quantile(x, 0.01 / 0.99, axis=0)` over every kept step of the dataset, computed on the float32
values as stored (so they equal numpy's answer bit for bit); mean / std (population) accumulate in float64. `mask`
is false for the gripper dimension, which OpenVLA leaves un-normalised. A dataset without proprio gets zero
proprio statistics of the action's width, as OpenVLA's released checkpoints carry. Normalisation itself is
`clearvla.actions.normalize.NormStats`; this module only produces and stores its inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from clearvla.actions.normalize import NormStats
from clearvla.errors import DataError

STAT_KEYS = ("mean", "std", "max", "min", "q01", "q99")


def stream_statistics(x: np.ndarray) -> dict[str, list[float]]:
    """[N, D] values -> {mean, std, max, min, q01, q99}, each a [D] list."""
    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"statistics need a non-empty [N, D] array, got shape {x.shape}")
    wide = x.astype(np.float64)
    return {
        "mean": wide.mean(axis=0).tolist(),
        "std": wide.std(axis=0).tolist(),
        "max": x.max(axis=0).astype(np.float64).tolist(),
        "min": x.min(axis=0).astype(np.float64).tolist(),
        "q01": np.quantile(x, 0.01, axis=0).astype(np.float64).tolist(),
        "q99": np.quantile(x, 0.99, axis=0).astype(np.float64).tolist(),
    }


def action_mask(width: int, gripper_dim: int | None = -1) -> list[bool]:
    """True where a dimension is normalised: every dimension but the gripper."""
    mask = np.ones(width, dtype=bool)
    if gripper_dim is not None:
        mask[gripper_dim] = False
    return mask.tolist()


def compute_statistics(
    actions: np.ndarray, proprio: np.ndarray | None, num_trajectories: int, *, gripper_dim: int | None = -1
) -> dict[str, Any]:
    """One dataset's block: actions [N, A] and proprio [N, P] (or None) over all kept steps."""
    actions = np.asarray(actions)
    block: dict[str, Any] = {"action": {**stream_statistics(actions), "mask": action_mask(actions.shape[1], gripper_dim)}}
    if proprio is not None and len(proprio):
        block["proprio"] = stream_statistics(proprio)
    else:
        block["proprio"] = {key: [0.0] * actions.shape[1] for key in STAT_KEYS}
    block["num_transitions"] = int(len(actions))
    block["num_trajectories"] = int(num_trajectories)
    return block


def validate_statistics(stats: Mapping[str, Any], where: str = "dataset_statistics") -> None:
    """Every dataset block must give NormStats for its action (and proprio) stream."""
    if not isinstance(stats, Mapping) or not stats:
        raise DataError(f"{where}: expected a non-empty {{dataset_name: statistics}} object")
    for name, block in stats.items():
        if not isinstance(block, Mapping) or "action" not in block:
            raise DataError(f"{where}: dataset {name!r} has no 'action' statistics")
        for stream in ("action", "proprio"):
            if stream in block:
                try:
                    NormStats.from_dict(block[stream], where=f"{where}[{name!r}][{stream!r}]")
                except ValueError as e:
                    raise DataError(str(e)) from None


def save_dataset_statistics(path: str | Path, stats: Mapping[str, Any]) -> Path:
    """Write `dataset_statistics.json` atomically (a reader never sees half a file)."""
    validate_statistics(stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=2))
    os.replace(tmp, path)
    return path


def load_dataset_statistics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read dataset statistics ({e})") from None
    validate_statistics(stats, where=str(path))
    return stats


def action_norm_stats(stats: Mapping[str, Any], dataset: str, stream: str = "action") -> NormStats:
    """The NormStats that normalise `dataset`'s actions (or, with stream="proprio", its robot state)."""
    if dataset not in stats:
        raise DataError(f"no statistics for dataset {dataset!r}; have: {', '.join(sorted(stats))}")
    if stream not in stats[dataset]:
        raise DataError(f"dataset {dataset!r} has no {stream!r} statistics")
    return NormStats.from_dict(stats[dataset][stream], where=f"dataset_statistics[{dataset!r}][{stream!r}]")
