"""The gymnasium environment `clearvla/Workcell-v0`.

Observation (dict):
  "image":       [H, W, 3] uint8, fixed third-person camera (H = W = image_size)
  "wrist_image": [H, W, 3] uint8, camera on the gripper (absent when wrist_camera=False)
  "image_top":   [H, W, 3] uint8, fixed overhead orthographic camera (only when `cameras` names it)
  "proprio":     [13] float32, see PROPRIO_KEYS, inside PROPRIO_LOW / PROPRIO_HIGH
Action: [7] float32 (dx, dy, dz, droll, dpitch, dyaw, gripper): metres / radians per control step in the world
(= robot base) frame, gripper 1 = open, 0 = closed (threshold 0.5); clipped to ACTION_LOW / ACTION_HIGH.
Episodes terminate on success (reward 1) and truncate at the task's own step limit (`tasks.STEP_LIMITS`: 60 or 100
steps); the registered ids add gymnasium's TimeLimit at the longest of them, so it never cuts an episode short.
info["episode_spec"] names the episode (suite, index, seed, task); info["episode"] is left to gymnasium's
`RecordEpisodeStatistics`.

The proprio bounds hold for every reachable state, not just typical ones: grip xyz in the cube of half-side
ARM_REACH around SHOULDER (no posture reaches further), roll and yaw in [-pi, pi], pitch in [-pi/2, pi/2] (the
ranges of `geometry.mat_to_rpy`), the opening in [0, 1], the joints in `arm.JOINT_RANGE` widened by JOINT_SLACK.
The grip works far inside them, in the `ArmLimits` workspace (which it can overshoot by a few centimetres).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import gymnasium as gym
import numpy as np

from clearvla.errors import ConfigError, InputError
from clearvla.sim import suites
from clearvla.sim.arm import JOINT_RANGE, ArmLimits
from clearvla.scene.objects import SceneObject
from clearvla.sim.render import CameraRenderer
from clearvla.sim.sampling import EpisodeSetup, EpisodeSpec
from clearvla.sim.scene import CAMERAS, FRONT_CAMERA
from clearvla.sim.tasks import is_success
from clearvla.sim.world import Workcell

PROPRIO_KEYS: tuple[str, ...] = (
    "x", "y", "z", "roll", "pitch", "yaw", "gripper",
    "shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3",
)  # fmt: skip
ACTION_LOW = np.array([-0.03, -0.03, -0.03, -0.25, -0.25, -0.25, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([0.03, 0.03, 0.03, 0.25, 0.25, 0.25, 1.0], dtype=np.float32)
SHOULDER = (0.0, 0.0, 0.089159)  # m, world position of the shoulder joints' centre, which no joint moves
ARM_REACH = 1.35  # m, the link offsets from the shoulder to the grip site summed (1.3446): no posture reaches further
JOINT_SLACK = 0.1  # rad; MuJoCo's joint limits are soft (an arm driven into one overshoots it by ~0.005 rad)
_RPY_BOUND = np.array([np.pi, np.pi / 2, np.pi])
PROPRIO_LOW = np.concatenate(
    [np.subtract(SHOULDER, ARM_REACH), -_RPY_BOUND, [0.0], JOINT_RANGE[:, 0] - JOINT_SLACK]
).astype(np.float32)
PROPRIO_HIGH = np.concatenate(
    [np.add(SHOULDER, ARM_REACH), _RPY_BOUND, [1.0], JOINT_RANGE[:, 1] + JOINT_SLACK]
).astype(np.float32)


ATTENTION_RESOLUTION = 32  # side of the recorded attention masks (image_size must be a multiple)
DEFAULT_CAMERAS = ("image", "wrist_image")


def check_cameras(cameras: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`cameras` as a tuple in the env's order (that of `scene.CAMERAS`: image, wrist_image, image_top); raises
    ConfigError for an empty list, an unknown name or a repeated one."""
    cameras = tuple(cameras)
    unknown = [c for c in cameras if c not in CAMERAS]
    if not cameras or unknown or len(set(cameras)) != len(cameras):
        raise ConfigError(f"cameras must be distinct names from {list(CAMERAS)}, got {list(cameras)}")
    return tuple(c for c in CAMERAS if c in cameras)


