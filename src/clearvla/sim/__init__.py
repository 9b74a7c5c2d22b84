"""The clearvla industrial workcell simulator (MuJoCo): a UR5-like arm with a parallel-jaw gripper, industrial
parts, bins and fixtures, language-conditioned tasks, a scripted expert and fixed evaluation suites.

Importing this package registers the gymnasium ids `clearvla/Workcell-v0` (suite chosen by the `suite=` kwarg)
and `clearvla/Workcell-<suite>-v0` for every suite in `clearvla.sim.suites.SUITES`, each with
`max_episode_steps=MAX_EPISODE_STEPS` (so `gymnasium.make` adds a TimeLimit).

Modules: `env` (the gymnasium env), `suites` (episode lists), `sampling` (scene/instruction sampling),
`tasks` (success checkers),
`expert` (scripted expert), `rollout` / `record` / `video` (running, recording and filming episodes),
`arm` / `scene` / `objects` / `world` / `render` (MJCF, kinematics, physics and cameras). The objects, attribute
vocabulary and referring expressions it shares with the clarifier live in `clearvla.scene`.
"""

from __future__ import annotations

import os

# Before anything imports mujoco, which reads it once: a headless machine (no X or Wayland display) renders through
# EGL unless the user chose a backend, instead of failing at the first frame with "an OpenGL platform library has
# not been loaded".
if "MUJOCO_GL" not in os.environ and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from gymnasium.envs.registration import register, registry

from clearvla.sim.suites import SUITES
from clearvla.sim.tasks import STEP_LIMITS

ENV_ID = "clearvla/Workcell-v0"
ENV_IDS: dict[str, str] = {suite: f"clearvla/Workcell-{suite}-v0" for suite in SUITES}
# The longest task's own limit: the env truncates every episode at its task's limit itself, so the TimeLimit this
# adds agrees with it (both flag the 100th step of a place or stack) and never ends a shorter task early.
MAX_EPISODE_STEPS = max(STEP_LIMITS.values())

for _id, _kwargs in [(ENV_ID, {}), *((env_id, {"suite": suite}) for suite, env_id in ENV_IDS.items())]:
    if _id not in registry:
        register(
            id=_id, entry_point="clearvla.sim.env:WorkcellEnv", kwargs=_kwargs, max_episode_steps=MAX_EPISODE_STEPS
        )

__all__ = ["ENV_ID", "ENV_IDS", "MAX_EPISODE_STEPS", "SUITES"]
