"""The one in-memory episode model every reader produces and every writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clearvla.errors import DataError


@dataclass
class Episode:
    """One trajectory of T steps, stored column-wise.

    images:      camera name -> [T, H, W, 3] uint8 RGB (e.g. "image" for the third-person view, "wrist_image").
    actions:     [T, A] float32, OpenVLA convention for arms: [dx, dy, dz, droll, dpitch, dyaw, gripper],
                 metres / radians per control step, gripper 1 = open, 0 = closed.
    instruction: the language instruction (may be "" before cleaning).
    proprio:     [T, P] float32 robot state, or None.
    is_first / is_last / is_terminal: [T] bool step flags.
    dataset_name: which dataset the episode came from (key of norm_stats).
    metadata:    free-form per-episode facts (seed, task, success, source file ...).
    attention:   camera name -> [T, h, w] uint8 (1 = the part or target the instruction names shows there, at a
                 reduced resolution h x w), or None: training-only supervision of where the model should look
                 (train/objectives.py); the simulator records it from its ground truth.
    """

    images: dict[str, np.ndarray]
    actions: np.ndarray
    instruction: str
    proprio: np.ndarray | None = None
    is_first: np.ndarray | None = None
    is_last: np.ndarray | None = None
    is_terminal: np.ndarray | None = None
    dataset_name: str = "default"
    metadata: dict[str, Any] = field(default_factory=dict)
    attention: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.float32)
        if self.actions.ndim != 2:
            raise DataError(f"episode actions must be [T, A], got shape {self.actions.shape}")
        n = len(self.actions)
        for name, frames in self.images.items():
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) != n:
                raise DataError(
                    f"episode camera {name!r} must be [T={n}, H, W, 3] uint8, got {frames.shape} {frames.dtype}"
                )
        if self.proprio is not None:
            self.proprio = np.asarray(self.proprio, dtype=np.float32)
            if self.proprio.ndim != 2 or len(self.proprio) != n:
                raise DataError(f"episode proprio must be [T={n}, P], got shape {self.proprio.shape}")
        for name, masks in (self.attention or {}).items():
            if masks.ndim != 3 or masks.dtype != np.uint8 or len(masks) != n:
                raise DataError(f"episode attention masks of camera {name!r} must be [T={n}, h, w] uint8, got {masks.shape} {masks.dtype}")
        if self.is_first is None:
            self.is_first = np.arange(n) == 0
        if self.is_last is None:
            self.is_last = np.arange(n) == n - 1
        if self.is_terminal is None:
            self.is_terminal = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def cameras(self) -> list[str]:
        return sorted(self.images)

    def select(self, steps: np.ndarray, actions: np.ndarray | None = None) -> "Episode":
        """A new episode holding only `steps` ([K] int indices, increasing), optionally with replacement actions [K, A].

        is_first / is_last mark the first / last kept step; is_terminal keeps its values, and a terminal last step
        that was dropped passes its flag to the new last step, so "the episode ended in a terminal state" survives.
        """
        steps = np.asarray(steps, dtype=np.int64)
        k = len(steps)
        terminal = self.is_terminal[steps].copy()
        if k and self.is_terminal[-1] and steps[-1] != len(self) - 1:
            terminal[-1] = True
        return Episode(
            images={name: frames[steps] for name, frames in self.images.items()},
            actions=self.actions[steps] if actions is None else actions,
            instruction=self.instruction,
            proprio=None if self.proprio is None else self.proprio[steps],
            is_first=np.arange(k) == 0,
            is_last=np.arange(k) == k - 1,
            is_terminal=terminal,
            dataset_name=self.dataset_name,
            metadata=dict(self.metadata),
            attention=None if self.attention is None else {name: masks[steps] for name, masks in self.attention.items()},
        )
