"""Widening a trained VLA (train/widen.py): a model `factor` times wider that computes what the narrow one did, whose
copied units part ways under training, and that saves, loads and trains like any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clearvla.config import TrainConfig
from clearvla.errors import ConfigError
from clearvla.models.vla import VLA
from clearvla.train.build import build_model
from clearvla.train.widen import widen


@pytest.fixture(scope="module")
def narrow(norm_stats):
    """A chunk model with every module the default model has: two cameras, state, slots, patch decoder, focus head."""
    model = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=7,
                            proprio_indices=(0, 1, 5), action_chunk=2, prefix_attention="bidirectional",
                            slot_embeddings=True, focus_head=True, patch_decoder=4, norm_stats=norm_stats, seed=3)
    with torch.no_grad():  # trained-looking weights: layer scales and biases away from their init values
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return model.eval()


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        pixel_values=torch.randn(2, 2 * 2 * 3, 32, 32, generator=g),
        input_ids=torch.randint(3, 900, (2, 9), generator=g),
        attention_mask=torch.tensor([[1] * 9, [1] * 6 + [0] * 3]),
        proprio=torch.randn(2, 7, generator=g),
        actions=torch.rand(2, 2, 7, generator=g) * 2 - 1,
        attention_target=(torch.rand(2, 2, 8, 8, generator=g) > 0.7).float(),
    )


@pytest.mark.parametrize("factor", [2, 3])
def test_a_widened_model_computes_what_the_narrow_one_did(narrow, factor):
    wide = widen(narrow, factor, seed=1).eval()
    assert wide.config.text_config["hidden_size"] == factor * narrow.config.text_config["hidden_size"]
    assert wide.config.vision[0].width == factor * narrow.config.vision[0].width
    assert sum(p.numel() for p in wide.parameters()) > factor * sum(p.numel() for p in narrow.parameters())
    with torch.no_grad():
        before, after = narrow(**_batch()), wide(**_batch())
    for name in ("actions", "loss", "patch_loss", "attention_loss", "focus_loss"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=1e-4, atol=1e-5, msg=name)


def test_copied_units_start_equal_and_part_ways_after_one_step(narrow):
    wide = widen(narrow, 2, seed=1).train()
    weight = wide.language_model.model.layers[0].mlp.up_proj.weight  # [2 x 352, 2 x 128]: unit i and i + 352 copies
    half = weight.shape[0] // 2
    assert not torch.equal(weight[:half], weight[half:])  # their input weights are split at different fractions...
    torch.testing.assert_close(weight[:half, :128] + weight[:half, 128:], weight[half:, :128] + weight[half:, 128:])
    out = wide(**_batch())
    (out.loss + out.attention_loss + out.focus_loss + out.patch_loss).backward()
    # ... and so are the weights that read them (down_proj), so the copies' gradients differ
    grad = weight.grad
    assert not torch.allclose(grad[:half], grad[half:])


def test_widening_is_deterministic_per_seed_and_leaves_the_narrow_model_alone(narrow):
    snapshot = {k: v.clone() for k, v in narrow.state_dict().items()}
    a, b, c = widen(narrow, 2, seed=1), widen(narrow, 2, seed=1), widen(narrow, 2, seed=2)
    key = "language_model.model.layers.1.self_attn.o_proj.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    for k, v in narrow.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    assert widen(narrow, 1) is narrow


def test_train_config_widen_grows_a_checkpoint_that_saves_and_loads(narrow, norm_stats, tmp_path):
    narrow.save_pretrained(tmp_path / "narrow")
    cfg = TrainConfig(init=str(tmp_path / "narrow"), widen=2, cameras=("image", "wrist_image"), proprio=True,
                      proprio_indices=(0, 1, 5), action_chunk=2, patch_loss=1.0, prefix_attention="bidirectional",
                      attention_loss=1.0, focus_loss=1.0)
    wide = build_model(cfg, norm_stats).eval()
    assert wide.config.text_config["hidden_size"] == 2 * narrow.config.text_config["hidden_size"]
    wide.save_pretrained(tmp_path / "wide")
    loaded = VLA.from_pretrained(tmp_path / "wide").eval()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    observation = {"image": image, "wrist_image": image[::-1].copy()}
    expected = narrow.predict_action(observation, "pick up the nut", proprio=np.linspace(-1, 1, 7))
    np.testing.assert_allclose(loaded.predict_action(observation, "pick up the nut", proprio=np.linspace(-1, 1, 7)),
                               expected, atol=1e-4)


def test_widen_needs_a_checkpoint_and_a_positive_integer(norm_stats):
    with pytest.raises(ConfigError, match="preset"):
        build_model(TrainConfig(init="tiny", widen=2), norm_stats)
    with pytest.raises(ConfigError, match="widen must be an integer >= 1"):
        TrainConfig(widen=0)
