"""The physics of one episode: the compiled model, its state, the arm controller, and ground-truth queries
(object poses, which parts the gripper holds). No rendering, no task logic."""

from __future__ import annotations

import mujoco
import numpy as np

from clearvla.errors import ConfigError
from clearvla.sim.arm import FINGERS, HOME_QPOS, Arm, ArmLimits
from clearvla.sim.geometry import rotation_error, rpy_to_mat
from clearvla.scene.objects import ObjectSpec, SceneObject
from clearvla.sim.scene import SceneSpec, build_mjcf

SETTLE_TIME = 0.3  # s of physics after reset so parts come to rest before the first observation


class Workcell:
    """One episode's simulation. `step(action)` advances one control period (control_dt seconds)."""

    def __init__(
        self,
        scene: SceneSpec,
        *,
        image_size: int,
        physics_dt: float,
        control_dt: float,
        limits: ArmLimits,
    ) -> None:
        self.scene = scene
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(scene, image_size=image_size, physics_dt=physics_dt))
        self.data = mujoco.MjData(self.model)
        self.substeps = max(1, round(control_dt / physics_dt))
        self.arm = Arm(self.model, limits, control_dt)
        self.specs: dict[str, ObjectSpec] = {o.name: o for o in scene.objects}
        self._body = {name: self.model.body(name).id for name in self.specs}
        self._geoms = {
            name: frozenset(int(g) for g in np.flatnonzero(self.model.geom_bodyid == bid))
            for name, bid in self._body.items()
        }
        self._fingers = tuple(
            frozenset(int(g) for g in np.flatnonzero(self.model.geom_bodyid == self.model.body(f"{f}_link").id))
            for f in FINGERS
        )
        self._gripper_geoms = self.arm.finger_geoms | frozenset(
            int(g) for g in np.flatnonzero(self.model.geom_bodyid == self.model.body("tool").id)
        )
        start = HOME_QPOS if scene.arm_start is None else self._start_qpos(scene.arm_start)
        self.arm.reset(self.data, start)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(round(SETTLE_TIME / physics_dt)):
            mujoco.mj_step(self.model, self.data)
        self.arm.reset(self.data, start)
        mujoco.mj_forward(self.model, self.data)
        self.initial_positions = {name: self.position(name) for name in self.specs}

    def _start_qpos(self, pose: tuple[float, float, float, float]) -> np.ndarray:
        """Joint angles [6] that put the grip site at `pose` (x, y, z, yaw), by IK from the home posture; raises
        ConfigError when the IK cannot reach it."""
        pos, mat = np.array(pose[:3]), rpy_to_mat(np.array([0.0, 0.0, pose[3]]))
        q = HOME_QPOS.copy()
        for _ in range(6):  # each call runs a capped number of IK iterations
            q = self.arm.solve_ik(q, pos, mat)
        self.arm.reset(self.data, q)  # forward kinematics only; the caller resets again before physics
        reached, reached_mat = self.arm.ee_pose(self.data)
        pos_err, rot_err = np.linalg.norm(reached - pos), np.linalg.norm(rotation_error(mat, reached_mat))
        if pos_err > 2e-3 or rot_err > 2e-2:
            raise ConfigError(f"arm_start {pose} is out of the arm's reach (IK error {pos_err * 1000:.1f} mm, {rot_err:.3f} rad)")
        return q

    def step(self, action: np.ndarray) -> None:
        """Apply one 7-D action (see `Arm.apply_action`) and integrate one control period."""
        self.arm.apply_action(self.data, action)
        for _ in range(self.substeps):
            mujoco.mj_step(self.model, self.data)

    def body_id(self, name: str) -> int:
        """MuJoCo body id of an object (part, target or distractor) by name."""
        return self._body[name]

    def position(self, name: str) -> np.ndarray:
        """World position [3] (m) of an object's frame."""
        return self.data.xpos[self._body[name]].copy()

    def quaternion(self, name: str) -> np.ndarray:
        """World orientation [4] (w, x, y, z) of an object's frame."""
        return self.data.xquat[self._body[name]].copy()

    def speed(self, name: str) -> float:
        """Linear speed (m/s) of a part (0 for static objects)."""
        body = self._body[name]
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, body, vel, 0)
        return float(np.linalg.norm(vel[3:]))

    def _contact_pairs(self) -> np.ndarray:
        n = self.data.ncon
        return self.data.contact.geom[:n] if n else np.zeros((0, 2), dtype=int)

    def touching(self, name: str, geoms: frozenset[int]) -> bool:
        """Whether object `name` is in contact with any geom in `geoms`."""
        own = self._geoms[name]
        return any((a in own and b in geoms) or (b in own and a in geoms) for a, b in self._contact_pairs())

    def touching_gripper(self, name: str) -> bool:
        """Whether the palm or either finger touches object `name`."""
        return self.touching(name, self._gripper_geoms)

    def held(self, name: str) -> bool:
        """Whether both fingers touch object `name` (a grasp through contact and friction)."""
        own = self._geoms[name]
        left, right = self._fingers
        touched = {int(b) if a in own else int(a) for a, b in self._contact_pairs() if a in own or b in own}
        return bool(touched & left) and bool(touched & right)

    def bottom_z(self, name: str) -> float:
        """Height (m) of a part's lowest geom point above the table (axis-aligned bound of its geoms)."""
        z = np.inf
        for g in self._geoms[name]:
            if self.model.geom_contype[g] == 0:
                continue
            z = min(z, self.data.geom_xpos[g][2] - _vertical_half_extent(self.model, self.data, g))
        return float(z)

    def scene_objects(self) -> list[SceneObject]:
        """Ground truth of every object now, in scene order."""
        return [
            SceneObject(
                name=o.name,
                category=o.category,
                kind=o.kind,
                colour=o.colour,
                size=o.size,
                dims=o.dims,
                position=tuple(float(v) for v in self.position(o.name)),
                quaternion=tuple(float(v) for v in self.quaternion(o.name)),
            )
            for o in self.scene.objects
        ]


def _vertical_half_extent(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> float:
    """Half extent along world z of a primitive geom at its current orientation."""
    size = model.geom_size[geom]
    mat = data.geom_xmat[geom].reshape(3, 3)
    kind = model.geom_type[geom]
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        return float(np.abs(mat[2]) @ size)
    if kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
        axis_z = abs(mat[2, 2])
        return float(size[1] * axis_z + size[0] * np.sqrt(max(0.0, 1 - axis_z**2)))
    if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        return float(size[0])
    # Meshes (hex nuts): the geom-frame bounding box, exact for an upright prism.
    return float(np.abs(mat[2]) @ model.geom_aabb[geom, 3:])
