"""Cleaning of robot trajectories as the OpenVLA paper describes it, each rule switchable and counted per dataset.

Step rules (a dropped step takes its image, action and proprio with it; each step counts under the first rule
that hits it, in this order):
- leading zero: the first step's action is all zeros (Bridge's first step; Bridge's reader already removes its
  own, counted here too);
- zero action: every action dimension is exactly 0;
- no-op (LIBERO's regeneration rule): ||a[non-gripper dims]|| < 1e-4 and the gripper equals the previous *kept*
  step's gripper (the first step only needs the small norm).
Episode rules: NaN / inf in actions or proprio; empty instruction; fewer than `min_steps` steps left; outlier
actions (any non-gripper value beyond [Q1 - k*IQR, Q3 + k*IQR] of the dataset's kept actions, per dimension;
sparse dimensions (IQR under 0.1% of their range, constant ones included) are skipped, so they never flag everything; datasets with fewer
than `outlier_min_steps` kept steps skip the rule, as their quartiles are too noisy to call anything an outlier).
The gripper is unified first: `gripper_convention` names the stored convention (see clearvla.data.gripper).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from clearvla.data import gripper
from clearvla.data.episode import Episode
from clearvla.errors import ConfigError

STEP_RULES = ("leading_zero", "zero_action", "noop")
EPISODE_RULES = ("unreadable", "nonfinite", "empty_instruction", "too_short", "outlier")


@dataclass(frozen=True)
class CleaningConfig:
    """Which rules run, and their parameters. `CleaningConfig.off()` keeps everything."""

    drop_noops: bool = True
    noop_threshold: float = 1e-4
    drop_zero_actions: bool = True
    drop_nonfinite: bool = True
    drop_outliers: bool = True
    outlier_k: float = 3.0
    outlier_min_steps: int = 1000
    drop_empty_instructions: bool = True
    min_steps: int = 2
    gripper_convention: str | None = "open1"
    gripper_dim: int | None = -1

    def __post_init__(self) -> None:
        if self.outlier_k <= 0 or self.noop_threshold < 0 or self.min_steps < 0 or self.outlier_min_steps < 0:
            raise ConfigError(
                "cleaning needs outlier_k > 0 and noop_threshold, min_steps, outlier_min_steps >= 0; got "
                f"{self.outlier_k}, {self.noop_threshold}, {self.min_steps}, {self.outlier_min_steps}"
            )
        if self.gripper_convention is not None and self.gripper_convention not in gripper.CONVENTIONS:
            raise ConfigError(
                f"unknown gripper convention {self.gripper_convention!r}; use one of: {', '.join(gripper.CONVENTIONS)}"
            )

    @classmethod
    def off(cls) -> "CleaningConfig":
        return cls(
            drop_noops=False, drop_zero_actions=False, drop_nonfinite=False, drop_outliers=False,
            drop_empty_instructions=False, min_steps=0, gripper_convention=None,
        )

    def key(self) -> str:
        """Stable text of every setting (part of the statistics cache key)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class CleaningReport:
    """Counts for one dataset: what came in, what went out, and why each step or episode was dropped."""

    dataset: str
    episodes_in: int = 0
    episodes_out: int = 0
    steps_in: int = 0
    steps_out: int = 0
    dropped_steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEP_RULES, 0))
    dropped_episodes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EPISODE_RULES, 0))
    gripper_changed_steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CleaningReport":
        return cls(**d)


@dataclass
class CleanEpisode:
    """A kept episode: `steps` [K] index the episode as its reader returns it; actions [K, A] are cleaned."""

    index: int
    steps: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray | None
    instruction: str


@dataclass
class CleaningPlan:
    """Kept episodes in source order, and the report. `apply` turns a full episode into its cleaned form."""

    episodes: list[CleanEpisode]
    report: CleaningReport

    @staticmethod
    def apply(entry: CleanEpisode, episode: Episode) -> Episode:
        return episode.select(entry.steps, entry.actions)


