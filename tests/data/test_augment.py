"""OpenVLA's image augmentation in torch: seedable, batched, with the documented ranges."""

from __future__ import annotations

import math

import pytest
import torch

from clearvla.data.augment import AugmentConfig, augment, colour_matrices, sample_params, to_unit

IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0)


@pytest.fixture
def frames(synth):
    return torch.from_numpy(synth.frames(6, seed=0, size=48))


def test_seeded_and_batched(frames):
    a = augment(frames, AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment(frames, AugmentConfig(), torch.Generator().manual_seed(3))
    c = augment(frames, AugmentConfig(), torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_identity_ranges_change_nothing(frames):
    out = augment(frames, IDENTITY, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, to_unit(frames), atol=1e-5, rtol=0)


def test_parameter_ranges_are_openvla_s():
    p = sample_params(4000, 224, 224, AugmentConfig(), torch.Generator().manual_seed(0))
    side = round(math.sqrt(0.9) * 224)
    assert (p.height == side).all() and (p.width == side).all()  # scale 0.9, ratio 1
    assert p.top.min() >= 0 and p.top.max() <= 224 - side
    assert -0.2 <= p.brightness.min() < -0.19 and 0.19 < p.brightness.max() <= 0.2
    assert 0.8 <= p.contrast.min() < 0.81 and 1.19 < p.contrast.max() <= 1.2


def test_contrast_scales_the_spread(frames):
    gen = torch.Generator().manual_seed(0)
    base = augment(frames, IDENTITY, gen)
    flat = augment(frames, AugmentConfig(crop_scale=(1.0, 1.0), brightness=0.0, contrast=(0.5, 0.5), saturation=(1.0, 1.0), hue=0.0), gen)
    # contrast 0.5 halves every channel's spread about its mean
    spread = (base - base.mean(dim=(2, 3), keepdim=True)).abs().mean()
    torch.testing.assert_close((flat - flat.mean(dim=(2, 3), keepdim=True)).abs().mean(), spread * 0.5, atol=2e-3, rtol=0)


def test_colour_matrices():
    eye = colour_matrices(torch.ones(1), torch.zeros(1))[0]
    torch.testing.assert_close(eye, torch.eye(3), atol=1e-6, rtol=0)
    grey = colour_matrices(torch.zeros(1), torch.zeros(1))[0]
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])  # saturation 0: every channel = luma
    rot = colour_matrices(torch.ones(1), torch.tensor([0.05]))[0]
    torch.testing.assert_close(rot.sum(dim=1), torch.ones(3), atol=1e-6, rtol=0)  # greys stay grey
    assert not torch.allclose(rot, torch.eye(3))
