"""Named model presets: each pins the knobs of `build_config`. `get_config(name, **overrides)` looks a preset up
with a "did you mean" on typos."""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

from clearvla.errors import ConfigError
from clearvla.models.config import VLAConfig, build_config
from clearvla.models.vision import TIMM_VITS


def _openvla_7b(**overrides: Any) -> VLAConfig:
    return build_config(
        vision=(TIMM_VITS["vit_large_patch14_reg4_dinov2.lvd142m"], TIMM_VITS["vit_so400m_patch14_siglip_224"]),
        hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008, base_vocab_size=32000,
        **overrides,
    )


def _tiny(image_size: int = 224, fused: bool = True, **overrides: Any) -> VLAConfig:
    """Same architecture as openvla-7b (fused DINOv2-reg4 + SigLIP, fused projector, Llama), CPU-sized.
    fused=False keeps the DINOv2 backbone alone (half the vision compute; the projector is unchanged), the
    single-backbone variant benchmarks/train_throughput.py compares against."""
    dino = replace(TIMM_VITS["vit_large_patch14_reg4_dinov2.lvd142m"], width=64, depth=3, heads=4, mlp_hidden=256, patch_size=16)
    siglip = replace(TIMM_VITS["vit_so400m_patch14_siglip_224"], width=64, depth=3, heads=4, mlp_hidden=256, patch_size=16)
    vision = dict(vision=(dino, siglip), vision_backbone_id="tiny-dinosiglip", timm_model_ids=("tiny-dinov2-reg4", "tiny-siglip"))
    if not fused:
        vision = dict(vision=(dino,), vision_backbone_id="tiny-dinov2", timm_model_ids=("tiny-dinov2-reg4",))
    knobs: dict[str, Any] = dict(
        **vision, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=352,
        base_vocab_size=1024, max_position_embeddings=1024, image_size=image_size,
        llm_backbone_id="tiny-llama", hf_llm_id="", llm_max_length=1024, tokenizer="tiny",
    )
    knobs.update(overrides)
    return build_config(**knobs)


PRESETS = {"openvla-7b": _openvla_7b, "tiny": _tiny}


def get_config(name: str, **overrides: Any) -> VLAConfig:
    """A preset by name, with builder knobs overridden (e.g. `get_config("tiny", image_size=128)`)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; available: {', '.join(sorted(PRESETS))}")
    try:
        return PRESETS[name](**overrides)
    except TypeError as e:
        raise ConfigError(f"preset {name!r}: {e}") from None
