import numpy as np
import pytest
import torch
from PIL import Image

from clearvla.errors import InputError
from clearvla.models.processor import ImageProcessor

DINO = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIGLIP = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture
def proc() -> ImageProcessor:
    return ImageProcessor(4, (DINO[0], SIGLIP[0]), (DINO[1], SIGLIP[1]))


def test_matches_hand_computation_at_native_size(proc):
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
    out = proc(img)
    assert out.shape == (1, 6, 4, 4) and out.dtype == torch.float32
    y, x = 2, 3
    for c in range(3):
        v = img[y, x, c] / 255.0
        assert out[0, c, y, x].item() == pytest.approx((v - DINO[0][c]) / DINO[1][c], abs=1e-6)
        assert out[0, 3 + c, y, x].item() == pytest.approx((v - 0.5) / 0.5, abs=1e-6)


def test_resize_is_pil_bicubic(proc):
    img = np.random.default_rng(1).integers(0, 256, size=(13, 9, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((4, 4), Image.BICUBIC), dtype=np.float32) / 255.0
    got = proc(img)[0, 3:].permute(1, 2, 0).numpy() * 0.5 + 0.5
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_center_crop_keeps_ninety_percent_area():
    proc = ImageProcessor(100, (SIGLIP[0],), (SIGLIP[1],))
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    img[:3] = 255  # a white band outside the centre crop (side sqrt(0.9) * 100 ~ 94.9, margin ~2.6 px)
    assert proc(img)[0, :, 10:].max() < -0.99
    assert proc(img, center_crop=True)[0, :, :2].max() < proc(img)[0, :, :2].max()


def test_batch_of_images(proc):
    imgs = [np.zeros((5, 5, 3), np.uint8), np.full((8, 3, 3), 255, np.uint8)]
    out = proc(imgs)
    assert out.shape == (2, 6, 4, 4)
    assert out[1, 3:].min().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 3), np.float32), "dtype uint8"),
        (np.zeros((4, 4), np.uint8), "HxWx3"),
        (np.zeros((4, 4, 4), np.uint8), "HxWx3"),
        ("image.png", "numpy array or a PIL image"),
    ],
)
def test_bad_images_are_named(proc, bad, message):
    with pytest.raises(InputError, match=message):
        proc([bad])


def test_openvla_config_round_trip_prefers_tvf_normalize_params(proc):
    cfg = proc.to_json_dict()
    assert ImageProcessor.from_json_dict(cfg) == proc
    cfg["tvf_normalize_params"][0]["mean"] = [0.484375, 0.455078125, 0.40625]  # what the reference applies
    assert ImageProcessor.from_json_dict(cfg).means[0] == (0.484375, 0.455078125, 0.40625)


def test_uint8_affine_equals_normalize(proc):
    scale, offset = proc.uint8_affine()
    pixels = torch.randint(0, 256, (2, 3, 4, 4)).float()
    affine = pixels.repeat(1, 2, 1, 1) * torch.from_numpy(scale).view(1, 6, 1, 1) + torch.from_numpy(offset).view(1, 6, 1, 1)
    torch.testing.assert_close(affine, proc.normalize(pixels / 255), atol=1e-5, rtol=1e-5)
