"""Recipe tests record in the simulator (the smoke run): MUJOCO_GL must be set before mujoco is first imported."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
