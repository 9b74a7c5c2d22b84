"""A VLA as a closed-loop policy: observation dict + instruction -> one robot action (chunks through a queue)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from clearvla.actions.normalize import select_stats
from clearvla.errors import InputError
from clearvla.models.vla import VLA

STATE_KEY = "proprio"  # the observation entry holding the robot state (the simulator's and LeRobot-style name)


class VLAPolicy:
    """`policy(obs, info) -> action [A] float32` for the simulator's rollout loop (or a robot loop).

    obs: {camera name: uint8 [H, W, 3]} holding every camera of `vla.config.cameras` (e.g. "image" for the
    third-person view, "wrist_image"), plus obs["proprio"] (raw robot state [P]) for models that read it. The
    instruction comes from `info["instruction"]` unless one is fixed here. Actions are un-normalised with
    `norm_stats[unnorm_key]`. The last action is kept in `last_action` (for overlays and logs).

    Chunk models (action_chunk K > 0) run open loop: one forward fills a queue with the first `execute` actions of
    the chunk (default the checkpoint's `execute_actions`, else all K) and the following calls pop it, LeRobot's
    `select_action` pattern; `reset` empties it.
    With `ensemble` m they instead run a forward at every step and act on ACT's temporal ensemble: the mean of what
    each of the last K chunks predicted for this step, weighted exp(-m * i) with i = 0 the oldest chunk (ACT: m =
    0.01; m > 0 favours older chunks, m < 0 newer ones).
    """

    def __init__(
        self,
        vla: VLA,
        unnorm_key: str | None = None,
        center_crop: bool = False,
        instruction: str | None = None,
        action_tokens_only: bool = False,
        execute: int | None = None,
        ensemble: float | None = None,
    ) -> None:
        self.vla = vla.eval()
        chunk = max(vla.config.action_chunk, 1)
        if execute is not None and not 1 <= execute <= chunk:
            raise InputError(f"execute must be between 1 and the model's chunk length {chunk}, got {execute}")
        if ensemble is not None and (not vla.config.action_chunk or execute is not None or not np.isfinite(ensemble)):
            raise InputError(f"ensemble needs a chunk model, no execute, and a finite weight decay m; got m={ensemble}")
        self.execute = execute or vla.config.execute_actions or chunk
        self.queue: deque[np.ndarray] = deque()
        self.ensemble = ensemble
        self.chunks: deque[np.ndarray] = deque(maxlen=chunk)  # ensemble: the last K chunks, oldest first
        self.action_tokens_only = action_tokens_only  # argmax over the action bins only (see VLA.predict_action_tokens)
        self.unnorm_key = select_stats(vla.norm_stats, unnorm_key)
        self.center_crop = center_crop
        self.instruction = instruction
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        self.last_action = None
        self.queue.clear()
        self.chunks.clear()

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """The next action [A] float32: from the queue, refilled by a forward pass when empty (or, with `ensemble`,
        the temporal ensemble after a forward pass)."""
        if self.ensemble is not None:
            self.chunks.append(self._predict(obs, info))
            n = len(self.chunks)
            steps = np.stack([chunk[n - 1 - i] for i, chunk in enumerate(self.chunks)])  # [n, A]: each chunk's "now"
            weights = np.exp(-self.ensemble * np.arange(n))
            self.last_action = (weights @ steps / weights.sum()).astype(np.float32)
            return self.last_action
        if not self.queue:
            self.queue.extend(self._predict(obs, info)[: self.execute].astype(np.float32))
        self.last_action = self.queue.popleft()
        return self.last_action

    def _predict(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """One forward pass: the chunk [K, A] float64 (K = 1 for action-token models)."""
        text = self.instruction if self.instruction is not None else info["instruction"]
        images = {name: value for name, value in obs.items() if name != STATE_KEY}
        proprio = obs.get(STATE_KEY) if self.vla.config.proprio_dim else None
        if self.vla.config.action_chunk:
            return self.vla.predict_action_chunk(images, text, self.unnorm_key, self.center_crop, proprio)
        return self.vla.predict_action(
            images, text, self.unnorm_key, center_crop=self.center_crop, proprio=proprio,
            action_tokens_only=self.action_tokens_only,
        )[None]

    __call__ = select_action
