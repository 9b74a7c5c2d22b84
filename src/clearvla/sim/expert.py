"""A scripted expert for every task. It reads privileged ground truth (part poses, the commanded grip pose)
from the env and emits the same 7-D actions a policy would. Each episode draws a style (speed, hover and
release heights, grasp offsets, pauses) and per-step action noise from the expert's seed, so demonstrations
vary while staying reliable.

Use: expert = ScriptedExpert(env, seed=0); obs, info = env.reset(...); expert.reset();
     action = expert(obs, info)  # repeat until the episode ends
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clearvla.errors import InputError
from clearvla.sim.arm import GRIP_ABOVE_TIPS
from clearvla.sim.env import ACTION_HIGH, ACTION_LOW, WorkcellEnv
from clearvla.sim.geometry import mat_to_rpy, quat_to_mat, quat_yaw, wrap_angle
from clearvla.scene.objects import WALL
from clearvla.sim.objects import grasp_yaw
from clearvla.sim.tasks import top_z
from clearvla.scene.vocab import DIRECTION_AXIS

FINGER_FACE = 0.014  # m from the grip centre to the outer face of the closed fingers
DEFAULT_STEP_NOISE = 0.0015  # m, std of the per-step translation noise at noise=1
MAX_STEP_NOISE = 0.01  # m; beyond this the expert fails often (95% at 7 mm on the train suite)
Actions = Generator[np.ndarray, None, bool]


@dataclass(frozen=True)
class Style:
    """Per-episode variation of the expert."""

    speed: float  # max translation per step (m)
    hover: float  # approach height above the grasp point (m)
    grasp_offset: tuple[float, float]  # grasp point from the part centre along / across the jaw axis (m)
    place_offset: tuple[float, float]  # xy offset of the release point, as a fraction of the allowed slack
    release: float  # part bottom above the supporting surface at release (m)
    carry: float  # clearance over obstacles while carrying (m)
    pause: int  # steps to wait for the jaws to close or open
    noise: float  # std of per-step translation noise (m)


class ScriptedExpert:
    """Privileged scripted policy for `WorkcellEnv` (pass the env or any wrapper of it).

    `noise` scales all of the expert's variation (offsets and per-step noise); `step_noise` (m), when given, sets
    the std of the per-step translation noise alone. Raising it (DART, Laskey et al. 2017) shows a cloned policy
    states off the expert's path and the expert's way back from them; the expert re-plans every step, so the
    labels after a disturbance correct it, and an L1-trained policy learns the noise's median, zero."""

    def __init__(self, env: gym.Env, seed: int = 0, *, noise: float = 1.0, step_noise: float | None = None) -> None:
        if step_noise is not None and not 0.0 <= step_noise <= MAX_STEP_NOISE:
            raise InputError(f"step_noise must be in 0..{MAX_STEP_NOISE} m, got {step_noise}")
        self.env: WorkcellEnv = env.unwrapped  # type: ignore[assignment]
        self.seed = seed
        self.noise = noise
        self.step_noise = step_noise
        self.rng = np.random.default_rng(seed)
        self._plan: Actions | None = None
        self._grip = 1.0

    @property
    def translation_noise(self) -> float:
        """Std (m) of the Gaussian noise added to every translation step, in every episode (known before any)."""
        return DEFAULT_STEP_NOISE * self.noise if self.step_noise is None else self.step_noise

    def reset(self) -> None:
        """Start planning for the env's current episode (call after env.reset). The episode's randomness comes
        from (expert seed, episode seed), so it does not depend on which episodes ran before."""
        if self.env.setup is None:
            raise InputError("reset the env before the expert")
        self.rng = np.random.default_rng([self.seed, self.env.setup.spec.seed])
        r = self.rng
        self.style = Style(
            speed=float(r.uniform(0.018, 0.026)),
            hover=float(r.uniform(0.06, 0.10)),
            grasp_offset=(float(r.uniform(-0.005, 0.005) * self.noise), float(r.uniform(-0.0015, 0.0015) * self.noise)),
            place_offset=tuple(r.uniform(-1.0, 1.0, 2) * self.noise),  # type: ignore[arg-type]
            release=float(r.uniform(0.008, 0.02)),
            carry=float(r.uniform(0.03, 0.06)),
            pause=int(r.integers(2, 4)),
            noise=self.translation_noise,
        )
        self._grip = 1.0
        self._plan = self._episode()

    def __call__(self, obs: Any = None, info: Any = None) -> np.ndarray:
        """The next action [7] float32."""
        if self._plan is None:
            self.reset()
        assert self._plan is not None
        try:
            return next(self._plan)
        except StopIteration:
            return self._action(np.zeros(3), None, self._grip)

    # -- primitives ----------------------------------------------------------------------------------------------

    @property
    def _world(self):
        assert self.env.world is not None
        return self.env.world

    def _action(self, delta: np.ndarray, yaw: float | None, grip: float) -> np.ndarray:
        """Translation `delta` (clipped to the style speed), orientation correction towards upright and `yaw`."""
        arm = self._world.arm
        norm = float(np.linalg.norm(delta))
        if norm > self.style.speed:
            delta = delta * self.style.speed / norm
        delta = delta + self.rng.normal(0.0, self.style.noise, 3)
        roll, pitch, cur_yaw = mat_to_rpy(arm.target_mat)
        dyaw = 0.0 if yaw is None else float(wrap_angle(yaw - cur_yaw))
        rot = np.clip([-roll, -pitch, dyaw], -0.2, 0.2)
        self._grip = grip
        return np.clip(np.concatenate([delta, rot, [grip]]), ACTION_LOW, ACTION_HIGH).astype(np.float32)

    def _move(self, goal: Callable[[], np.ndarray], yaw: float | None, grip: float, tol: float, limit: int = 40) -> Actions:
        """Drive the grip site to `goal()` (re-evaluated every step) within `tol` metres."""
        arm = self._world.arm
        for _ in range(limit):
            pos, _ = arm.ee_pose(self._world.data)
            target = goal()
            yaw_err = 0.0 if yaw is None else abs(float(wrap_angle(yaw - mat_to_rpy(arm.target_mat)[2])))
            if np.linalg.norm(target - pos) < tol and yaw_err < 0.05:
                return True
            yield self._action(target - arm.target_pos, yaw, grip)
        return False

    def _wait(self, grip: float, steps: int) -> Actions:
        for _ in range(steps):
            yield self._action(np.zeros(3), None, grip)
        return True

    # -- skills --------------------------------------------------------------------------------------------------

    def _grasp_height(self, obj: str) -> float:
        """Grip-site height above the part's bottom for a grasp: the fingertips just clear the table, except
        bolts, which are held by the shaft just below the top."""
        dims = self._world.specs[obj].dims
        if self._world.specs[obj].kind == "bolt":
            return dims[2] - 0.018
        return GRIP_ABOVE_TIPS + 0.004

    def _grasp(self, obj: str) -> Actions:
        """Approach, descend, close and lift part `obj`; True when it is held afterwards."""
        w = self._world
        spec = w.specs[obj]
        cur_yaw = float(mat_to_rpy(w.arm.target_mat)[2])
        yaw = float(np.clip(grasp_yaw(spec, quat_yaw(w.quaternion(obj)), cur_yaw), -1.5, 1.5))
        # Offsets along the jaw axis (grip y) are free, the jaws centre the part; across it they eat into the pads.
        along, across = self.style.grasp_offset
        offset = np.array([-np.sin(yaw) * along + np.cos(yaw) * across, np.cos(yaw) * along + np.sin(yaw) * across, 0.0])
        h = self._grasp_height(obj)

        def at(height: float) -> Callable[[], np.ndarray]:
            return lambda: w.position(obj) * [1, 1, 0] + offset + [0, 0, w.bottom_z(obj) + height]

        yield from self._move(at(h + self.style.hover), yaw, 1.0, tol=0.012)
        yield from self._move(at(h), yaw, 1.0, tol=0.003, limit=20)
        yield from self._wait(0.0, self.style.pause + 1)
        lift_to = w.arm.target_pos + [0, 0, 0.09]
        yield from self._move(lambda: lift_to, None, 0.0, tol=0.01, limit=15)
        return w.held(obj)

    def _grasp_retrying(self, obj: str, attempts: int = 3) -> Actions:
        for _ in range(attempts):
            if (yield from self._grasp(obj)):
                return True
            up = self._world.arm.target_pos + [0, 0, 0.06]
            yield from self._move(lambda: up, None, 1.0, tol=0.01, limit=10)
        return False

    def _release_over(
        self, obj: str, centre: Callable[[], np.ndarray], slack: float, surface: float, clearance: float
    ) -> Actions:
        """Carry held part `obj` above `centre()` (xy, give or take `slack` metres), lower it until its bottom is
        `release` above height `surface`, open and back off. `clearance` is the height the part bottom keeps while
        travelling. False if the part was lost on the way."""
        w = self._world
        place_offset = np.array([*self.style.place_offset, 0.0]) * slack

        def over(bottom: float) -> Callable[[], np.ndarray]:
            # Keep the current grip-to-part offset, which absorbs any slip in the grasp.
            return lambda: centre() * [1, 1, 0] + place_offset + [0, 0, bottom + w.arm.ee_pose(w.data)[0][2] - w.bottom_z(obj)]

        yield from self._move(over(clearance), None, 0.0, tol=0.015)
        if not w.held(obj):
            return False
        yield from self._move(over(surface + self.style.release), None, 0.0, tol=0.005, limit=20)
        yield from self._wait(1.0, self.style.pause)
        up = w.arm.target_pos + [0, 0, 0.08]
        yield from self._move(lambda: up, None, 1.0, tol=0.01, limit=10)
        return True

    # -- tasks ---------------------------------------------------------------------------------------------------

    def _episode(self) -> Actions:
        """The task from the current state: a part already in the jaws (another policy's grasp, before a
        handover) is lifted and carried on, not dropped and grasped again."""
        task = self.env.setup.task  # type: ignore[union-attr]
        if task.task == "push":
            return (yield from self._push(task.obj, task.direction))
        held = self._world.held(task.obj)
        for _ in range(3):
            if held:
                lift_to = self._world.arm.target_pos + [0, 0, 0.06]
                yield from self._move(lambda: lift_to, None, 0.0, tol=0.01, limit=10)
                held = False
            elif not (yield from self._grasp_retrying(task.obj)):
                return False
            if task.task == "pick":
                return True
            if task.task == "place":
                done = yield from self._place(task.obj, task.target)
            else:
                done = yield from self._stack(task.obj, task.target)
            if done:
                return True
        return False

    def _clearance(self, obj: str) -> float:
        """Height for the bottom of carried part `obj`: above everything else on the table."""
        w = self._world
        return max(o.height for o in w.specs.values() if o.name != obj) + self.style.carry

    def _place(self, obj: str, target: str) -> Actions:
        w = self._world
        spec = w.specs[target]
        floor = spec.dims[2] if spec.kind == "fixture" else WALL
        part = w.specs[obj]
        slack = min(0.015, (min(spec.dims[:2]) - max(part.dims[:2])) / 2 - 0.01)
        return (yield from self._release_over(obj, lambda: w.position(target), max(slack, 0.0), floor, self._clearance(obj)))

    def _stack(self, obj: str, base: str) -> Actions:
        w = self._world
        slack = 0.1 * min(w.specs[base].dims[:2])
        return (yield from self._release_over(obj, lambda: w.position(base), slack, top_z(w, base), self._clearance(obj)))

    def _push(self, obj: str, direction: str) -> Actions:
        w = self._world
        axis = DIRECTION_AXIS[direction]
        spec = w.specs[obj]
        rot = quat_to_mat(w.quaternion(obj))
        if spec.kind in ("block", "plate", "bar"):
            half = float(np.abs(rot.T @ axis) @ (np.array(spec.dims) / 2))
        else:
            half = spec.dims[0] / 2
        lateral = float(self.rng.uniform(-0.004, 0.004) * self.noise)
        reach = half + FINGER_FACE  # grip centre to part centre when the closed fingers touch the part
        end = float(w.initial_positions[obj] @ axis) + 0.11 - reach
        z = 0.026

        def finger_at(along: Callable[[float], float], height: float) -> Callable[[], np.ndarray]:
            """Grip target on the part's line of travel, `along(part position on the axis)` along the axis."""

            def goal() -> np.ndarray:
                p = w.position(obj)
                across = p - (p @ axis) * axis
                return across * [1, 1, 0] + lateral * np.array([axis[1], -axis[0], 0.0]) + along(float(p @ axis)) * axis + [0, 0, height]

            return goal

        yield from self._move(finger_at(lambda a: a - reach - 0.03, z + self.style.hover), 0.0, 0.0, tol=0.012)
        yield from self._move(finger_at(lambda a: a - reach - 0.03, z), 0.0, 0.0, tol=0.005, limit=20)
        yield from self._move(finger_at(lambda a: min(a - reach + 0.03, end), z), 0.0, 0.0, tol=0.004, limit=40)
        return True
