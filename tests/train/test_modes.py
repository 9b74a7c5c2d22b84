import pytest
import torch

from clearvla.errors import ConfigError
from clearvla.models.vla import VLA
from clearvla.train.modes import apply_mode, count_parameters


def _trainable(model, prefix):
    params = [p for n, p in model.named_parameters() if n.startswith(prefix)]
    return {p.requires_grad for p in params}


@pytest.fixture
def fresh():
    return VLA.from_config("tiny", image_size=32)


def test_full_trains_everything_the_forward_uses(fresh):
    apply_mode(fresh, "full")
    frozen = {n for n, p in fresh.named_parameters() if not p.requires_grad}
    assert frozen and all(".blocks.2." in n or ".norm." in n or "attn_pool" in n for n in frozen)  # tiny ViTs: depth 3
    assert _trainable(fresh, "language_model") == {True} and _trainable(fresh, "projector") == {True}


def test_frozen_vision(fresh):
    apply_mode(fresh, "frozen-vision")
    assert _trainable(fresh, "vision_backbone") == {False}
    assert _trainable(fresh, "projector") == {True} and _trainable(fresh, "language_model") == {True}


def test_last_layer_is_embeddings_last_block_and_head(fresh):
    apply_mode(fresh, "last-layer")
    last = len(fresh.language_model.model.layers) - 1
    trainable = {n for n, p in fresh.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in fresh.named_parameters() if n.startswith(
        ("language_model.model.embed_tokens", f"language_model.model.layers.{last}.", "language_model.lm_head"))}


def test_sandwich(fresh):
    apply_mode(fresh, "sandwich")
    last = len(fresh.language_model.model.layers) - 1
    assert _trainable(fresh, "vision_backbone.featurizer.blocks.0.") == {True} and _trainable(fresh, "projector") == {True}
    assert _trainable(fresh, f"language_model.model.layers.{last}.") == {True}
    assert _trainable(fresh, "language_model.model.layers.0.") == {False}
    assert _trainable(fresh, "language_model.lm_head") == {False}


def test_lora_trains_only_adapters_with_openvla_recipe(fresh):
    apply_mode(fresh, "lora")
    trainable = [n for n, p in fresh.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("lm_head" in n or "attn_pool" in n for n in trainable)
    a = fresh.language_model.model.layers[0].self_attn.q_proj
    assert a.r["default"] == 32 and a.scaling["default"] == 16 / 32
    assert torch.count_nonzero(a.lora_B["default"].weight) == 0  # starts as the identity on the base model


def test_lora_on_the_7b_preset_is_about_1_4_percent():
    with torch.device("meta"):
        model = VLA.from_config("openvla-7b")
    apply_mode(model, "lora")
    trainable, total = count_parameters(model)
    assert trainable == 107_862_016  # r=32 on every used linear layer but lm_head
    assert 0.013 < trainable / (total - trainable) < 0.015  # the paper's 1.4 %


def test_unknown_mode_lists_choices(fresh):
    with pytest.raises(ConfigError, match="full, lora, frozen-vision, last-layer, sandwich"):
        apply_mode(fresh, "qlora")
