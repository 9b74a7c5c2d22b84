"""The overhead camera `image_top`: opt-in, orthographic, framing every suite's part region; adding it to the model
changes no episode, no physics and no pixel of the other cameras; its attention masks mark the focus object."""

from __future__ import annotations

import re

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.commands.sim import CAMERA_CHOICES
from clearvla.errors import ConfigError
from clearvla.sim import scene, suites, world
from clearvla.sim.env import ATTENTION_RESOLUTION, WorkcellEnv, policy_cameras
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.rollout import run_episode
from clearvla.sim.sampling import MOTION_REGION, PART_REGION, TARGET_REGION


def _top_pixel(point: tuple[float, ...], size: int) -> tuple[float, float]:
    """(row, col) of world point (x, y[, z]) in the top image (orthographic: a projection onto the image axes,
    image right world +y, image up towards the robot base and up)."""
    p = np.subtract([*point, 0.0][:3], scene.TOP_CAMERA_LOOKAT)
    tilt = np.radians(scene.TOP_CAMERA_TILT)
    up = np.array([-np.cos(tilt), 0.0, np.sin(tilt)])
    return (0.5 - p @ up / scene.TOP_CAMERA_VIEW) * size, (0.5 + p[1] / scene.TOP_CAMERA_VIEW) * size


def test_the_top_camera_is_opt_in_and_the_defaults_are_unchanged() -> None:
    assert CAMERA_CHOICES == tuple(scene.CAMERAS)
    env = WorkcellEnv("train", image_size=32)
    assert env.cameras == ("image", "wrist_image") and "image_top" not in env.observation_space.spaces
    obs, _ = env.reset(options={"index": 0})
    assert list(obs) == ["image", "wrist_image", "proprio"]
    env.close()
    env = WorkcellEnv("train", image_size=32, cameras=("image_top", "image"))  # any order in; the env's order out
    obs, _ = env.reset(options={"index": 0})
    assert list(obs) == ["image", "image_top", "proprio"] and env.observation_space.contains(obs)
    assert obs["image_top"].shape == (32, 32, 3) and obs["image_top"].std() > 5
    assert env.render_mode is None and not env.wrist_camera
    env.close()
    for bad in ((), ("image", "image"), ("secondary_image",)):
        with pytest.raises(ConfigError, match="cameras must be distinct names"):
            WorkcellEnv("train", image_size=32, cameras=bad)
    assert policy_cameras(("image_top",)) == ("image", "image_top")  # the front view stays, for eval videos
    assert policy_cameras(("image", "image_top", "wrist_image")) == ("image", "wrist_image", "image_top")


def test_the_top_view_frames_every_suites_part_region() -> None:
    for box in (PART_REGION, TARGET_REGION, MOTION_REGION):
        for corner in ((box[0][0], box[1][0]), (box[0][1], box[1][1])):
            row, col = _top_pixel(corner, 1)
            margin = 0.05 / scene.TOP_CAMERA_VIEW  # room for a part's own extent beyond its centre
            assert margin <= row <= 1 - margin and margin <= col <= 1 - margin, (box, corner)


def _strip_top_camera(mjcf: str) -> str:
    stripped = re.sub(rf'\s*<camera name="{scene.TOP_CAMERA}"[^>]*/>', "", mjcf)
    assert stripped != mjcf
    return stripped


@pytest.mark.parametrize("index", [0, 1])
def test_the_top_camera_changes_no_physics_and_no_pixel_of_the_other_cameras(monkeypatch, index: int) -> None:
    """The expert's episode with the top camera in the model (rendered or not) and without it: the same actions,
    states and front and wrist frames, bit for bit."""

    def play(cameras: tuple[str, ...]):
        env = WorkcellEnv("train", image_size=32, cameras=cameras)
        try:
            return run_episode(env, ScriptedExpert(env, seed=0), suites.episode("train", index))
        finally:
            env.close()

    with_top = play(("image", "wrist_image", "image_top"))
    default = play(("image", "wrist_image"))
    build = world.build_mjcf
    monkeypatch.setattr(world, "build_mjcf", lambda *a, **k: _strip_top_camera(build(*a, **k)))
    without = play(("image", "wrist_image"))
    assert with_top.success and len(with_top) > 5
    for other in (default, without):
        assert other.success == with_top.success and len(other) == len(with_top)
        np.testing.assert_array_equal(np.stack(other.actions), np.stack(with_top.actions))
        np.testing.assert_array_equal(np.stack(other.proprio), np.stack(with_top.proprio))
        for key in ("image", "wrist_image"):
            np.testing.assert_array_equal(np.stack(other.images[key]), np.stack(with_top.images[key]))
    assert set(with_top.images) == {"image", "wrist_image", "image_top"} and set(default.images) == {"image", "wrist_image"}


def test_top_camera_attention_masks_mark_the_focus_object() -> None:
    size = 64
    env = WorkcellEnv("train", image_size=size, cameras=("image", "image_top"), attention_masks=True)
    shown = 0
    try:
        for index in range(4):
            _, info = env.reset(options={"index": index})
            assert set(info["attention"]) == {"image", "image_top"}
            mask = info["attention"]["image_top"]
            assert mask.shape == (ATTENTION_RESOLUTION, ATTENTION_RESOLUTION) and mask.dtype == np.uint8
            focus = env.world.body_id(env.focus())
            seg = env._renderer.segmentation(env.world.data, scene.TOP_CAMERA) == focus
            cell = size // ATTENTION_RESOLUTION
            np.testing.assert_array_equal(mask, seg.reshape(32, cell, 32, cell).any(axis=(1, 3)).astype(np.uint8))
            if not mask.any():  # the arm, above the table at the start, can hide a part from the overhead view
                continue
            shown += 1
            row, col = _top_pixel(tuple(env.world.position(env.focus())), ATTENTION_RESOLUTION)
            rows, cols = np.nonzero(mask)
            assert abs(rows.mean() + 0.5 - row) < 1.5 and abs(cols.mean() + 0.5 - col) < 1.5  # over the part
    finally:
        env.close()
    assert shown >= 2


def test_record_and_video_with_the_top_camera(tmp_path) -> None:
    lerobot = pytest.importorskip("clearvla.data.formats.lerobot")
    out = tmp_path / "top"
    args = ["sim", "record", "--episodes", "1", "--out", str(out), "--image-size", "32"]
    assert main([*args, "--cameras", "image", "wrist_image", "image_top"]) == 0
    (ep,) = lerobot.read_lerobot(out)
    assert sorted(ep.cameras) == ["image", "image_top", "wrist_image"]
    assert ep.images["image_top"].shape == (len(ep), 32, 32, 3)
    assert ep.attention is not None and set(ep.attention) == {"image", "wrist_image", "image_top"}
    assert main([*args[:-4], "--out", str(tmp_path / "x"), "--cameras", "image", "--no-wrist"]) == 2
    video = tmp_path / "top.gif"
    assert main(["sim", "video", "--out", str(video), "--image-size", "32", "--cameras", "image", "image_top"]) == 0
    assert video.stat().st_size > 1000


def test_evaluation_renders_the_cameras_a_checkpoint_reads() -> None:
    from clearvla.eval.workcell import WorkcellTarget
    from clearvla.infer.loading import PolicyInputs

    for cameras, rendered in (((("image_top",)), ("image", "image_top")),
                              (("image", "image_top", "wrist_image"), ("image", "wrist_image", "image_top")),
                              (("image",), ("image",))):
        player = WorkcellTarget("train", 32).open(PolicyInputs(cameras, 32, 0, ()))
        try:
            assert player.env.cameras == rendered
        finally:
            player.close()
