"""openpi's observation layouts (serve/aliases.py) and image conventions (serve/images.py), without a server, and
through the service for a two-camera model that reads proprio."""

from __future__ import annotations

import numpy as np
import pytest
from service_calls import act_once

from clearvla.serve.aliases import canonical
from clearvla.serve.codecs import json_numpy_encode
from clearvla.serve.errors import RequestError
from clearvla.serve.images import rgb_image
from clearvla.serve.safety import RobotLimits, SafetyConfig
from clearvla.serve.service import PolicyService, ServeConfig

IMAGE = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
STATS = {"w": {"action": {"q01": [-0.02] * 3 + [-0.1] * 3 + [0.0], "q99": [0.02] * 3 + [0.1] * 3 + [1.0], "mask": [True] * 6 + [False]},
               "proprio": {"q01": [-1.0] * 8, "q99": [1.0] * 8}}}


def test_libero_layout():
    out = canonical({"observation/image": 1, "observation/wrist_image": 2, "observation/state": 3, "prompt": "go"}, ("image", "wrist"))
    assert out.payload == {"image": 1, "images": {"wrist": 2}, "state": 3, "instruction": "go"}
    assert out.ee_state and out.dropped == ()


def test_droid_layout_concatenates_a_joint_space_state():
    out = canonical({"observation/exterior_image_1_left": 1, "observation/wrist_image_left": 2, "prompt": "go",
                     "observation/joint_position": np.arange(7.0), "observation/gripper_position": np.array([0.5])}, ("image",))
    np.testing.assert_array_equal(out.payload.pop("state"), [0, 1, 2, 3, 4, 5, 6, 0.5])
    assert out.payload == {"image": 1, "instruction": "go"}
    assert not out.ee_state and out.dropped == ("observation/wrist_image_left",)


def test_aloha_layout_maps_cameras_and_keeps_the_models_own():
    images = {"cam_high": 1, "cam_left_wrist": 2, "cam_right_wrist": 3, "cam_low": 4}
    out = canonical({"images": images, "state": 5, "prompt": "go"}, ("image", "wrist", "low"))
    assert out.payload == {"image": 1, "images": {"wrist": 2, "low": 4}, "state": 5, "instruction": "go"}
    assert not out.ee_state and out.dropped == ("images.cam_right_wrist",)
    own = canonical({"image": 1, "images": {"cam_low": 4}, "instruction": "go"}, ("image", "cam_low"))  # a camera of that name
    assert own.payload == {"image": 1, "images": {"cam_low": 4}, "instruction": "go"} and own.ee_state


def test_our_fields_pass_through_unchanged():
    payload = {"image": 1, "images": {"wrist": 2}, "instruction": "go", "proprio": [0.0], "robot": "arm", "junk": 0}
    assert canonical(payload, ("image", "wrist")).payload == payload


@pytest.mark.parametrize("payload, field", [
    ({"image": 1, "observation/image": 2}, "observation/image"),
    ({"observation/image": 1, "observation/exterior_image_1_left": 2}, "observation/exterior_image_1_left"),
    ({"instruction": "a", "prompt": "b"}, "prompt"),
    ({"state": [1.0], "observation/state": [1.0]}, "observation/state"),
    ({"images": {"wrist": 1}, "observation/wrist_image": 2}, "observation/wrist_image"),
    ({"observation/joint_position": np.zeros(7)}, "observation/joint_position"),
    ({"observation/joint_position": np.zeros((7, 1)), "observation/gripper_position": np.zeros(1)}, "observation/joint_position"),
    ({"observation/joint_position": [0.0] * 7, "observation/gripper_position": np.zeros(1)}, "observation/joint_position"),
    ({"observation/wrist_image": 1, "images": [1]}, "images"),
])
def test_ambiguous_or_malformed_aliases_are_rejected(payload, field):
    with pytest.raises(RequestError) as info:
        canonical(payload, ("image", "wrist"))
    assert info.value.field == field and 400 <= info.value.status < 500


