"""Success checkers on hand-built states: true and false cases for every task."""

from __future__ import annotations

import mujoco
import numpy as np

from clearvla.sim.arm import ArmLimits
from clearvla.scene.objects import PART_DIMS, TARGET_DIMS, WALL, ObjectSpec
from clearvla.sim.scene import SceneSpec
from clearvla.sim.tasks import TaskSpec, is_success
from clearvla.sim.world import Workcell

BLOCK = ObjectSpec("part0", "part", "block", "red", "medium", PART_DIMS["block"]["medium"], (0.36, -0.20), 0.0)
BASE = ObjectSpec("part1", "part", "block", "blue", "large", PART_DIMS["block"]["large"], (0.55, 0.15), 0.0)
BIN = ObjectSpec("target0", "target", "bin", "grey", "medium", TARGET_DIMS["bin"], (0.50, -0.05), 0.0)


def make_world() -> Workcell:
    return Workcell(SceneSpec((BLOCK, BASE, BIN)), image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())


def teleport(w: Workcell, name: str, xyz: tuple[float, float, float], settle: float = 0.5) -> None:
    adr = w.model.jnt_qposadr[w.model.joint(f"{name}_joint").id]
    w.data.qpos[adr : adr + 3] = xyz
    w.data.qpos[adr + 3 : adr + 7] = (1, 0, 0, 0)
    w.data.qvel[:] = 0
    for _ in range(int(settle / w.model.opt.timestep)):
        mujoco.mj_step(w.model, w.data)
    mujoco.mj_forward(w.model, w.data)


def test_place_in_bin_true_and_false() -> None:
    task = TaskSpec("place", "part0", "target0")
    w = make_world()
    assert not is_success(w, task)
    teleport(w, "part0", (0.50, -0.05, WALL + 0.03))
    assert is_success(w, task)
    teleport(w, "part0", (0.50, 0.10, 0.03))  # beside the bin
    assert not is_success(w, task)


def test_stack_true_and_false() -> None:
    task = TaskSpec("stack", "part0", "part1")
    w = make_world()
    top = w.position("part1")[2] + BASE.dims[2] / 2
    teleport(w, "part0", (0.55, 0.15, top + BLOCK.dims[2] / 2 + 0.002))
    assert is_success(w, task)
    teleport(w, "part0", (0.55, 0.25, 0.03))  # on the table next to the base
    assert not is_success(w, task)


def test_push_direction_matters() -> None:
    w = make_world()
    teleport(w, "part0", (0.36, -0.32, 0.026))  # 12 cm towards world -y, i.e. left in the front camera
    assert is_success(w, TaskSpec("push", "part0", direction="left"))
    assert not is_success(w, TaskSpec("push", "part0", direction="right"))


def test_pick_needs_a_grasp_not_just_height() -> None:
    w = make_world()
    task = TaskSpec("pick", "part0")
    teleport(w, "part0", (0.36, -0.20, 0.15), settle=0.0)  # in the air but not held
    assert w.bottom_z("part0") > 0.05
    assert not is_success(w, task)


def test_pick_true_after_scripted_grasp() -> None:
    w = make_world()
    x, y, _ = w.position("part0")
    for goal, grip, n in (((x, y, 0.1), 1.0, 12), ((x, y, 0.027), 1.0, 8), ((x, y, 0.027), 0.0, 4), ((x, y, 0.12), 0.0, 6)):
        for _ in range(n):
            w.step(np.concatenate([np.clip(np.array(goal) - w.arm.target_pos, -0.025, 0.025), [0, 0, 0], [grip]]))
    assert w.held("part0")
    assert is_success(w, TaskSpec("pick", "part0"))


def test_bottom_height_of_resting_parts_is_zero() -> None:
    parts = tuple(
        ObjectSpec(f"part{i}", "part", kind, "red", "medium", PART_DIMS[kind]["medium"], (0.35 + 0.1 * i, 0.1), 0.3)
        for i, kind in enumerate(PART_DIMS)
    )
    w = Workcell(SceneSpec(parts), image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())
    for p in parts:
        assert abs(w.bottom_z(p.name)) < 0.002, p.kind
