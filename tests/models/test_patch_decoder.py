"""The training-only patch decoder and the ViT's sin-cos position init (issue 6: learning *where* things are)."""

import numpy as np
import pytest
import torch

from clearvla.errors import ConfigError
from clearvla.models.patch_decoder import patch_targets
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
    assert out.patch_loss.ndim == 0 and out.patch_loss > 0
    out.patch_loss.backward()
    assert vla.vision_backbone.featurizer.patch_embed.proj.weight.grad.abs().sum() > 0
    assert vla(pixel_values, ids, torch.ones_like(ids)).get("patch_loss") is None  # no targets, no patch loss
    vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.patch_decoder == 4
    assert torch.equal(loaded.patch_decoder.proj.weight, vla.patch_decoder.proj.weight)


def test_config_rejects_a_negative_resolution():
    with pytest.raises(ConfigError, match="patch_decoder"):
        VLA.from_config("tiny", image_size=32, patch_decoder=-1)
