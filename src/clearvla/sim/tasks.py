"""Task definitions and success checkers. A task is one of

- ``pick``:  pick up part `obj` and lift it (held by both fingers, bottom >= LIFT_HEIGHT above the table);
- ``place``: put part `obj` in/on target `target` (bin, tray or fixture), released and at rest inside it;
- ``stack``: stack part `obj` on part `target`, released and resting on its top face;
- ``push``:  push part `obj` `direction` ("left"/"right" as seen in the front camera) by >= PUSH_DISTANCE
  while it stays on the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clearvla.sim.geometry import quat_to_mat
from clearvla.scene.objects import WALL
from clearvla.scene.vocab import DIRECTION_AXIS
from clearvla.sim.world import Workcell

TASKS: tuple[str, ...] = ("pick", "place", "stack", "push")
# Control steps before truncation; roughly twice what the scripted expert needs.
STEP_LIMITS: dict[str, int] = {"pick": 60, "place": 100, "stack": 100, "push": 60}
LIFT_HEIGHT = 0.05  # m, part bottom above the table
PUSH_DISTANCE = 0.08  # m along the push direction
ON_TABLE = 0.01  # m, a part whose bottom is lower than this rests on the table
REST_SPEED = 0.05  # m/s; placed and stacked parts must be this still
SEAT_TOLERANCE = 0.015  # m between a part's bottom and the top of the part it is stacked on
PLACE_TOLERANCE = 0.025  # m between a placed part's bottom and the target floor (parts may lean on a wall)


@dataclass(frozen=True)
class TaskSpec:
    """What to do. `obj` is a part name; `target` a target name (place) or part name (stack); `direction`
    is "left" or "right" (push)."""

    task: str
    obj: str
    target: str | None = None
    direction: str | None = None


def _local_xy(world: Workcell, point: np.ndarray, frame: str) -> np.ndarray:
    """`point` [3] in the frame of object `frame`, x and y only."""
    rot = quat_to_mat(world.quaternion(frame))
    return (rot.T @ (point - world.position(frame)))[:2]


def _inside(local_xy: np.ndarray, half_x: float, half_y: float) -> bool:
    return bool(abs(local_xy[0]) <= half_x and abs(local_xy[1]) <= half_y)


def top_z(world: Workcell, name: str) -> float:
    """Height (m) of a part's top face when resting upright: bottom plus its height."""
    return world.bottom_z(name) + world.specs[name].dims[2]


def is_success(world: Workcell, task: TaskSpec) -> bool:
    """Whether `task` is accomplished in the current state of `world`."""
    obj = task.obj
    if task.task == "pick":
        return world.held(obj) and world.bottom_z(obj) >= LIFT_HEIGHT
    if task.task == "push":
        assert task.direction is not None
        moved = world.position(obj) - world.initial_positions[obj]
        return (
            float(moved @ DIRECTION_AXIS[task.direction]) >= PUSH_DISTANCE
            and world.bottom_z(obj) < ON_TABLE
            and not world.held(obj)
        )
    assert task.target is not None
    if world.touching_gripper(obj) or world.speed(obj) > REST_SPEED:
        return False
    target = world.specs[task.target]
    local = _local_xy(world, world.position(obj), task.target)
    if task.task == "place":
        ix, iy, wall_h = target.dims
        floor = wall_h if target.kind == "fixture" else WALL
        return _inside(local, ix / 2, iy / 2) and world.bottom_z(obj) <= floor + PLACE_TOLERANCE
    if task.task == "stack":
        if world.bottom_z(task.target) > ON_TABLE:
            return False
        sx, sy, _ = target.dims
        seated = abs(world.bottom_z(obj) - top_z(world, task.target)) <= SEAT_TOLERANCE
        if target.kind in ("bolt", "nut", "cylinder", "disc"):
            return seated and float(np.linalg.norm(local)) <= sx / 2
        return seated and _inside(local, sx / 2, sy / 2)
    raise ValueError(f"unknown task {task.task!r}; expected one of {TASKS}")
