"""Issue 10: several cameras and a proprio token. Shapes, the camera-order contract, round trips, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clearvla.data.stats import compute_statistics
from clearvla.errors import ConfigError, InputError
from clearvla.models.vla import VLA

CAMERAS = ("image", "wrist_image")


@pytest.fixture(scope="module")
def norm_stats():
    rng = np.random.default_rng(0)
    return {"cell": compute_statistics(rng.normal(0, 0.01, (64, 7)), rng.normal(0, 1, (64, 13)), 4)}


@pytest.fixture(scope="module")
def vla(norm_stats):
    return VLA.from_config("tiny", image_size=32, cameras=CAMERAS, proprio_dim=13, norm_stats=norm_stats, seed=3).eval()


@pytest.fixture(scope="module")
def views():
    rng = np.random.default_rng(1)
    return {name: rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for name in CAMERAS}


def test_prefix_is_patches_per_camera_then_one_proprio_token(vla):
    patches = vla.vision_backbone.num_patches
    assert vla.num_prefix_tokens == 2 * patches + 1
    pixel_values = torch.randn(3, 12, 32, 32)
    prefix = vla.prefix(pixel_values, torch.zeros(3, 13))
    assert prefix.shape == (3, 2 * patches + 1, vla.config.llama_config.hidden_size)
    # camera c's patches are the projector's output for channels c*6..c*6+5, plus camera c's embedding
    for c in range(2):
        alone = vla.projector(vla.vision_backbone(pixel_values[:, 6 * c : 6 * c + 6])) + vla.camera_embedding.weight[c]
        torch.testing.assert_close(prefix[:, c * patches : (c + 1) * patches], alone)
    torch.testing.assert_close(prefix[:, -1], vla.proprio_projector(torch.zeros(3, 13)))
    ids = torch.tensor([[1, 5, 6, 7]] * 3)
    out = vla(pixel_values, ids, attention_mask=torch.ones_like(ids), labels=ids, proprio=torch.zeros(3, 13))
    assert out.logits.shape[:2] == (3, 4 + 2 * patches + 1) and torch.isfinite(out.loss)


def test_camera_order_follows_the_config_not_the_dict(vla, views):
    """The dict's key order is irrelevant; swapping which image is called "wrist_image" changes the action input."""
    state = np.zeros(13)
    a = vla.observation_inputs(views, state)[0]
    b = vla.observation_inputs(dict(reversed(list(views.items()))), state)[0]
    swapped = vla.observation_inputs({"image": views["wrist_image"], "wrist_image": views["image"]}, state)[0]
    assert torch.equal(a, b)
    assert torch.equal(a[:, :6], swapped[:, 6:]) and torch.equal(a[:, 6:], swapped[:, :6])


def test_batch_equals_rows_and_proprio_matters(vla, views):
    rng = np.random.default_rng(2)
    states = rng.normal(0, 1, (2, 13))
    texts = ["pick up the red block", "push the blue plate left"]
    batch = vla.predict_action_tokens([views, views], texts, proprio=states)
    for i in range(2):
        np.testing.assert_array_equal(batch[i], vla.predict_action_tokens(views, texts[i], proprio=states[i]))
    pixel_values, _ = vla.observation_inputs(views, states[0])
    low, high = (torch.tensor(np.full((1, 13), v), dtype=torch.float32) for v in (-1.0, 1.0))
    assert not torch.equal(vla.prefix(pixel_values, low), vla.prefix(pixel_values, high))


def test_missing_camera_or_state_is_a_clear_error(vla, views):
    with pytest.raises(InputError, match=r"lacks camera\(s\) \['wrist_image'\]"):
        vla.predict_action({"image": views["image"]}, "push it", proprio=np.zeros(13))
    with pytest.raises(InputError, match="pass a dict"):
        vla.predict_action(views["image"], "push it", proprio=np.zeros(13))
    with pytest.raises(InputError, match="pass proprio"):
        vla.predict_action(views, "push it")
    with pytest.raises(InputError, match="1 x 13 finite numbers"):
        vla.predict_action(views, "push it", proprio=np.zeros(7))
    with pytest.raises(InputError, match="finite"):
        vla.predict_action(views, "push it", proprio=np.full(13, np.nan))


def test_round_trip_keeps_inputs_and_actions(vla, views, tmp_path):
    vla.save_pretrained(tmp_path / "ckpt")
    extra = json.loads((tmp_path / "ckpt" / "config.json").read_text())["clearvla"]
    assert extra["cameras"] == list(CAMERAS) and extra["proprio_dim"] == 13
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.cameras == CAMERAS and loaded.config.proprio_dim == 13
    state = np.linspace(-1, 1, 13)
    np.testing.assert_array_equal(loaded.predict_action(views, "push it", proprio=state), vla.predict_action(views, "push it", proprio=state))


