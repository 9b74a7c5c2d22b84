"""Handover recording: a learned policy acts first, the scripted expert takes over and finishes the task.

Behaviour cloning only ever sees the expert's states, so a cloned policy's small errors lead it where no
demonstration went (Ross et al. 2011, DAgger). Recording the expert's way on from the states the policy itself
reaches (a grasp closed beside the part, a drift off course) shows the policy how to recover from its own
mistakes. Only the expert's part of each episode is written; the policy's steps are not demonstrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clearvla.errors import ConfigError, InputError
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.rollout import Policy


@dataclass(frozen=True)
class Handover:
    """Which checkpoint acts first, and when the expert takes over: at a step drawn uniformly from
    [first, last] x the episode's step limit (fractions in 0..1), seeded by the episode."""

    checkpoint: str
    first: float = 0.0
    last: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.first <= self.last < 1.0:
            raise ConfigError(f"handover fractions must satisfy 0 <= first <= last < 1, got {self.first}, {self.last}")

    def load_policy(self, cameras: tuple[str, ...]) -> Policy:
        """The checkpoint as a closed-loop policy in this process (one torch thread; recording workers are the
        parallelism). It must read only the cameras the recording renders."""
        from clearvla.infer.loading import PolicySource, load_policy

        policy, inputs = load_policy(PolicySource(self.checkpoint))
        missing = sorted(set(inputs.cameras) - set(cameras))
        if missing:
            raise ConfigError(f"{self.checkpoint} reads cameras {missing}, which this recording does not render")
        return policy


class HandoverPolicy:
    """`policy(obs, info)` that plays `first` until the handover step, then `expert` (re-planned from the state
    it finds). `handover_step` is the step the expert took over (None before an episode starts)."""

    def __init__(self, first: Policy, expert: ScriptedExpert, handover: Handover) -> None:
        self.first, self.expert, self.handover = first, expert, handover
        self.handover_step: int | None = None
        self._steps = 0

    def reset(self) -> None:
        """Start an episode (after env.reset): draw its handover step from the episode's seed."""
        setup = self.expert.env.setup
        if setup is None:
            raise InputError("reset the env before the handover policy")
        rng = np.random.default_rng([self.expert.seed, setup.spec.seed, 1])
        low, high = (int(f * setup.max_steps) for f in (self.handover.first, self.handover.last))
        self.handover_step = int(rng.integers(low, high + 1))
        self._steps = 0
        reset = getattr(self.first, "reset", None)
        if callable(reset):
            reset()

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._steps == self.handover_step:
            self.expert.reset()  # plans from the state the first policy left
        self._steps += 1
        if self._steps <= self.handover_step:  # type: ignore[operator]
            return np.asarray(self.first(obs, info), dtype=np.float32)
        return self.expert(obs, info)