@pytest.mark.parametrize("array", [IMAGE, np.ascontiguousarray(IMAGE.transpose(2, 0, 1)), IMAGE / 255.0,
                                   (IMAGE / 255.0).astype(np.float32).transpose(2, 0, 1)])
def test_hwc_chw_uint8_float_images(array):
    expected = IMAGE if array.dtype == np.uint8 else (255 * (IMAGE / 255.0).astype(array.dtype)).astype(np.uint8)
    np.testing.assert_array_equal(rgb_image(json_numpy_encode(array), "image", 2**20, 64), expected)


def test_greyscale_and_rgba_only_when_asked():
    grey, rgba = IMAGE[:, :, 0], np.dstack([IMAGE, np.zeros((4, 5), np.uint8)])
    np.testing.assert_array_equal(rgb_image(grey, "image", 2**20, 64, greyscale=True), np.dstack([grey] * 3))
    np.testing.assert_array_equal(rgb_image(rgba, "image", 2**20, 64, greyscale=True), IMAGE)
    for image in (grey, rgba):
        with pytest.raises(RequestError, match=r"\[H, W, 3\] or \[3, H, W\]"):
            rgb_image(image, "image", 2**20, 64)


@pytest.mark.parametrize("array, words", [
    (IMAGE.astype(np.float32), "in \\[0, 1\\]"), (np.full((2, 2, 3), np.nan), "finite"), (IMAGE.astype(np.int16), "uint8"),
    (IMAGE.astype(bool), "uint8"), (np.zeros((0, 5, 3), np.float32), "1..64"), (np.zeros((3, 0, 0), np.uint8), "1..64"),
    (np.zeros((2, 2, 2), np.uint8), "shape"), (np.zeros((3, 70, 70), np.uint8), "1..64"),
])
def test_bad_images_name_the_field(array, words):
    with pytest.raises(RequestError, match=words) as info:
        rgb_image(array, "images.wrist", 2**20, 64)
    assert info.value.field == "images.wrist"


@pytest.fixture(scope="module")
def two_camera_vla():
    from clearvla.models.vla import VLA

    return VLA.from_config("tiny", image_size=32, cameras=("image", "wrist"), proprio_dim=8, norm_stats=STATS).eval()


def test_openpi_layouts_reach_a_two_camera_proprio_model(two_camera_vla):
    rng = np.random.default_rng(0)
    image, wrist = (rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8) for _ in range(2))
    state = rng.uniform(-0.3, 0.3, 8)
    service = PolicyService(two_camera_vla, ServeConfig())
    libero = act_once(service, {"observation/image": image, "observation/wrist_image": wrist.transpose(2, 0, 1),
                            "observation/state": state, "prompt": "put the nut in the tray"})
    droid = act_once(service, {"observation/exterior_image_1_left": image, "observation/wrist_image_left": wrist,
                           "observation/joint_position": state[:7], "observation/gripper_position": state[7:],
                           "prompt": "put the nut in the tray"})
    expected = two_camera_vla.predict_action({"image": image, "wrist": wrist}, "put the nut in the tray", "w", proprio=state)
    np.testing.assert_allclose(libero.action, expected)
    np.testing.assert_allclose(droid.action, expected)


def test_a_joint_space_state_is_never_taken_for_the_end_effector(two_camera_vla):
    boxed = SafetyConfig({"arm": RobotLimits(workspace_low=(-0.5,) * 3, workspace_high=(0.5,) * 3)})
    service = PolicyService(two_camera_vla, ServeConfig(safety=boxed))
    droid = {"observation/exterior_image_1_left": IMAGE, "observation/wrist_image_left": IMAGE, "prompt": "go",
             "observation/joint_position": np.zeros(7), "observation/gripper_position": np.zeros(1)}
    with pytest.raises(RequestError, match="not a joint-space state") as info:
        act_once(service, droid)
    assert info.value.field == "proprio"
    libero = {"observation/image": IMAGE, "observation/wrist_image": IMAGE, "observation/state": np.zeros(8), "prompt": "go"}
    assert act_once(service, libero).kind == "action"  # LIBERO's state starts with the end-effector position