def test_proprio_indices_read_only_the_chosen_entries_of_the_full_state(norm_stats, views, tmp_path):
    """A model told to read entries 0 1 2 5 6 takes the full 13-wide state (as the env, eval and server give it),
    ignores the rest, and keeps the choice in its checkpoint."""
    vla = VLA.from_config("tiny", image_size=32, cameras=CAMERAS, proprio_dim=13, proprio_indices=(0, 1, 2, 5, 6),
                          norm_stats=norm_stats, seed=3).eval()
    assert vla.proprio_projector.fc1.in_features == 5
    pixel_values, _ = vla.observation_inputs(views, np.zeros(13))
    state = torch.zeros(1, 13)
    joints_moved = state.clone()
    joints_moved[0, 7:] = 2.0
    yaw_moved = state.clone()
    yaw_moved[0, 5] = 2.0
    torch.testing.assert_close(vla.prefix(pixel_values, joints_moved), vla.prefix(pixel_values, state))
    assert not torch.equal(vla.prefix(pixel_values, yaw_moved), vla.prefix(pixel_values, state))
    vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.proprio_indices == (0, 1, 2, 5, 6)
    with pytest.raises(ConfigError, match=r"proprio_indices must be distinct entries of the 13-wide state .* got \[0, 13\]"):
        VLA.from_config("tiny", image_size=32, proprio_dim=13, proprio_indices=(0, 13))


def test_single_image_checkpoints_keep_openvla_layout(tmp_path, views):
    """No camera embedding or proprio MLP unless configured: OpenVLA's tensors only, one image in, same actions
    whether the image comes bare or in a dict."""
    single = VLA.from_config("tiny", image_size=32, norm_stats={"x": compute_statistics(np.zeros((4, 7)) + 0.1, None, 1)})
    assert single.camera_embedding is None and single.proprio_projector is None
    assert not any(k.startswith(("camera_embedding", "proprio_projector")) for k in single.state_dict())
    np.testing.assert_array_equal(single.predict_action_tokens(views["image"], "push it"),
                                  single.predict_action_tokens({"image": views["image"]}, "push it"))
    with pytest.raises(InputError, match="no proprio input"):
        single.predict_action(views["image"], "push it", proprio=np.zeros(13))


def test_new_proprio_indices_start_a_fresh_state_mlp_and_keep_every_other_weight(norm_stats):
    """Fine-tuning a checkpoint to read other entries of the state (`with_inputs`): the proprio MLP, whose input
    width changes, starts fresh as a whole; the vision, LLM and head keep their trained weights."""
    from dataclasses import replace

    from clearvla.train.build import with_inputs

    trained = VLA.from_config("tiny", image_size=32, cameras=CAMERAS, proprio_dim=13, proprio_indices=(0, 1, 2, 5, 6),
                              action_chunk=2, norm_stats=norm_stats, seed=3)
    moved = with_inputs(trained, replace(trained.config, proprio_indices=(5, 6)), seed=7)
    assert moved.proprio_projector.fc1.in_features == 2
    assert not torch.equal(moved.proprio_projector.fc2.weight, trained.proprio_projector.fc2.weight)
    for name in ("action_head.model.fc1.weight", "language_model.model.layers.0.mlp.up_proj.weight", "camera_embedding.weight"):
        torch.testing.assert_close(moved.state_dict()[name], trained.state_dict()[name])


def test_a_camera_added_to_a_checkpoint_leaves_the_others_their_rows(norm_stats):
    """Adding a third camera grows the camera embedding and the focus head: the cameras the checkpoint read keep
    their trained rows (by name, wherever they now stand), only the new camera's rows start fresh."""
    from dataclasses import replace

    from clearvla.train.build import with_inputs

    trained = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=13,
                              action_chunk=2, focus_head=True, norm_stats=norm_stats, seed=3)
    moved = with_inputs(trained, replace(trained.config, cameras=("wrist_image", "image_top", "image")), seed=7)
    old, new = trained.camera_embedding.weight, moved.camera_embedding.weight
    assert new.shape[0] == 3
    torch.testing.assert_close(new[0], old[1])
    torch.testing.assert_close(new[2], old[0])
    assert not torch.equal(new[1], old[0]) and not torch.equal(new[1], old[1])
    old_focus, new_focus = trained.focus_head.proj, moved.focus_head.proj
    torch.testing.assert_close(new_focus.weight[0:2], old_focus.weight[2:4])
    torch.testing.assert_close(new_focus.bias[4:6], old_focus.bias[0:2])
