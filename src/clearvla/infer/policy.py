"""A VLA as a closed-loop policy: observation dict + instruction -> one robot action."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearvla.actions.normalize import select_stats
from clearvla.models.vla import VLA

STATE_KEY = "proprio"  # the observation entry holding the robot state (the simulator's and LeRobot-style name)


class VLAPolicy:
    """`policy(obs, info) -> action [A] float32` for the simulator's rollout loop (or a robot loop).

    obs: {camera name: uint8 [H, W, 3]} holding every camera of `vla.config.cameras` (e.g. "image" for the
    third-person view, "wrist_image"), plus obs["proprio"] (raw robot state [P]) for models that read it. The
    instruction comes from `info["instruction"]` unless one is fixed here. Actions are un-normalised with
    `norm_stats[unnorm_key]`. The last action is kept in `last_action` (for overlays and logs).
    """

    def __init__(
        self,
        vla: VLA,
        unnorm_key: str | None = None,
        center_crop: bool = False,
        instruction: str | None = None,
        action_tokens_only: bool = False,
    ) -> None:
        self.vla = vla.eval()
        self.action_tokens_only = action_tokens_only  # argmax over the action bins only (see VLA.predict_action_tokens)
        self.unnorm_key = select_stats(vla.norm_stats, unnorm_key)
        self.center_crop = center_crop
        self.instruction = instruction
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        self.last_action = None

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        text = self.instruction if self.instruction is not None else info["instruction"]
        images = {name: value for name, value in obs.items() if name != STATE_KEY}
        proprio = obs.get(STATE_KEY) if self.vla.config.proprio_dim else None
        action = self.vla.predict_action(
            images, text, self.unnorm_key, center_crop=self.center_crop, proprio=proprio,
            action_tokens_only=self.action_tokens_only,
        )
        self.last_action = action.astype(np.float32)
        return self.last_action
