"""Which parameters train: OpenVLA's fine-tuning variants (paper Table: full, LoRA, sandwich, frozen
vision, last layer), applied to a VLA in place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from clearvla.errors import ConfigError
from clearvla.models.vla import VLA

log = logging.getLogger(__name__)

MODES = ("full", "lora", "frozen-vision", "last-layer", "sandwich")


@dataclass(frozen=True)
class LoraSettings:
    """OpenVLA's LoRA recipe: r=32, alpha=16, no dropout, gaussian init, every linear layer but lm_head."""

    rank: int = 32
    alpha: int = 16
    dropout: float = 0.0


def unused_modules(model: VLA) -> list[nn.Module]:
    """Modules a checkpoint carries but the forward never runs: each ViT's last block and final norm
    (features come from the second-to-last block) and SigLIP's attn_pool. They never get gradients, so
    no mode trains them (DDP would otherwise wait for their gradients forever)."""
    unused: list[nn.Module] = []
    for vit in (model.vision_backbone.featurizer, model.vision_backbone.fused_featurizer):
        if vit is not None:
            unused += [vit.blocks[-1], vit.norm] + ([vit.attn_pool] if vit.attn_pool is not None else [])
    return unused


def lora_target_modules(model: VLA) -> list[str]:
    """Full names of every nn.Linear except the LM head (vision, projector and LLM alike) that the forward
    runs: adapters on `unused_modules` would be dead weight."""
    skip = {id(m) for u in unused_modules(model) + input_modules(model) for m in u.modules()}
    return [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not name.endswith("lm_head") and id(m) not in skip
    ]


# Modules OpenVLA checkpoints lack (camera embeddings, the proprio MLP, the chunk head and its slot embeddings):
# freshly initialised when fine-tuning, so every mode trains them fully, and LoRA adapter checkpoints carry them.
INPUT_MODULE_NAMES = ("camera_embedding", "proprio_projector", "action_head", "action_slots", "patch_decoder", "focus_head")


def input_modules(model: VLA) -> list[nn.Module]:
    return [m for name in INPUT_MODULE_NAMES if (m := getattr(model, name, None)) is not None]


def is_adapter_tensor(name: str) -> bool:
    """Whether a state-dict entry belongs in a LoRA adapter checkpoint (adapters and the input modules)."""
    return "lora_" in name or any(part in INPUT_MODULE_NAMES for part in name.split("."))


def apply_mode(model: VLA, mode: str, lora: LoraSettings = LoraSettings()) -> nn.Module:
    """Set requires_grad per the mode; for "lora", wrap the linears with peft adapters (frozen base).

    Returns the module to train (the same VLA object; LoRA layers are injected in place).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown training mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora_target_modules(model), init_lora_weights="gaussian",
        )
        inject_adapter_in_model(config, model)  # marks only lora_A / lora_B trainable
        for module in input_modules(model):
            module.requires_grad_(True)
        return model

    llm = model.language_model
    trainable: list[nn.Module]
    if mode == "full":
        trainable = [model]
    elif mode == "frozen-vision":
        trainable = [model.projector, llm]
    elif mode == "last-layer":
        trainable = [llm.model.embed_tokens, llm.model.layers[-1], llm.lm_head]
    else:  # sandwich
        trainable = [model.vision_backbone, model.projector, llm.model.layers[-1]]
    model.requires_grad_(False)
    for module in trainable + input_modules(model):
        module.requires_grad_(True)
    for module in unused_modules(model):
        module.requires_grad_(False)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def merge_lora(model: VLA) -> VLA:
    """Fold LoRA adapters into the base weights and remove them: a plain VLA again (same state-dict names)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    model.requires_grad_(True)
    return model

