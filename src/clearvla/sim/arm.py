"""The workcell arm: a 6-DoF UR5-like manipulator with a parallel-jaw gripper, written as MJCF here, plus its
kinematics (damped-least-squares IK on MuJoCo's site Jacobian) and the mapping from OpenVLA 7-D end-effector
deltas to joint-position targets.

Frames: the robot base sits at the world origin on the table top (z = 0), so base frame = world frame.
The grip site ("grip") lies between the finger pads, 2 cm above the fingertips; its frame equals the world frame
when the gripper points straight down with yaw 0 (fingers close along world y). Orientation deltas are
extrinsic roll/pitch/yaw about the world axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from clearvla.sim.geometry import mat_to_rpy, rotation_error, rpy_to_mat

JOINTS: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
FINGERS: tuple[str, str] = ("finger_left", "finger_right")
GRIP_SITE = "grip"
WRIST_CAMERA = "wrist"
FINGER_TRAVEL = 0.05  # metres per finger; the jaws open to 10 cm
FINGER_PAD_HALF_Z = 0.035  # finger half length along the approach axis
GRIP_ABOVE_TIPS = 0.02  # the grip site sits this far above the fingertips
# Joint-space posture with the gripper pointing down 25 cm above the table at x = 0.45 (found by IK once).
HOME_QPOS = np.array([-0.2450, -1.6725, 1.8641, -1.7623, -1.5708, 1.3258])
JOINT_RANGE = np.array(
    [[-np.pi, np.pi], [-np.pi, 0.0], [0.0, np.pi], [-1.5 * np.pi, 0.5 * np.pi], [-np.pi, 0.0], [-np.pi, np.pi]]
)
# Servo stiffness (N m / rad, critically damped) and torque limits (N m) per joint. Stiff enough to track a
# 3 cm step within one 0.1 s control period; the links carry UR5 masses and gravity compensation.
_KP = (4000.0, 4000.0, 3000.0, 600.0, 600.0, 400.0)
_FORCE = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)


@dataclass(frozen=True)
class ArmLimits:
    """Limits applied to every action. Positions in metres (world frame of the grip site), angles in radians."""

    workspace_low: tuple[float, float, float] = (0.18, -0.42, 0.012)
    workspace_high: tuple[float, float, float] = (0.78, 0.42, 0.45)
    max_tilt: float = 0.5  # |roll|, |pitch| of the grip frame
    max_yaw: float = 1.6  # |yaw| of the grip frame
    max_joint_speed: float = 2.0  # rad/s, applied to the joint-target change per control step
    ik_iterations: int = 12
    ik_damping: float = 0.02
    max_lag: float = 0.03  # m; when the grip site trails its command by more, the command is re-anchored


def arm_mjcf() -> tuple[str, str]:
    """(worldbody fragment, actuator fragment) of the arm. Link geoms are visual only (contype 0); the palm and
    fingers collide so grasps happen through contacts and friction."""
    link = 'class="arm_visual"'
    body = f"""
    <body name="base_link" pos="0 0 0">
      <geom {link} type="cylinder" size="0.075 0.045" pos="0 0 0.045" material="arm_dark"/>
      <body name="shoulder_link" pos="0 0 0.089159" gravcomp="1">
        <inertial pos="0 0 0" mass="3.7" diaginertia="0.0103 0.0103 0.0067"/>
        <joint name="shoulder_pan" class="arm_joint" axis="0 0 1" range="{JOINT_RANGE[0, 0]} {JOINT_RANGE[0, 1]}"/>
        <geom {link} type="cylinder" size="0.06 0.06" material="arm_light"/>
        <body name="upper_arm_link" pos="0 0.13585 0" quat="0.7071068 0 0.7071068 0" gravcomp="1">
          <inertial pos="0 0 0.2125" mass="8.4" diaginertia="0.134 0.134 0.0151"/>
          <joint name="shoulder_lift" class="arm_joint" axis="0 1 0" range="{JOINT_RANGE[1, 0]} {JOINT_RANGE[1, 1]}"/>
          <geom {link} type="cylinder" size="0.06 0.065" quat="0.7071068 0.7071068 0 0" material="arm_dark"/>
          <geom {link} type="capsule" fromto="0 0 0.06 0 0 0.425" size="0.05" material="arm_light"/>
          <body name="forearm_link" pos="0 -0.1197 0.425" gravcomp="1">
            <inertial pos="0 0 0.196" mass="2.3" diaginertia="0.0312 0.0312 0.0041"/>
            <joint name="elbow" class="arm_joint" axis="0 1 0" range="{JOINT_RANGE[2, 0]} {JOINT_RANGE[2, 1]}"/>
            <geom {link} type="cylinder" size="0.05 0.06" quat="0.7071068 0.7071068 0 0" material="arm_dark"/>
            <geom {link} type="capsule" fromto="0 0 0.05 0 0 0.36" size="0.04" material="arm_light"/>
            <body name="wrist_1_link" pos="0 0 0.39225" quat="0.7071068 0 0.7071068 0" gravcomp="1">
              <inertial pos="0 0.093 0" mass="1.2" diaginertia="0.0022 0.0022 0.0022"/>
              <joint name="wrist_1" class="wrist_joint" axis="0 1 0" range="{JOINT_RANGE[3, 0]} {JOINT_RANGE[3, 1]}"/>
              <geom {link} type="cylinder" size="0.04 0.06" pos="0 0.04 0" quat="0.7071068 0.7071068 0 0" material="arm_dark"/>
              <body name="wrist_2_link" pos="0 0.093 0" gravcomp="1">
                <inertial pos="0 0 0.09465" mass="1.2" diaginertia="0.0022 0.0022 0.0022"/>
                <joint name="wrist_2" class="wrist_joint" axis="0 0 1" range="{JOINT_RANGE[4, 0]} {JOINT_RANGE[4, 1]}"/>
                <geom {link} type="cylinder" size="0.04 0.05" pos="0 0 0.05" material="arm_light"/>
                <body name="wrist_3_link" pos="0 0 0.09465" gravcomp="1">
                  <inertial pos="0 0.06 0" mass="0.6" diaginertia="0.0012 0.0012 0.0012"/>
                  <joint name="wrist_3" class="wrist_joint" axis="0 1 0" range="{JOINT_RANGE[5, 0]} {JOINT_RANGE[5, 1]}"/>
                  <geom {link} type="cylinder" size="0.04 0.04" pos="0 0.04 0" quat="0.7071068 0.7071068 0 0" material="arm_dark"/>
                  <body name="tool" pos="0 0.0823 0" quat="0.7071068 -0.7071068 0 0" gravcomp="1">
                    <geom class="gripper" type="box" size="0.025 0.065 0.02" pos="0 0 0.035" material="gripper"/>
                    <camera name="{WRIST_CAMERA}" pos="0.05 0 0.06" xyaxes="0 1 0 0.92 0 0.38" fovy="75"/>
                    <site name="{GRIP_SITE}" pos="0 0 {0.055 + 2 * FINGER_PAD_HALF_Z - GRIP_ABOVE_TIPS}" quat="0 0 1 0" size="0.005" rgba="1 0 0 0"/>
                    <body name="finger_left_link" pos="0 0.007 {0.055 + FINGER_PAD_HALF_Z}" gravcomp="1">
                      <joint name="finger_left" class="finger" axis="0 1 0"/>
                      <geom class="finger_pad" size="0.016 0.007 {FINGER_PAD_HALF_Z}"/>
                    </body>
                    <body name="finger_right_link" pos="0 -0.007 {0.055 + FINGER_PAD_HALF_Z}" gravcomp="1">
                      <joint name="finger_right" class="finger" axis="0 -1 0"/>
                      <geom class="finger_pad" size="0.016 0.007 {FINGER_PAD_HALF_Z}"/>
                    </body>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""
    act = "\n".join(
        f'    <position name="act_{j}" joint="{j}" kp="{kp}" dampratio="1" ctrlrange="{lo} {hi}" forcerange="-{f} {f}"/>'
        for j, kp, f, (lo, hi) in zip(JOINTS, _KP, _FORCE, JOINT_RANGE, strict=True)
    )
    act += "".join(
        f'\n    <position name="act_{f}" joint="{f}" kp="600" dampratio="1" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-25 25"/>'
        for f in FINGERS
    )
    return body, act