def policy_cameras(model_cameras: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The cameras an env must render for a policy reading `model_cameras`: those, plus the front "image" (what
    evaluation videos and overlays show). Raises ConfigError for a camera the workcell does not have."""
    return check_cameras(tuple(dict.fromkeys(("image", *model_cameras))))


class InstructionParse(Mapping[str, Any]):
    """info["instruction_parse"], read-only: {"task", "object", "target", "direction"} as in `EpisodeSetup.parse`
    (`dict(parse)` gives the plain dict). Not a dict so that gymnasium's vector envs batch it whole, per sub-env:
    they merge dict infos key by key, which fails where one episode's "target" is None and another's a dict."""

    def __init__(self, parse: dict[str, Any]) -> None:
        self._parse = copy.deepcopy(parse)

    def __getitem__(self, key: str) -> Any:
        return self._parse[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parse)

    def __len__(self) -> int:
        return len(self._parse)

    def __repr__(self) -> str:
        return f"InstructionParse({self._parse!r})"


class WorkcellEnv(gym.Env):
    """Industrial workcell: a UR5-like arm, parts, bins; language-conditioned pick/place/stack/push tasks.

    suite:         which episode list reset() draws from (see `clearvla.sim.suites.SUITES`).
    image_size:    side of the square camera images in pixels.
    wrist_camera:  include "wrist_image" in observations (when `cameras` is None).
    cameras:       the camera observations to render, a subset of `scene.CAMERAS` ("image": front, "wrist_image":
                   gripper, "image_top": overhead, orthographic); None: "image", plus "wrist_image" if wrist_camera.
                   Whichever are rendered, the episode and its physics are the same.
    images:        render cameras at all (False gives proprio-only observations, for fast expert runs).
    control_hz:    control rate; each step integrates 1 / control_hz seconds of physics.
    physics_dt:    MuJoCo timestep in seconds.
    attention_masks: also give info["attention"], per camera a [32, 32] uint8 mask of where the object the arm
                   heads for now shows (from a segmentation render): the task's part until it is held, then the
                   place or stack target. The ground truth for attention supervision. Keyed like the observation.
    random_start:  start each episode's arm at the episode's own pose (`sampling.START_BOX`); False starts every
                   episode at the home posture.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        suite: str = "train",
        *,
        image_size: int = 224,
        wrist_camera: bool = True,
        cameras: tuple[str, ...] | None = None,
        images: bool = True,
        control_hz: float = 10.0,
        physics_dt: float = 0.002,
        render_mode: str | None = None,
        limits: ArmLimits | None = None,
        attention_masks: bool = False,
        random_start: bool = True,
    ) -> None:
        self.suite = suites.check_suite(suite)
        if attention_masks and (not images or image_size % ATTENTION_RESOLUTION):
            raise ConfigError(f"attention masks need rendered images of a size divisible by {ATTENTION_RESOLUTION}, got "
                              f"images={images} image_size={image_size}")
        if not isinstance(image_size, int) or not 16 <= image_size <= 1024:
            raise ConfigError(f"image_size must be an integer in [16, 1024], got {image_size!r}")
        if not control_hz > 0 or not 0 < physics_dt <= 1.0 / control_hz:
            raise ConfigError(
                f"need control_hz > 0 and 0 < physics_dt <= 1 / control_hz, got {control_hz=} {physics_dt=}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size = image_size
        if cameras is None:
            cameras = DEFAULT_CAMERAS if wrist_camera else ("image",)
        self.cameras: tuple[str, ...] = check_cameras(cameras) if images else ()
        self.wrist_camera = "wrist_image" in self.cameras
        self.images = images
        self.attention_masks = attention_masks
        self.random_start = random_start
        self._attention: dict[str, np.ndarray] = {}
        self.control_dt = 1.0 / control_hz
        self.physics_dt = physics_dt
        self.render_mode = render_mode
        self.limits = limits or ArmLimits()
        self.metadata = {**self.metadata, "render_fps": control_hz}
        spaces: dict[str, gym.Space] = {}
        for key in self.cameras:
            spaces[key] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        spaces["proprio"] = gym.spaces.Box(PROPRIO_LOW, PROPRIO_HIGH, dtype=np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        self.world: Workcell | None = None
        self.setup: EpisodeSetup | None = None
        self._renderer: CameraRenderer | None = None
        self._frame: np.ndarray | None = None
        self._steps = 0

    # -- gymnasium API -------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. options={"episode": EpisodeSpec} plays that episode; options={"index": i} plays
        episode i of this env's suite; otherwise an episode of the suite is drawn with the env's seeded RNG."""
        super().reset(seed=seed)
        options = options or {}
        if "episode" in options:
            spec = options["episode"]
            if not isinstance(spec, EpisodeSpec):
                raise InputError(f"options['episode'] must be a clearvla.sim.suites EpisodeSpec, got {type(spec).__name__}")
        elif "index" in options:
            spec = suites.episode(self.suite, int(options["index"]))
        else:
            specs = suites.episodes(self.suite)
            spec = specs[int(self.np_random.integers(len(specs)))]
        self.setup = suites.setup(spec, random_start=self.random_start)
        self.world = Workcell(
            self.setup.scene,
            image_size=self.image_size,
            physics_dt=self.physics_dt,
            control_dt=self.control_dt,
            limits=self.limits,
        )
        if self.images or self.render_mode == "rgb_array":
            if self._renderer is None:
                self._renderer = CameraRenderer(self.image_size)
            self._renderer.bind(self.world.model)
        self._steps = 0
        return self._observation(), self._info(success=False)

    def step(self, action):
        if self.world is None or self.setup is None:
            raise InputError("call reset() before step()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise InputError(f"action must be 7 finite numbers (dx, dy, dz, droll, dpitch, dyaw, gripper), got {action!r}")
        self.world.step(np.clip(action, ACTION_LOW, ACTION_HIGH))
        self._steps += 1
        success = is_success(self.world, self.setup.task)
        truncated = not success and self._steps >= self.setup.max_steps
        return self._observation(), float(success), success, truncated, self._info(success=success)

    def render(self) -> np.ndarray | None:
        """The third-person RGB frame [H, W, 3] uint8 (render_mode="rgb_array"), else None."""
        if self.render_mode != "rgb_array" or self.world is None:
            return None
        if self._frame is None:
            self._frame = self._camera(FRONT_CAMERA)
        return self._frame

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- ground truth ---------------------------------------------------------------------------------------------

    def scene_objects(self) -> list[SceneObject]:
        """Every object's attributes and current pose (parts, targets, distractors)."""
        if self.world is None:
            raise InputError("call reset() before scene_objects()")
        return self.world.scene_objects()

    def segmentation(self, camera: str) -> np.ndarray:
        """Body id per pixel [H, W] int32 (-1 where nothing shows) of observation camera `camera` (e.g. "image")."""
        if self.world is None or self._renderer is None:
            raise InputError("call reset() with images before segmentation()")
        return self._renderer.segmentation(self.world.data, CAMERAS[camera])

    @property
    def steps(self) -> int:
        """Control steps taken in the current episode."""
        return self._steps

    # -- internals -----------------------------------------------------------------------------------------------

    def _camera(self, name: str) -> np.ndarray:
        assert self._renderer is not None and self.world is not None
        return self._renderer.render(self.world.data, name)

    def _observation(self) -> dict[str, np.ndarray]:
        assert self.world is not None
        self._frame = None
        obs: dict[str, np.ndarray] = {}
        for key in self.cameras:
            obs[key] = self._camera(CAMERAS[key])
        self._frame = obs.get("image")
        if self.attention_masks:
            self._attention = self._attention_masks()
        obs["proprio"] = self.world.arm.proprio(self.world.data)
        return obs

    def focus(self) -> str:
        """The object the arm heads for now: the task's part until it is held, then the target (place, stack)."""
        assert self.world is not None and self.setup is not None
        task = self.setup.task
        return task.target if task.target is not None and self.world.held(task.obj) else task.obj

    def _attention_masks(self) -> dict[str, np.ndarray]:
        """Per camera, [R, R] uint8 (R = ATTENTION_RESOLUTION): 1 where a pixel of `focus()` shows. One object at a
        time: a mask of part and target together let a policy head for the target first."""
        assert self._renderer is not None and self.world is not None
        body = self.world.body_id(self.focus())
        cell = self.image_size // ATTENTION_RESOLUTION
        masks = {}
        for key in self.cameras:
            shows = self.segmentation(key) == body
            r = ATTENTION_RESOLUTION
            masks[key] = shows.reshape(r, cell, r, cell).any(axis=(1, 3)).astype(np.uint8)
        return masks

    def _info(self, *, success: bool) -> dict[str, Any]:
        assert self.setup is not None
        s = self.setup
        extra = {"attention": dict(self._attention)} if self.attention_masks else {}
        return {
            **extra,
            "instruction": s.instruction,
            "task": s.task.task,
            "success": bool(success),
            "suite": s.spec.suite,
            "episode_spec": asdict(s.spec),
            "step": self._steps,
            "max_steps": s.max_steps,
            "objects": self.scene_objects(),
            "intended_object": s.intended_object,
            "target_object": s.task.target,
            "direction": s.task.direction,
            "candidates": list(s.candidates),
            "distinguishing_attributes": list(s.distinguishing_attributes),
            "unambiguous_instruction": s.unambiguous_instruction,
            "instruction_parse": InstructionParse(s.parse),
        }
