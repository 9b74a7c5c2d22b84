"""Kinematics: IK reaches poses, actions move the grip site as commanded, limits hold."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from clearvla.sim.arm import HOME_QPOS, ArmLimits
from clearvla.sim.geometry import mat_to_rpy, rotation_error, rpy_to_mat
from clearvla.sim.scene import SceneSpec
from clearvla.sim.world import Workcell


@pytest.fixture(scope="module")
def world() -> Workcell:
    return Workcell(SceneSpec(()), image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())


@pytest.mark.parametrize(
    "pos, rpy",
    [
        ((0.45, 0.0, 0.25), (0.0, 0.0, 0.0)),
        ((0.35, -0.25, 0.05), (0.0, 0.0, 0.6)),
        ((0.65, 0.28, 0.03), (0.0, 0.0, -1.2)),
        ((0.5, 0.1, 0.15), (0.3, -0.3, 0.4)),
        ((0.28, 0.3, 0.2), (0.0, 0.0, 1.5)),
    ],
)
def test_ik_reaches_target(world: Workcell, pos, rpy) -> None:
    arm = world.arm
    target = rpy_to_mat(np.array(rpy))
    q = HOME_QPOS.copy()
    for _ in range(4):  # the env runs IK every control step; a few calls converge from far away
        q = arm.solve_ik(q, np.array(pos), target)
    d = mujoco.MjData(world.model)
    d.qpos[arm.qadr] = q
    mujoco.mj_kinematics(world.model, d)
    assert np.linalg.norm(d.site_xpos[arm.site] - pos) < 1e-3
    assert np.linalg.norm(rotation_error(target, d.site_xmat[arm.site].reshape(3, 3))) < 1e-2


def test_actions_track_targets_within_tolerance() -> None:
    w = Workcell(SceneSpec(()), image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())
    goal = np.array([0.55, -0.15, 0.08])
    for _ in range(30):
        pos, _ = w.arm.ee_pose(w.data)
        delta = np.clip(goal - w.arm.target_pos, -0.02, 0.02)
        w.step(np.concatenate([delta, [0, 0, 0.1], [1.0]]))
    pos, mat = w.arm.ee_pose(w.data)
    assert np.linalg.norm(pos - goal) < 0.005
    roll, pitch, yaw = mat_to_rpy(mat)
    assert abs(roll) < 0.02 and abs(pitch) < 0.02
    assert abs(yaw - 1.6) < 0.05  # 30 x 0.1 rad requested, clipped at the yaw limit


def test_workspace_and_joint_limits_hold() -> None:
    limits = ArmLimits()
    w = Workcell(SceneSpec(()), image_size=64, physics_dt=0.002, control_dt=0.1, limits=limits)
    for _ in range(40):
        w.step(np.array([0.03, 0.03, -0.03, 0.0, 0.0, 0.0, 0.0]))
        pos, _ = w.arm.ee_pose(w.data)
        assert np.all(pos >= np.array(limits.workspace_low) - 0.01)
        assert np.all(pos <= np.array(limits.workspace_high) + 0.01)
    q_prev = w.arm.joints(w.data)
    w.step(np.array([-0.03, -0.03, 0.03, 0.25, 0.25, 0.25, 1.0]))
    ctrl_step = np.abs(w.data.ctrl[w.arm.act] - q_prev)
    assert np.all(ctrl_step <= limits.max_joint_speed * 0.1 + 1e-9)
