"""The training-only modules a model carries (patch decoder, slot embeddings, focus head: their objectives are tested in
tests/train/test_objectives.py) and the ViT's sin-cos position init (issue 6: learning *where* things are)."""

import numpy as np
import pytest
import torch

from clearvla.errors import ConfigError
from clearvla.models.presets import get_config
from clearvla.models.vit import sincos_position_table
from clearvla.models.vla import VLA

NORM = {"sim": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 7}}}


def test_position_table_codes_every_patch_distinctly_at_unit_scale():
    table = sincos_position_table(8, 64)
    assert table.shape == (64, 64) and table.abs().max() <= 1.0
    distances = torch.cdist(table, table) + torch.eye(64) * 10
    assert distances.min() > 0.1  # no two patches share a code
    assert sincos_position_table(3, 10).shape == (9, 10)  # widths that do not divide by 4 are padded


def test_fresh_vits_start_from_the_table_and_checkpoints_overwrite_it(tmp_path):
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM)
    pos = vla.vision_backbone.featurizer.pos_embed
    assert torch.equal(pos[0], sincos_position_table(2, pos.shape[-1]))
    with torch.no_grad():
        pos.add_(1.0)
    vla.save_pretrained(tmp_path / "ckpt")
    assert torch.equal(VLA.from_pretrained(tmp_path / "ckpt").vision_backbone.featurizer.pos_embed, pos)


def test_slot_embeddings_round_trip_and_need_a_chunk_model(tmp_path):
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=2, slot_embeddings=True)
    vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.slot_embeddings
    assert torch.equal(loaded.action_slots.weight, vla.action_slots.weight)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixel_values, ids = vla.processor([image, image[::-1].copy()]), torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(loaded(pixel_values, ids, mask).actions, vla(pixel_values, ids, mask).actions)
    assert VLA.from_config("tiny", image_size=32, action_chunk=2).action_slots is None  # OpenVLA-OFT's zero slots
    with pytest.raises(ConfigError, match="slot_embeddings"):
        VLA.from_config("tiny", image_size=32, slot_embeddings=True)


def test_focus_head_needs_a_chunk_model():
    with pytest.raises(ConfigError, match="focus_head needs an action-chunk model"):
        get_config("tiny", focus_head=True)


def test_config_rejects_a_negative_resolution():
    with pytest.raises(ConfigError, match="patch_decoder"):
        VLA.from_config("tiny", image_size=32, patch_decoder=-1)
