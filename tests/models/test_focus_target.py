"""The focus head: the action slots regress where the object the arm heads for shows in every camera (issue 6)."""

import numpy as np
import pytest
import torch

from clearvla.errors import ConfigError, InputError
from clearvla.config import get_config
from clearvla.models.focus_target import FocusHead, mask_centroids
from clearvla.models.vla import VLA

NORM = {"sim": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}


def test_centroids_are_the_mean_pixel_centre_in_minus_one_to_one_and_empty_masks_are_not_visible():
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    masks[0, 0, 0, 0] = 1  # top-left pixel: centre at (0.5 / 4) * 2 - 1 = -0.75 on both axes
    masks[0, 1, 1:3, 2:4] = 1  # rows 1-2, columns 2-3: u = (2.5 + 3.5) / 2 / 4 * 2 - 1 = 0.5, v = 0.0
    centroids, visible = mask_centroids(masks)
    torch.testing.assert_close(centroids[0, 0], torch.tensor([-0.75, -0.75]))
    torch.testing.assert_close(centroids[0, 1], torch.tensor([0.5, 0.0]))
    assert visible.tolist() == [[True, True, False]]
    with pytest.raises(InputError, match=r"\[B, cameras, h, w\]"):
        mask_centroids(masks[0])


def test_loss_counts_only_cameras_where_the_object_shows():
    head = FocusHead(hidden_size=4, cameras=2)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([0.5, 0.0, 0.9, 0.9]))  # camera 0 predicts (0.5, 0), camera 1 (0.9, 0.9)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, 1:3, 2:4] = 1  # camera 0's true centroid (0.5, 0): no error; camera 1 empty: not counted
    states = torch.randn(1, 3, 4)
    assert head.loss(states, masks).item() == pytest.approx(0.0, abs=1e-6)
    masks[0, 1, 0, 0] = 1  # now camera 1 shows it at (-0.75, -0.75): error 1.65 on both axes, over 4 values
    assert head.loss(states, masks).item() == pytest.approx(2 * 1.65 / 4, rel=1e-5)
    empty = head.loss(states, torch.zeros(1, 2, 4, 4))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(InputError, match="2 cameras"):
        head.loss(states, masks[:, :1])


def test_chunk_models_with_a_focus_head_return_its_loss_and_keep_the_head_in_checkpoints(tmp_path):
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=2, focus_head=True)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    pixel_values = vla.processor([image, image[::-1].copy()])
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, 0, :2, 6:] = 1
    assert vla(pixel_values, ids, torch.ones_like(ids)).focus_loss is None  # inference: no masks, no head
    out = vla(pixel_values, ids, torch.ones_like(ids), attention_target=masks)
    assert out.focus_loss.ndim == 0 and out.focus_loss > 0
    out.focus_loss.backward()
    assert vla.focus_head.proj.weight.grad.abs().sum() > 0
    assert vla.language_model.model.layers[-1].mlp.down_proj.weight.grad.abs().sum() > 0  # it shapes the slots' states
    vla.save_pretrained(tmp_path / "model")
    loaded = VLA.from_pretrained(tmp_path / "model")
    assert loaded.config.focus_head and loaded.focus_head is not None
    torch.testing.assert_close(loaded.focus_head.proj.weight, vla.focus_head.proj.weight)
    with pytest.raises(ConfigError, match="focus_head needs an action-chunk model"):
        get_config("tiny", focus_head=True)
