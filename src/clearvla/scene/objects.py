"""Workcell objects: parts (free bodies the robot manipulates), targets (static bins, trays, fixtures) and
distractors (static clutter) and their size tables; the simulator builds their MJCF (sim/objects.py), the clarifier
reads them as scene ground truth.

`ObjectSpec` is what a scene is sampled into; `SceneObject` is the ground truth the env reports at run time.
Every object's `dims` is its bounding box (x, y, z) in metres in its own frame; its frame sits at the centre
of the footprint on the table (z = 0 at the table top for targets and distractors, the geometric centre for parts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WALL = 0.01  # target wall and floor thickness (m)
FIXTURE_POST = 0.03  # height of a fixture's corner posts above its pad (m)
Box = tuple[float, float, float]  # (x, y, z) extents in metres

# kind -> size label -> bounding box (x, y, z) in metres. The physical suite samples PHYSICAL_DIMS instead.
PART_DIMS: dict[str, dict[str, Box]] = {
    "block": {"small": (0.040, 0.040, 0.040), "medium": (0.050, 0.050, 0.050), "large": (0.060, 0.060, 0.055)},
    "bolt": {"small": (0.040, 0.040, 0.060), "medium": (0.046, 0.046, 0.070), "large": (0.052, 0.052, 0.080)},
    "nut": {"small": (0.044, 0.044, 0.025), "medium": (0.052, 0.052, 0.028), "large": (0.060, 0.060, 0.030)},
    "plate": {"small": (0.090, 0.050, 0.020), "medium": (0.110, 0.055, 0.020), "large": (0.130, 0.060, 0.022)},
}
# Unseen sizes of known kinds and unseen shapes (physical suite).
PHYSICAL_DIMS: dict[str, dict[str, Box]] = {
    "block": {"small": (0.032, 0.032, 0.032), "large": (0.070, 0.070, 0.060)},
    "bolt": {"small": (0.036, 0.036, 0.050), "large": (0.058, 0.058, 0.095)},
    "nut": {"small": (0.038, 0.038, 0.020), "large": (0.068, 0.068, 0.034)},
    "plate": {"small": (0.075, 0.045, 0.016), "large": (0.150, 0.066, 0.026)},
    "bar": {"medium": (0.110, 0.036, 0.036)},
    "cylinder": {"small": (0.040, 0.040, 0.045), "large": (0.056, 0.056, 0.070)},
    "disc": {"medium": (0.070, 0.070, 0.024)},
}
# kind -> (inner x, inner y, wall height) in metres.
TARGET_DIMS: dict[str, Box] = {"bin": (0.15, 0.15, 0.055), "tray": (0.19, 0.14, 0.022), "fixture": (0.14, 0.14, 0.012)}
# kind -> bounding box (x, y, z) in metres.
DISTRACTOR_DIMS: dict[str, Box] = {"ball": (0.05, 0.05, 0.05), "spool": (0.07, 0.07, 0.05), "pipe": (0.14, 0.035, 0.035)}


@dataclass(frozen=True)
class ObjectAttributes:
    """What an object is, apart from where: `category` is "part", "target" or "distractor"; `kind`, `colour` and
    `size` are vocabulary words (scene/vocab.py); `dims` its bounding box (module docstring)."""

    name: str
    category: str
    kind: str
    colour: str
    size: str
    dims: Box


@dataclass(frozen=True)
class ObjectSpec(ObjectAttributes):
    """One object as sampled for an episode: its attributes, `xy` its position on the table (m, world frame) and
    `yaw` its heading (rad)."""

    xy: tuple[float, float]
    yaw: float

    @property
    def footprint_radius(self) -> float:
        """Radius (m) of a circle around the footprint, for non-overlapping placement."""
        outer = WALL * 2 if self.category == "target" else 0.0
        return 0.5 * float(np.hypot(self.dims[0] + outer, self.dims[1] + outer))

    @property
    def height(self) -> float:
        """Height (m) of the object's highest point above the table when resting upright."""
        if self.category != "target":
            return self.dims[2]
        return self.dims[2] + (FIXTURE_POST if self.kind == "fixture" else WALL)


@dataclass(frozen=True)
class SceneObject(ObjectAttributes):
    """Ground truth of one object at one instant: attributes plus pose (world frame, metres, quaternion w-x-y-z)."""

    position: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]
