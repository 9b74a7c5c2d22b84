"""OpenVLA's image augmentation in torch: seedable, batched, with the documented ranges."""

from __future__ import annotations

import math

import pytest
import torch

from clearvla.data.augment import (
    AugmentConfig,
    AugmentParams,
    augment,
    colour_matrices,
    crop_masks,
    crop_resize,
    sample_params,
    to_unit,
)
from clearvla.errors import InputError

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


def test_attention_masks_follow_the_crop_of_their_image():
    # A bright 8 x 8 px part at pixels 40..47 of a 128 px image; its 32 x 32 mask marks cells 10..11.
    image = torch.zeros(2, 128, 128, 3, dtype=torch.uint8)
    image[:, 40:48, 40:48] = 255
    masks = torch.zeros(2, 32, 32, dtype=torch.uint8)
    masks[:, 10:12, 10:12] = 1
    params = sample_params(2, 128, 128, AugmentConfig(), torch.Generator().manual_seed(0))
    params = AugmentParams(torch.tensor([0, 12]), torch.tensor([0, 4]), torch.tensor([128, 121]), torch.tensor([128, 121]),
                           params.brightness, params.contrast, params.colour)
    cropped = crop_masks(masks, params, image_size=128)
    assert torch.equal(cropped[0], masks[0])  # the whole image: unchanged
    shown = crop_resize(image, params)[1, :, :, 0] > 127  # where the part shows after the crop, [128, 128]
    cells = shown.reshape(32, 4, 32, 4).any(dim=3).any(dim=1)
    assert cells.any() and bool((cropped[1].bool() | ~cells).all())  # every cell the part shows in is marked
    assert int(cropped[1].sum()) <= int(cells.sum()) + 8  # and not much more (cell edges round outwards)
    assert not torch.equal(cropped[1], masks[1])  # the crop moved it
    with pytest.raises(InputError, match="side 30"):
        crop_masks(torch.zeros(1, 30, 30, dtype=torch.uint8), params[:1], image_size=128)
