"""Widen a trained VLA by an integer factor without changing what it computes (Net2WiderNet, Chen et al. 2016).

Every width (each ViT's channels, MLP hidden and heads; the projector; the LLM's hidden size, MLP and heads; the
action head) grows `factor` times: each unit is copied `factor` times, so every hidden vector of the wide model is
the narrow one's tiled (per head, per fused backbone, per action dimension). LayerNorm and RMSNorm see the same
mean and variance over a tiled vector, attention heads are copied whole (same head size, same softmax scale, same
RoPE), and each weight that reads a tiled vector is split among the copies at random fractions that sum to one,
so the outputs are unchanged and the copies' gradients differ from the first step (equal halves would keep them
identical forever). A larger model that starts where a trained one stopped: capacity without re-running its
training chain from scratch.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from clearvla.config import VLAConfig
from clearvla.errors import ConfigError
from clearvla.models.vla import VLA


def widened_config(config: VLAConfig, factor: int) -> VLAConfig:
    """`config` with every width, MLP hidden size and head count times `factor` (head sizes, and an explicit
    `head_dim`, unchanged)."""
    if not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"widen factor must be an integer >= 1, got {factor!r}")
    vision = tuple(replace(v, width=v.width * factor, heads=v.heads * factor, mlp_hidden=v.mlp_hidden * factor)
                   for v in config.vision)
    text = dict(config.text_config)
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
        text[key] = text[key] * factor
    return replace(config, vision=vision, text_config=text)


def widen(model: VLA, factor: int, seed: int = 0) -> VLA:
    """A `factor`-times wider copy of `model` that gives the same outputs (to float rounding); `model` is unchanged.
    `seed` draws the random split fractions (deterministic)."""
    config = widened_config(model.config, factor)
    if factor == 1:
        return model
    new = VLA(config, tokenizer=model.tokenizer, norm_stats=model.norm_stats, processor=model.processor)
    generator = torch.Generator().manual_seed(seed)
    owners = dict(new.named_modules())
    output_blocks, input_blocks = _blocks(model)
    old_state = model.state_dict()
    state = {}
    for name, target in new.state_dict().items():
        source = old_state[name]
        if source.shape == target.shape:
            state[name] = source.clone()
            continue
        module_name, _, leaf = name.rpartition(".")
        module, local = owners[module_name], _local_name(module_name)
        tensor = source
        for axis, (old, wide) in enumerate(zip(source.shape, target.shape)):
            if old == wide:
                continue
            if wide != old * factor:
                raise ConfigError(f"cannot widen {name}: axis {axis} goes from {old} to {wide}, not x{factor}")
            if isinstance(module, nn.Linear) and leaf == "weight" and axis == 1:
                tensor = _split(tensor, axis, input_blocks.get(local, 1), factor, generator)
            else:
                tensor = _tile(tensor, axis, output_blocks.get(local, 1), factor)
        state[name] = tensor.contiguous()
    new.load_state_dict(state)
    return new


def _local_name(module_name: str) -> str:
    """A module's name within its ViT block or LLM layer ("self_attn.q_proj", "attn.qkv"), within its ViT
    ("attn_pool.kv"), or else within the VLA ("projector.fc1")."""
    for marker in (".layers.", ".blocks."):
        if marker in module_name:
            return module_name.split(marker, 1)[1].split(".", 1)[1]
    return module_name.removeprefix("vision_backbone.featurizer.").removeprefix("vision_backbone.fused_featurizer.")


def _blocks(model: VLA) -> tuple[dict[str, int], dict[str, int]]:
    """Modules whose output (first dict) or input (second) axis is a concatenation of equal blocks tiled one by one,
    and how many blocks, keyed by _local_name."""
    llm = model.config.llama_config
    kv_heads = llm.num_key_value_heads or llm.num_attention_heads
    outputs = {
        "attn.qkv": 3, "attn_pool.kv": 2,  # [q; k; v], SigLIP pooling's [k; v]
        # LLM heads copied next to themselves (head h -> h*factor ...), so the first half of the heads, which
        # attention supervision reads (models/attention_target.py), are copies of the same heads as before.
        "self_attn.q_proj": llm.num_attention_heads, "self_attn.k_proj": kv_heads, "self_attn.v_proj": kv_heads,
        "action_head.model.layer_norm1": model.config.action_dim,  # one slot state per action dimension
    }
    inputs = {"self_attn.o_proj": llm.num_attention_heads, "action_head.model.fc1": model.config.action_dim}
    if model.config.fused_projector:
        inputs["projector.fc1"] = len(model.config.vision)  # [DINOv2 features, SigLIP features]
    return outputs, inputs


def _tiled_index(size: int, blocks: int, factor: int) -> torch.Tensor:
    """For an axis of `blocks` equal blocks tiled `factor` times each: the old index of every new position."""
    if size % blocks:
        raise ConfigError(f"cannot tile an axis of {size} in {blocks} equal blocks")
    block = size // blocks
    new = torch.arange(size * factor)
    return (new // (block * factor)) * block + (new % (block * factor)) % block


def _tile(tensor: torch.Tensor, axis: int, blocks: int, factor: int) -> torch.Tensor:
    return tensor.index_select(axis, _tiled_index(tensor.shape[axis], blocks, factor))


def _split(tensor: torch.Tensor, axis: int, blocks: int, factor: int, generator: torch.Generator) -> torch.Tensor:
    """Tile the input axis and scale each copy by a random fraction in (0, 1), the fractions of one original entry's
    copies summing to one, so a layer reading the tiled input computes what it computed before."""
    index = _tiled_index(tensor.shape[axis], blocks, factor)
    tiled = tensor.index_select(axis, index)
    shares = torch.rand(tiled.shape, generator=generator, dtype=torch.float64) + 0.5  # in [0.5, 1.5)
    totals = torch.zeros(tensor.shape, dtype=torch.float64).index_add_(axis, index, shares)
    fractions = shares / totals.index_select(axis, index)
    return (tiled.double() * fractions).to(tensor.dtype)
