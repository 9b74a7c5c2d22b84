"""The gymnasium env: registration, spaces, rendering shapes, determinism, info, errors, truncation."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import clearvla.sim  # noqa: F401  registers the ids
from clearvla.errors import ConfigError, InputError
from clearvla.sim import ENV_ID, ENV_IDS, suites
from clearvla.sim.env import ATTENTION_RESOLUTION, PROPRIO_KEYS, WorkcellEnv
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.scene import FRONT_CAMERA
from clearvla.scene.objects import SceneObject


def test_make_registered_ids_and_render_shapes() -> None:
    env = gym.make(ENV_ID, suite="visual", image_size=64, render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["wrist_image"].shape == (64, 64, 3) and obs["wrist_image"].dtype == np.uint8
    assert obs["proprio"].shape == (len(PROPRIO_KEYS),) and obs["proprio"].dtype == np.float32
    assert env.observation_space.contains(obs)
    assert env.render().shape == (64, 64, 3)
    assert obs["image"].std() > 5  # an actual picture, not a blank buffer
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    env.close()
    assert set(ENV_IDS) == set(suites.SUITES)
    env = gym.make(ENV_IDS["semantic"], image_size=32, wrist_camera=False)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"image", "proprio"} and info["suite"] == "semantic"
    env.close()


def test_default_image_size_is_224() -> None:
    env = WorkcellEnv("train")
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (224, 224, 3) and obs["wrist_image"].shape == (224, 224, 3)
    env.close()


def rollout(seed: int, steps: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    env = WorkcellEnv("train", image_size=48)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    images, proprio = [obs["image"]], [obs["proprio"]]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32))
        images.append(obs["image"])
        proprio.append(obs["proprio"])
    env.close()
    return images, proprio


def test_same_seed_same_trajectory() -> None:
    a_img, a_prop = rollout(7)
    b_img, b_prop = rollout(7)
    assert all(np.array_equal(x, y) for x, y in zip(a_img, b_img))
    assert all(np.array_equal(x, y) for x, y in zip(a_prop, b_prop))
    c_img, _ = rollout(8)
    assert not np.array_equal(a_img[0], c_img[0])


def test_reset_options_choose_episodes() -> None:
    env = WorkcellEnv("ambiguous", images=False)
    spec = suites.episode("ambiguous", 5)
    _, info = env.reset(options={"episode": spec})
    assert info["episode_spec"]["index"] == 5 and info["task"] == spec.task
    _, info2 = env.reset(options={"index": 5})
    assert info2["instruction"] == info["instruction"]
    with pytest.raises(InputError):
        env.reset(options={"episode": 5})
    with pytest.raises(ConfigError, match="out of range"):
        env.reset(options={"index": 10_000})


def test_info_ground_truth() -> None:
    env = WorkcellEnv("ambiguous", images=False)
    _, info = env.reset(options={"index": 0})
    for key in ("instruction", "task", "success", "objects", "intended_object", "candidates",
                "distinguishing_attributes", "unambiguous_instruction", "instruction_parse", "target_object"):
        assert key in info
    assert len(info["candidates"]) >= 2 and info["intended_object"] in info["candidates"]
    assert info["distinguishing_attributes"] and info["unambiguous_instruction"] != info["instruction"]
    objs = env.unwrapped.scene_objects()
    assert all(isinstance(o, SceneObject) for o in objs)
    names = {o.name for o in objs}
    assert info["intended_object"] in names
    part = next(o for o in objs if o.name == info["intended_object"])
    assert part.category == "part" and len(part.position) == 3 and len(part.quaternion) == 4
    assert info["instruction_parse"]["object"]["kind"] == part.kind


def test_unknown_suite_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="train, visual, motion, physical, semantic, ambiguous"):
        gym.make(ENV_ID, suite="nope")
    with pytest.raises(ConfigError):
        suites.episodes("nope")
    with pytest.raises(ConfigError):
        WorkcellEnv("train", image_size=8)


def test_bad_action_is_an_input_error() -> None:
    env = WorkcellEnv("train", images=False)
    env.reset(seed=0)
    with pytest.raises(InputError):
        env.step(np.zeros(6))
    with pytest.raises(InputError):
        env.step(np.full(7, np.nan))


def test_truncates_at_task_step_limit() -> None:
    env = WorkcellEnv("train", images=False)
    _, info = env.reset(options={"episode": suites.episode("train", 0)})  # a pick task
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        steps += 1
        done = terminated or truncated
    assert truncated and not terminated and reward == 0.0 and steps == info["max_steps"]


def test_attention_masks_cover_the_task_part_in_both_cameras() -> None:
    env = WorkcellEnv("train", image_size=64, attention_masks=True)
    try:
        obs, info = env.reset(options={"index": 0})
        masks = info["attention"]
        assert set(masks) == {"image", "wrist_image"}
        assert all(m.shape == (ATTENTION_RESOLUTION, ATTENTION_RESOLUTION) and m.dtype == np.uint8 for m in masks.values())
        front = masks["image"]
        assert 0 < front.sum() < front.size // 4  # the part shows, and is small in the front view
        assert env.setup.task.task == "pick" and env.setup.task.target is None  # so only the part is marked
        seg = env._renderer.segmentation(env.world.data, FRONT_CAMERA)
        cell = 64 // ATTENTION_RESOLUTION
        part = (seg == env.world.body_id(env.setup.task.obj)).reshape(32, cell, 32, cell).any(axis=(1, 3))
        np.testing.assert_array_equal(front, part.astype(np.uint8))
        rgb = obs["image"].reshape(32, cell, 32, cell, 3).mean(axis=(1, 3))
        assert np.abs(rgb[front.astype(bool)].mean(0) - rgb[~front.astype(bool)].mean(0)).max() > 20  # not background
        assert "attention" not in WorkcellEnv("train", image_size=64).reset(options={"index": 0})[1]
    finally:
        env.close()
    with pytest.raises(ConfigError, match="divisible by 32"):
        WorkcellEnv("train", image_size=48, attention_masks=True)


def test_attention_masks_move_from_the_part_to_the_target_once_the_part_is_held() -> None:
    env = WorkcellEnv("train", image_size=64, attention_masks=True)
    try:
        obs, info = env.reset(options={"index": 1})
        task = env.setup.task
        assert task.task == "place"
        expert = ScriptedExpert(env, seed=0)
        expert.reset()

        def mask_of(name: str) -> np.ndarray:
            seg = env._renderer.segmentation(env.world.data, FRONT_CAMERA) == env.world.body_id(name)
            return seg.reshape(32, 2, 32, 2).any(axis=(1, 3)).astype(np.uint8)

        assert env.focus() == task.obj
        np.testing.assert_array_equal(info["attention"]["image"], mask_of(task.obj))
        for _ in range(info["max_steps"]):
            obs, _, terminated, truncated, info = env.step(expert(obs, info))
            if env.world.held(task.obj) or terminated or truncated:
                break
        assert env.world.held(task.obj) and env.focus() == task.target
        np.testing.assert_array_equal(info["attention"]["image"], mask_of(task.target))
    finally:
        env.close()


def test_renders_headless_without_a_chosen_backend() -> None:
    """With no display and no MUJOCO_GL, importing the simulator picks EGL, so the first frame renders instead of
    failing in MuJoCo's OpenGL setup; a backend the user chose is kept."""
    script = (
        "import os, numpy as np\n"
        "from clearvla.sim.env import WorkcellEnv\n"
        "obs, _ = WorkcellEnv('train', image_size=32).reset(seed=0)\n"
        "print(os.environ['MUJOCO_GL'], int(np.asarray(obs['image']).std() > 0))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["egl", "1"]
    chosen = subprocess.run([sys.executable, "-c", "import os, clearvla.sim; print(os.environ['MUJOCO_GL'])"],
                            env={**env, "MUJOCO_GL": "osmesa"}, capture_output=True, text=True, timeout=120)
    assert chosen.stdout.strip() == "osmesa"
