"""Running a policy (the scripted expert or a learned model) through workcell episodes.

A policy is any callable `policy(obs, info) -> action [7]`; if it has a `reset()` method it is called at the
start of every episode (after env.reset).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from clearvla.data.episode import Episode
from clearvla.sim.sampling import EpisodeSpec

log = logging.getLogger(__name__)
DATASET_NAME = "clearvla_workcell"


class Policy(Protocol):
    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


@dataclass
class Rollout:
    """One episode: per step t the observation seen before action t (images, proprio) and action t."""

    spec: EpisodeSpec
    instruction: str
    task: str
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    proprio: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    attention: dict[str, list[np.ndarray]] = field(default_factory=dict)  # from envs made with attention_masks=True
    success: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def since(self, step: int) -> "Rollout":
        """The same episode from step `step` on (observations, actions and masks of the earlier steps dropped)."""
        return Rollout(
            spec=self.spec, instruction=self.instruction, task=self.task,
            images={k: v[step:] for k, v in self.images.items()}, proprio=self.proprio[step:],
            actions=self.actions[step:], attention={k: v[step:] for k, v in self.attention.items()},
            success=self.success, final_info=self.final_info,
        )

    def to_episode(self, metadata: dict[str, Any] | None = None) -> Episode:
        """As a clearvla `Episode` (the env's camera names, e.g. "image", "wrist_image"; dataset "clearvla_workcell")."""
        n = len(self.actions)
        terminal = np.zeros(n, dtype=bool)
        terminal[-1] = self.success
        return Episode(
            images={name: np.stack(frames) for name, frames in self.images.items()},
            actions=np.stack(self.actions).astype(np.float32),
            instruction=self.instruction,
            proprio=np.stack(self.proprio).astype(np.float32),
            attention={name: np.stack(masks) for name, masks in self.attention.items()} or None,
            is_terminal=terminal,
            dataset_name=DATASET_NAME,
            metadata={
                "suite": self.spec.suite,
                "index": self.spec.index,
                "seed": self.spec.seed,
                "task": self.task,
                "success": self.success,
                "intended_object": self.final_info.get("intended_object"),
                **(metadata or {}),
            },
        )


def run_episode(
    env: gym.Env,
    policy: Policy,
    spec: EpisodeSpec,
    *,
    record: bool = True,
    on_step: Callable[[dict[str, np.ndarray], dict[str, Any]], None] | None = None,
) -> Rollout:
    """Play `spec` with `policy` until the env terminates or truncates. With `record`, keep every observation
    and action; `on_step(obs, info)` sees each observation (including the last) as it arrives."""
    obs, info = env.reset(options={"episode": spec})
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
    out = Rollout(spec=spec, instruction=info["instruction"], task=info["task"])
    if on_step is not None:
        on_step(obs, info)
    done = False
    while not done:
        action = np.asarray(policy(obs, info), dtype=np.float32)
        if record:
            for key, value in obs.items():
                if key != "proprio":  # every other entry is a camera image
                    out.images.setdefault(key, []).append(value)
            out.proprio.append(obs["proprio"])
            out.actions.append(action)
            for key, mask in info.get("attention", {}).items():
                out.attention.setdefault(key, []).append(mask)
        obs, _, terminated, truncated, info = env.step(action)
        if on_step is not None:
            on_step(obs, info)
        done = terminated or truncated
    out.success = bool(info["success"])
    out.final_info = info
    log.info("episode %s/%d %s: %s in %d steps", spec.suite, spec.index, spec.task,
             "success" if out.success else "failure", info["step"])  # fmt: skip
    return out


@dataclass
class SuccessReport:
    """Success counts per task for one suite."""

    suite: str
    per_task: dict[str, list[bool]] = field(default_factory=dict)
    steps: dict[str, list[int]] = field(default_factory=dict)

    def add(self, task: str, success: bool, steps: int) -> None:
        self.per_task.setdefault(task, []).append(success)
        self.steps.setdefault(task, []).append(steps)

    @property
    def rate(self) -> float:
        runs = [s for v in self.per_task.values() for s in v]
        return float(np.mean(runs)) if runs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "episodes": sum(len(v) for v in self.per_task.values()),
            "success_rate": self.rate,
            "per_task": {
                task: {"episodes": len(v), "success_rate": float(np.mean(v)), "mean_steps": float(np.mean(self.steps[task]))}
                for task, v in sorted(self.per_task.items())
            },
        }


def evaluate(
    env: gym.Env,
    policy: Policy,
    specs: Iterable[EpisodeSpec],
    *,
    on_episode: Callable[[Rollout], None] | None = None,
) -> SuccessReport:
    """Success of `policy` on every episode in `specs` (all from one suite)."""
    report: SuccessReport | None = None
    for spec in specs:
        rollout = run_episode(env, policy, spec, record=False)
        report = report or SuccessReport(spec.suite)
        report.add(spec.task, rollout.success, int(rollout.final_info["step"]))
        if on_episode is not None:
            on_episode(rollout)
    if report is None:
        raise ValueError("no episodes to evaluate")
    return report
