"""Attention supervision of the action slots and learned slot embeddings (issue 6: binding words to parts)."""

import math

import numpy as np
import pytest
import torch

from clearvla.errors import ConfigError, InputError
from clearvla.models.attention_target import SUPERVISED_HEADS, SUPERVISED_LAYER, attention_loss, captured_attention, patch_mask
from clearvla.models.vla import VLA

NORM = {"sim": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}


def _chunk_model(**overrides) -> VLA:
    return VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=2, **overrides)


def _inputs(vla: VLA):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    return vla.processor([image, image[::-1].copy()]), ids, torch.ones_like(ids)


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


def test_capture_restores_sdpa_and_unhooks():
    vla = _chunk_model(slot_embeddings=True)
    lm = vla.language_model
    before = lm.config._attn_implementation
    with captured_attention(lm) as attention:
        vla(*_inputs(vla))
    assert attention["weights"].shape[0] == 2 and attention["weights"].shape[-1] == attention["weights"].shape[-2]
    assert lm.config._attn_implementation == before
    assert not lm.model.layers[SUPERVISED_LAYER].self_attn._forward_hooks
    with pytest.raises(InputError, match="layer 9"):
        with captured_attention(lm, layer=9):
            pass


def test_supervision_trains_slots_and_attention_without_changing_actions():
    vla = _chunk_model(slot_embeddings=True)
    pixel_values, ids, mask = _inputs(vla)
    target = torch.zeros(2, 1, 8, 8)  # masks at 8 x 8: the top-left quarter is the 16 px model's patch 0
    target[:, 0, :4, :4] = 1
    plain = vla(pixel_values, ids, mask)
    out = vla(pixel_values, ids, mask, attention_target=target)
    assert plain.attention_loss is None
    torch.testing.assert_close(out.actions, plain.actions, atol=1e-5, rtol=1e-4)  # eager vs sdpa: same model
    assert out.attention_loss.ndim == 0 and out.attention_loss > 0
    out.attention_loss.backward()
    assert vla.action_slots.weight.grad.abs().sum() > 0
    assert vla.language_model.model.layers[SUPERVISED_LAYER].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_a_few_steps_move_the_slots_attention_onto_the_target():
    torch.manual_seed(0)
    vla = _chunk_model(slot_embeddings=True)
    pixel_values, ids, mask = _inputs(vla)
    target = torch.zeros(2, 1, 2, 2)
    target[:, 0, 0, 1] = 1
    optimizer = torch.optim.Adam(vla.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = vla(pixel_values, ids, mask, attention_target=target).attention_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_slot_embeddings_round_trip_and_need_a_chunk_model(tmp_path):
    vla = _chunk_model(slot_embeddings=True)
    vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.slot_embeddings
    assert torch.equal(loaded.action_slots.weight, vla.action_slots.weight)
    pixel_values, ids, mask = _inputs(vla)
    torch.testing.assert_close(loaded(pixel_values, ids, mask).actions, vla(pixel_values, ids, mask).actions)
    assert _chunk_model().action_slots is None  # OpenVLA-OFT's zero slots stay the default
    with pytest.raises(ConfigError, match="slot_embeddings"):
        VLA.from_config("tiny", image_size=32, slot_embeddings=True)


def test_token_models_refuse_an_attention_target():
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM)
    pixel_values, ids, mask = _inputs(vla)
    with pytest.raises(InputError, match="chunk model"):
        vla(pixel_values, ids, mask, attention_target=torch.zeros(2, 1, 2, 2))
