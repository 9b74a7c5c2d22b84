"""The training-only objectives (train/objectives.py; issue 6): attention supervision of the action slots, the focus
head's centroids and the patch reconstruction, computed from what the model's forward returns."""

import math

import numpy as np
import pytest
import torch

from clearvla.errors import InputError
from clearvla.models.heads import FocusHead
from clearvla.models.vla import VLA
from clearvla.train import objectives
from clearvla.train.config import ObjectiveOptions
from clearvla.train.objectives import (
    SUPERVISED_HEADS,
    SUPERVISED_LAYER,
    attention_loss,
    focus_loss,
    mask_centroids,
    patch_mask,
    patch_targets,
)

NORM = {"sim": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}
ATTENTION = ObjectiveOptions(attention_loss=1.0)


def _chunk_model(**overrides) -> VLA:
    return VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=2, **overrides)


def _inputs(vla: VLA):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    return vla.processor([image, image[::-1].copy()]), ids, torch.ones_like(ids)


def _supervised(vla: VLA, target: torch.Tensor, weights: ObjectiveOptions = ATTENTION):
    """One training forward with the objectives, as the loop runs it: (output, {name: loss})."""
    pixel_values, ids, mask = _inputs(vla)
    targets = {"attention_target": target}
    actions = torch.zeros(2, 2, 7)
    with objectives.attention_implementation(vla, weights):
        out = vla(pixel_values, ids, mask, actions=actions, **objectives.forward_options(weights, targets))
    return out, objectives.losses(vla, out, {"pixel_values": pixel_values}, targets)


# --- attention supervision ----------------------------------------------------------------------------------------
def test_loss_is_minus_log_of_the_slots_mass_on_target_patches():
    # 2 rows, 1 head, T = 1 BOS + 4 patches + 1 text + 2 slots; slot rows put 0.6 / 0.3 on patch 2 (position 3)
    weights = torch.zeros(2, 1, 8, 8)
    weights[0, 0, 6:, 3], weights[0, 0, 6:, 0] = 0.6, 0.4
    weights[1, 0, 6:, 3], weights[1, 0, 6:, 0] = 0.3, 0.7
    target = torch.zeros(2, 1, 4)
    target[:, 0, 2] = 1
    loss = attention_loss(weights, target, first_patch=1, n_slots=2)
    assert loss.item() == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2, rel=1e-4)


def test_only_the_first_half_of_the_heads_is_supervised():
    # 4 heads: heads 0-1 put 0.5 on the target patch, heads 2-3 (free to read the state) put nothing there
    weights = torch.zeros(1, 4, 8, 8)
    weights[0, :2, 6:, 3], weights[0, :2, 6:, 0] = 0.5, 0.5
    weights[0, 2:, 6:, 5] = 1.0
    target = torch.zeros(1, 1, 4)
    target[0, 0, 2] = 1
    assert SUPERVISED_HEADS == 0.5
    assert attention_loss(weights, target, 1, 2).item() == pytest.approx(-math.log(0.5), rel=1e-4)


def test_rows_without_a_visible_target_are_left_out_and_none_gives_zero():
    weights = torch.full((2, 1, 8, 8), 1 / 8)
    target = torch.zeros(2, 1, 4)
    assert attention_loss(weights, target, 1, 2).item() == 0.0
    target[1, 0, :2] = 1  # row 0 has no target: only row 1 counts (mass 2/8)
    assert attention_loss(weights, target, 1, 2).item() == pytest.approx(-math.log(0.25), rel=1e-4)


def test_bad_targets_name_the_tensor_and_shape():
    weights = torch.full((2, 1, 8, 8), 1 / 8)
    with pytest.raises(InputError, match=r"attention_target must be \[B=2"):
        attention_loss(weights, torch.zeros(3, 1, 4), 1, 2)
    with pytest.raises(InputError, match="covers 10 patches"):
        attention_loss(weights, torch.zeros(2, 2, 5), 1, 2)


def test_masks_of_any_resolution_mark_every_patch_a_masked_pixel_falls_in():
    masks = torch.zeros(1, 2, 32, 32, dtype=torch.uint8)
    masks[0, 0, 5, 20] = 1  # one pixel: patch (row 0, col 2) of a 4 x 4 grid
    masks[0, 1, 16:, :8] = 1  # camera 2: the bottom-left quarter's left half -> patches (2, 0) and (3, 0)
    patches = patch_mask(masks, cameras=2, grid=4)
    assert patches.shape == (1, 2, 16)
    assert patches[0, 0].nonzero().flatten().tolist() == [2]
    assert patches[0, 1].nonzero().flatten().tolist() == [8, 12]
    with pytest.raises(InputError, match="2 cameras"):
        patch_mask(masks[:, :1], cameras=2, grid=4)


def test_the_forward_never_switches_attention_the_trainer_does_and_restores_it():
    vla = _chunk_model(slot_embeddings=True)
    lm = vla.language_model
    before = lm.config._attn_implementation
    with pytest.raises(InputError, match="needs eager attention"):
        vla(*_inputs(vla), output_attentions=True)
    assert lm.config._attn_implementation == before
    with objectives.attention_implementation(vla, ATTENTION):
        assert lm.config._attn_implementation == "eager"
        out = vla(*_inputs(vla), output_attentions=True)
    weights = out.attentions[SUPERVISED_LAYER]
    assert weights.shape[0] == 2 and weights.shape[-1] == weights.shape[-2]
    assert lm.config._attn_implementation == before
    with objectives.attention_implementation(vla, ObjectiveOptions(focus_loss=1.0)):
        assert lm.config._attn_implementation == before  # no attention supervision: nothing to switch