def _non_gripper(width: int, gripper_dim: int | None) -> np.ndarray:
    mask = np.ones(width, dtype=bool)
    if gripper_dim is not None:
        mask[gripper_dim] = False
    return mask


def clean_steps(episode: Episode, config: CleaningConfig, report: CleaningReport) -> CleanEpisode | str:
    """Per-episode rules (all but outliers). Returns the kept episode, or the name of the rule that dropped it."""
    actions = episode.actions.copy()
    if config.drop_nonfinite and not (
        np.isfinite(actions).all() and (episode.proprio is None or np.isfinite(episode.proprio).all())
    ):
        return "nonfinite"
    if config.drop_empty_instructions and not episode.instruction.strip():
        return "empty_instruction"
    g = config.gripper_dim
    if config.gripper_convention is not None and g is not None and len(actions):
        unified = gripper.to_openvla(actions[:, g], config.gripper_convention)
        report.gripper_changed_steps += int(np.count_nonzero(unified != actions[:, g]))
        actions[:, g] = unified
    report.dropped_steps["leading_zero"] += int(episode.metadata.get("dropped_leading_zero_steps", 0))
    motion = _non_gripper(actions.shape[1], g)
    kept: list[int] = []
    for t, action in enumerate(actions):
        zero = config.drop_zero_actions and not np.any(action)
        if zero:
            report.dropped_steps["leading_zero" if t == 0 else "zero_action"] += 1
            continue
        if config.drop_noops and np.linalg.norm(action[motion]) < config.noop_threshold:
            if not kept or g is None or action[g] == actions[kept[-1], g]:
                report.dropped_steps["noop"] += 1
                continue
        kept.append(t)
    if len(kept) < config.min_steps or not kept:
        return "too_short"
    steps = np.asarray(kept, dtype=np.int64)
    proprio = None if episode.proprio is None else episode.proprio[steps]
    return CleanEpisode(-1, steps, actions[steps], proprio, episode.instruction)


def outlier_bounds(actions: np.ndarray, k: float, gripper_dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """[N, A] -> (low, high) [A]: Q1 - k*IQR, Q3 + k*IQR; +-inf for the gripper and for sparse dimensions,
    whose IQR is under 0.1% of their range (most steps sit at one value, e.g. a rotation that is zero but for
    rare corrections, or float noise around zero): there every non-typical value would count as an outlier."""
    q1, q3 = np.quantile(actions, [0.25, 0.75], axis=0)
    iqr = q3 - q1
    spread = actions.max(axis=0) - actions.min(axis=0)
    use = (iqr > 1e-3 * spread) & (iqr > 0) & _non_gripper(actions.shape[1], gripper_dim)
    return np.where(use, q1 - k * iqr, -np.inf), np.where(use, q3 + k * iqr, np.inf)


def plan_cleaning(episodes: Iterable[tuple[int, Episode]], config: CleaningConfig, dataset: str) -> CleaningPlan:
    """Run every rule over (source index, episode) pairs; images are not needed. (Episodes a reader could not
    read are the caller's to add under dropped_episodes["unreadable"].)"""
    report = CleaningReport(dataset)
    kept: list[CleanEpisode] = []
    for index, episode in episodes:
        report.episodes_in += 1
        report.steps_in += len(episode) + int(episode.metadata.get("dropped_leading_zero_steps", 0))
        result = clean_steps(episode, config, report)
        if isinstance(result, str):
            report.dropped_episodes[result] += 1
            continue
        result.index = index
        kept.append(result)
    if config.drop_outliers and sum(len(e.steps) for e in kept) >= max(config.outlier_min_steps, 1):
        low, high = outlier_bounds(np.concatenate([e.actions for e in kept]), config.outlier_k, config.gripper_dim)
        inliers = [e for e in kept if ((e.actions >= low) & (e.actions <= high)).all()]
        report.dropped_episodes["outlier"] = len(kept) - len(inliers)
        kept = inliers
    report.episodes_out = len(kept)
    report.steps_out = int(sum(len(e.steps) for e in kept))
    return CleaningPlan(kept, report)
