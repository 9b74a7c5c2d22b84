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
    the chunk (default all K) and the following calls pop it, LeRobot's `select_action` pattern; `reset` empties it.
    """

    def __init__(
        self,
        vla: VLA,
        unnorm_key: str | None = None,
        center_crop: bool = False,
        instruction: str | None = None,
        action_tokens_only: bool = False,
        execute: int | None = None,
    ) -> None:
        self.vla = vla.eval()
        chunk = max(vla.config.action_chunk, 1)
        if execute is not None and not 1 <= execute <= chunk:
            raise InputError(f"execute must be between 1 and the model's chunk length {chunk}, got {execute}")
        self.execute = execute or chunk
        self.queue: deque[np.ndarray] = deque()
        self.action_tokens_only = action_tokens_only  # argmax over the action bins only (see VLA.predict_action_tokens)
        self.unnorm_key = select_stats(vla.norm_stats, unnorm_key)
        self.center_crop = center_crop
        self.instruction = instruction
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        self.last_action = None
        self.queue.clear()

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """The next action [A] float32: from the queue, refilled by a forward pass when empty."""
        if not self.queue:
            text = self.instruction if self.instruction is not None else info["instruction"]
            images = {name: value for name, value in obs.items() if name != STATE_KEY}
            proprio = obs.get(STATE_KEY) if self.vla.config.proprio_dim else None
            if self.vla.config.action_chunk:
                chunk = self.vla.predict_action_chunk(images, text, self.unnorm_key, self.center_crop, proprio)
            else:
                chunk = self.vla.predict_action(
                    images, text, self.unnorm_key, center_crop=self.center_crop, proprio=proprio,
                    action_tokens_only=self.action_tokens_only,
                )[None]
            self.queue.extend(chunk[: self.execute].astype(np.float32))
        self.last_action = self.queue.popleft()
        return self.last_action

    __call__ = select_action