def test_supervision_trains_slots_and_attention_without_changing_actions():
    vla = _chunk_model(slot_embeddings=True)
    target = torch.zeros(2, 1, 8, 8)  # masks at 8 x 8: the top-left quarter is the 16 px model's patch 0
    target[:, 0, :4, :4] = 1
    plain = vla(*_inputs(vla))
    out, found = _supervised(vla, target)
    assert plain.attentions is None
    torch.testing.assert_close(out.actions, plain.actions, atol=1e-5, rtol=1e-4)  # eager vs sdpa: same model
    loss = found["attention_loss"]
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    assert vla.action_slots.weight.grad.abs().sum() > 0
    assert vla.language_model.model.layers[SUPERVISED_LAYER].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_a_few_steps_move_the_slots_attention_onto_the_target():
    torch.manual_seed(0)
    vla = _chunk_model(slot_embeddings=True)
    target = torch.zeros(2, 1, 2, 2)
    target[:, 0, 0, 1] = 1
    optimizer = torch.optim.Adam(vla.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = _supervised(vla, target)[1]["attention_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_token_models_refuse_an_attention_target():
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM)
    pixel_values, ids, mask = _inputs(vla)
    out = vla(pixel_values, ids, mask, labels=ids)
    with pytest.raises(InputError, match="chunk model"):
        objectives.losses(vla, out, {"pixel_values": pixel_values}, {"attention_target": torch.zeros(2, 1, 2, 2)})


# --- focus head -----------------------------------------------------------------------------------------------------
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


def test_focus_loss_counts_only_cameras_where_the_object_shows():
    head = FocusHead(hidden_size=4, cameras=2)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([0.5, 0.0, 0.9, 0.9]))  # camera 0 predicts (0.5, 0), camera 1 (0.9, 0.9)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, 1:3, 2:4] = 1  # camera 0's true centroid (0.5, 0): no error; camera 1 empty: not counted
    states = torch.randn(1, 3, 4)
    assert focus_loss(head(states), masks).item() == pytest.approx(0.0, abs=1e-6)
    masks[0, 1, 0, 0] = 1  # now camera 1 shows it at (-0.75, -0.75): error 1.65 on both axes, over 4 values
    assert focus_loss(head(states), masks).item() == pytest.approx(2 * 1.65 / 4, rel=1e-5)
    empty = focus_loss(head(states), torch.zeros(1, 2, 4, 4))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(InputError, match="2 cameras"):
        focus_loss(head(states), masks[:, :1])


def test_chunk_models_with_a_focus_head_give_its_loss_and_keep_the_head_in_checkpoints(tmp_path):
    vla = _chunk_model(focus_head=True)
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, 0, :2, 6:] = 1
    assert vla(*_inputs(vla)).focus is None  # inference: no targets, no head
    out, found = _supervised(vla, masks, ObjectiveOptions(focus_loss=1.0))
    assert "attention_loss" not in found  # not supervised: no attention weights asked for
    loss = found["focus_loss"]
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    assert vla.focus_head.proj.weight.grad.abs().sum() > 0
    assert vla.language_model.model.layers[-1].mlp.down_proj.weight.grad.abs().sum() > 0  # it shapes the slots' states
    vla.save_pretrained(tmp_path / "model")
    loaded = VLA.from_pretrained(tmp_path / "model")
    assert loaded.config.focus_head and loaded.focus_head is not None
    torch.testing.assert_close(loaded.focus_head.proj.weight, vla.focus_head.proj.weight)


# --- patch reconstruction -----------------------------------------------------------------------------------------
def test_targets_are_each_cameras_patches_row_major():
    # 2 cameras x 2 backbones (12 channels), 8x8 images, 4x4 patches -> 2x2 grid per camera, 2x2 pixels per patch
    pixels = torch.zeros(1, 12, 8, 8)
    for camera in range(2):
        for row in range(2):
            for col in range(2):
                pixels[0, camera * 6 : camera * 6 + 3, row * 4 : row * 4 + 4, col * 4 : col * 4 + 4] = camera * 10 + row * 2 + col
    pixels[0, 3:6] = -99  # the second backbone's copy of camera 0 is not a target
    targets = patch_targets(pixels, cameras=2, num_tokens=8, resolution=2)
    assert targets.shape == (1, 8, 12)
    assert targets[0, :, 0].tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    assert (targets == targets[..., :1]).all()  # constant patches -> constant targets
    with pytest.raises(ValueError, match="square grids"):
        patch_targets(pixels, cameras=2, num_tokens=7, resolution=2)


def test_patch_loss_reaches_vision_and_round_trips(tmp_path):
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, patch_decoder=4)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixel_values = vla.processor([image])
    ids = torch.tensor([[1, 5, 6, 7]])
    out = vla(pixel_values, ids, torch.ones_like(ids), labels=ids)
    loss = objectives.losses(vla, out, {"pixel_values": pixel_values}, {})["patch_loss"]
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    assert vla.vision_backbone.featurizer.patch_embed.proj.weight.grad.abs().sum() > 0
    assert vla(pixel_values, ids, torch.ones_like(ids)).get("patch_predictions") is None  # no targets, no patch loss
    vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.patch_decoder == 4
    assert torch.equal(loaded.patch_decoder.proj.weight, vla.patch_decoder.proj.weight)


def test_each_objective_adds_its_weight_times_its_loss():
    found = {"patch_loss": torch.tensor(2.0), "focus_loss": torch.tensor(3.0)}
    weights = ObjectiveOptions(patch_loss=0.5, attention_loss=7.0, focus_loss=0.1)
    assert objectives.total(torch.tensor(1.0), found, weights).item() == pytest.approx(1.0 + 1.0 + 0.3)
