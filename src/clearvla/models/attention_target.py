"""Training-only attention supervision: the action slots should look at the patches of the part the instruction names.

Why: trained from scratch, the tiny model's slots find *a* salient part within a hundred steps but take thousands to
learn which one the words name, and the action loss alone gives no gradient towards that until the readout already
works (benchmarks/vision_probe.py, `binding`). A direct target on where the slots look removes that plateau: with
learned slot embeddings (config `slot_embeddings`), the slots' attention at `SUPERVISED_LAYER` points at the named
part after ~100 steps. The target comes from the simulator's ground truth (or any labelled mask); inference never
uses it.

The loss is -log of the attention mass (averaged over the supervised heads) that lands on the target patches,
averaged over slots. Only the first half of the layer's heads are supervised: supervising all of them left the slots
no head to read the robot state with in that layer, and the workcell model stopped using its state for thousands
of steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from clearvla.errors import InputError

# The second LLM layer: in the first, each slot's query is its own embedding (it has read nothing yet); by the second
# it has read the instruction, so its query can name the part.
SUPERVISED_LAYER = 1
SUPERVISED_HEADS = 0.5  # fraction of the layer's heads (the first ones, at least one) that get the target
_EPS = 1e-6


@contextmanager
def captured_attention(language_model: nn.Module, layer: int = SUPERVISED_LAYER) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, forwards of `language_model` (transformers' Llama) run eager attention (pass masks through
    `eager_mask`) and leave layer `layer`'s attention weights [B, H, T, T] under key "weights" of the yielded dict."""
    config = language_model.config
    layers = language_model.model.layers
    if not 0 <= layer < len(layers):
        raise InputError(f"attention supervision layer {layer} is outside the LLM's {len(layers)} layers")
    captured: dict[str, torch.Tensor] = {}
    previous = config._attn_implementation
    config._attn_implementation = "eager"  # sdpa never materialises the weights
    handle = layers[layer].self_attn.register_forward_hook(lambda _m, _i, out: captured.__setitem__("weights", out[1]))
    try:
        yield captured
    finally:
        handle.remove()
        config._attn_implementation = previous


def eager_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool attention mask (True = may attend) as the additive float mask eager attention needs: transformers' eager
    path adds the mask to the scores, so a bool mask would add 1 / 0 and mask nothing."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def patch_mask(masks: torch.Tensor, cameras: int, grid: int) -> torch.Tensor:
    """Attention masks [B, cameras, h, w] at any resolution (1 = the named part shows there) -> [B, cameras, grid²]:
    1 on every patch of the model's grid x grid that any masked pixel falls in (row-major, as the patch tokens)."""
    if masks.ndim != 4 or masks.shape[1] != cameras:
        raise InputError(f"attention_target must be [B, {cameras} cameras, h, w] masks, got {tuple(masks.shape)}")
    return nn.functional.adaptive_max_pool2d(masks.float(), grid).flatten(2)


def attention_loss(weights: torch.Tensor, target: torch.Tensor, first_patch: int, n_slots: int) -> torch.Tensor:
    """weights [B, H, T, T] (the last `n_slots` rows are the action slots); target [B, C, P] (1 where camera c's
    patch p shows the named part; patches sit at sequence positions first_patch .. first_patch + C*P - 1, camera
    by camera) -> scalar: mean over slots of rows with any target patch of -log(the slot's attention mass on the
    target patches, averaged over the supervised heads, the first max(1, H * SUPERVISED_HEADS)).
    Rows whose target is empty (the part is out of every camera's view) are left out; all empty gives 0."""
    b, h, t, _ = weights.shape
    if target.ndim != 3 or target.shape[0] != b:
        raise InputError(f"attention_target must be [B={b}, cameras, patches], got {tuple(target.shape)}")
    n_patches = target.shape[1] * target.shape[2]
    if first_patch + n_patches > t - n_slots:
        raise InputError(f"attention_target covers {n_patches} patches but the sequence has room for {t - n_slots - first_patch}")
    heads = max(1, int(h * SUPERVISED_HEADS))
    slots = weights[:, :heads, t - n_slots :, first_patch : first_patch + n_patches].float().mean(dim=1)  # [B, S, C*P]
    mask = target.reshape(b, 1, n_patches).to(slots.dtype)
    has_target = mask.sum((1, 2)) > 0
    if not bool(has_target.any()):
        return slots.new_zeros(())
    mass = (slots * mask).sum(2)  # [B, S]: each slot must look, not just the slots on average
    return -torch.log(mass[has_target] + _EPS).mean()