ARM_DEFAULTS = f"""
    <default class="arm_visual"><geom contype="0" conaffinity="0" group="1" mass="0"/></default>
    <default class="arm_joint"><joint armature="0.2" damping="2"/></default>
    <default class="wrist_joint"><joint armature="0.05" damping="0.5"/></default>
    <default class="finger"><joint type="slide" range="0 {FINGER_TRAVEL}" armature="0.01" damping="1"/></default>
    <default class="gripper"><geom contype="1" conaffinity="1" mass="0.4" condim="4" friction="1.2 0.02 0.001"/></default>
    <default class="finger_pad">
      <geom type="box" contype="1" conaffinity="1" mass="0.05" condim="4" friction="1.5 0.02 0.001"
            material="finger"/>
    </default>"""


class Arm:
    """Kinematics and control of the arm inside one compiled model. IK runs on a scratch MjData so it never
    disturbs the simulation state. The only state is the commanded grip pose: deltas accumulate on it rather than
    on the measured pose, so servo lag does not shrink every motion (re-anchored when contact blocks the arm)."""

    def __init__(self, model: mujoco.MjModel, limits: ArmLimits, control_dt: float) -> None:
        self.model = model
        self.limits = limits
        self.control_dt = control_dt
        jids = [model.joint(j).id for j in JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        self.finger_qadr = np.array([model.jnt_qposadr[model.joint(f).id] for f in FINGERS])
        self.act = np.array([model.actuator(f"act_{j}").id for j in JOINTS])
        self.finger_act = np.array([model.actuator(f"act_{f}").id for f in FINGERS])
        self.site = model.site(GRIP_SITE).id
        self.finger_geoms = frozenset(
            int(g) for f in FINGERS for g in np.flatnonzero(model.geom_bodyid == model.body(f"{f}_link").id)
        )
        self._scratch = mujoco.MjData(model)
        self._jac = np.zeros((6, model.nv))
        self.target_pos, self.target_mat = np.zeros(3), np.eye(3)

    def reset(self, data: mujoco.MjData, qpos: np.ndarray = HOME_QPOS, gripper_open: bool = True) -> None:
        """Put the arm at `qpos` [6] with matching servo targets; call mj_forward afterwards."""
        data.qpos[self.qadr] = qpos
        data.qvel[self.dadr] = 0.0
        data.ctrl[self.act] = qpos
        width = FINGER_TRAVEL if gripper_open else 0.0
        data.qpos[self.finger_qadr] = width
        data.ctrl[self.finger_act] = width
        mujoco.mj_kinematics(self.model, data)
        self.target_pos, self.target_mat = self.ee_pose(data)

    def joints(self, data: mujoco.MjData) -> np.ndarray:
        return data.qpos[self.qadr].copy()

    def ee_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position [3] (m) and rotation matrix [3, 3] in the world frame."""
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()

    def gripper_opening(self, data: mujoco.MjData) -> float:
        """Measured jaw opening as a fraction of the full travel: 1 = fully open, 0 = closed."""
        return float(np.clip(data.qpos[self.finger_qadr].mean() / FINGER_TRAVEL, 0.0, 1.0))

    def proprio(self, data: mujoco.MjData) -> np.ndarray:
        """[13] float32: grip position xyz (m), roll/pitch/yaw (rad), gripper opening [0, 1], six joint angles (rad)."""
        pos, mat = self.ee_pose(data)
        return np.concatenate([pos, mat_to_rpy(mat), [self.gripper_opening(data)], self.joints(data)]).astype(
            np.float32
        )

    def clip_pose(self, pos: np.ndarray, mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip a grip-site pose to the workspace box and the tilt/yaw limits."""
        lim = self.limits
        pos = np.clip(pos, lim.workspace_low, lim.workspace_high)
        roll, pitch, yaw = mat_to_rpy(mat)
        rpy = np.array(
            [np.clip(roll, -lim.max_tilt, lim.max_tilt), np.clip(pitch, -lim.max_tilt, lim.max_tilt),
             np.clip(yaw, -lim.max_yaw, lim.max_yaw)]
        )
        return pos, rpy_to_mat(rpy)

    def solve_ik(self, q_init: np.ndarray, pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
        """Joint angles [6] that put the grip site at `pos` [3] with rotation `mat` [3, 3], by damped least squares
        from `q_init`, within joint limits. Returns the best iterate (it may not reach an unreachable pose)."""
        d = self._scratch
        q = np.array(q_init, dtype=np.float64)
        lam2 = self.limits.ik_damping**2
        for _ in range(self.limits.ik_iterations):
            d.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            err = np.concatenate(
                [pos - d.site_xpos[self.site], rotation_error(mat, d.site_xmat[self.site].reshape(3, 3))]
            )
            if np.abs(err[:3]).max() < 1e-4 and np.abs(err[3:]).max() < 1e-3:
                break
            mujoco.mj_jacSite(self.model, d, self._jac[:3], self._jac[3:], self.site)
            jac = self._jac[:, self.dadr]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), err)
            q = np.clip(q + dq, JOINT_RANGE[:, 0], JOINT_RANGE[:, 1])
        return q

    def apply_action(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """Turn one 7-D action (dx, dy, dz, droll, dpitch, dyaw, gripper) into servo targets in `data.ctrl`.
        The delta moves the commanded grip pose, which is clipped to the workspace, solved by IK and rate-limited
        by the joint speed limit; gripper > 0.5 opens the jaws, otherwise they close."""
        pos, mat = self.ee_pose(data)
        if np.linalg.norm(self.target_pos - pos) > self.limits.max_lag:
            self.target_pos = pos + (self.target_pos - pos) * self.limits.max_lag / np.linalg.norm(self.target_pos - pos)
        if np.linalg.norm(rotation_error(self.target_mat, mat)) > 10 * self.limits.max_lag:
            self.target_mat = mat
        self.target_pos, self.target_mat = self.clip_pose(
            self.target_pos + action[:3], rpy_to_mat(action[3:6]) @ self.target_mat
        )
        q_now = self.joints(data)
        q_goal = self.solve_ik(q_now, self.target_pos, self.target_mat)
        step = self.limits.max_joint_speed * self.control_dt
        data.ctrl[self.act] = q_now + np.clip(q_goal - q_now, -step, step)
        data.ctrl[self.finger_act] = FINGER_TRAVEL if action[6] > 0.5 else 0.0
