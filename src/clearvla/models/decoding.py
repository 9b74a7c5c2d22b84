"""Greedy decoding of action tokens, for one observation or a batch with different prompts.

Three decoders share one input layout (`left_pad`) and give the same tokens:

- `fast` (the default): one prefill through the Hugging Face model, then each new token runs the decoder layers
  directly against a static KV cache: one buffer per layer, allocated once for prompt + actions and written in
  place, with the rotary tables computed once. It skips what `LlamaModel.forward` redoes per step (mask building,
  cache growth by concatenation, output wrapping), which is most of a step's time for small models.
- `reference`: the plain KV-cached loop through `LlamaForCausalLM.forward` with a dynamic cache.
- `generate`: transformers' `generate(do_sample=False)`, OpenVLA's own path (the benchmark's baseline).

`fast` runs the same modules on the same numbers in the same order as `reference`, so its logits are
bit-identical (tests/models/test_decoding.py checks fp32, bf16, padded batches and quantised models).

`action_ids=(first, end)` restricts the argmax to ids `first..end-1` (the action bins). OpenVLA takes the argmax
over the whole vocabulary, so that stays the default; with a well-trained model the two agree, with a weak one
the full-vocabulary argmax can pick a text token (which decodes to the edge bin).

The functions run under `no_grad`, not `inference_mode`: `VLA.predict_action_tokens` adds inference mode itself,
and callers with tensors that cannot live in it (optimum-quanto's int4 weights) can still decode.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clearvla.errors import ConfigError

DECODE_METHODS = ("fast", "reference", "generate")


class Padded(NamedTuple):
    """What every decoder starts from: inputs_embeds [B, L, D], attention mask [B, L] int64 (0 on padding) and
    position ids [B, L] (0..len_i-1 per row, so each row sees exactly what it would see alone: OpenVLA decodes one
    at a time)."""

    inputs: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def left_pad(language_model: nn.Module, prefix_embeddings: torch.Tensor, prompts: list[torch.Tensor]) -> Padded:
    """Rows `[emb(BOS), prefix_i, emb(prompt_i[1:])]`, left-padded to one length.

    prefix_embeddings: [B, N, D] (projected patches, proprio token). prompts: B id tensors [L_i], each starting
    with BOS.
    """
    embed = language_model.get_input_embeddings()
    rows = [torch.cat([embed(ids[:1]), prefix_embeddings[i], embed(ids[1:])]) for i, ids in enumerate(prompts)]
    length = max(len(r) for r in rows)
    batch, dim = len(rows), rows[0].shape[-1]
    inputs = prefix_embeddings.new_zeros(batch, length, dim)
    mask = torch.zeros(batch, length, dtype=torch.long, device=prefix_embeddings.device)
    for i, row in enumerate(rows):
        inputs[i, length - len(row) :] = row
        mask[i, length - len(row) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return Padded(inputs, mask, positions)


@torch.no_grad()
def greedy_decode(
    language_model: nn.Module,
    prefix_embeddings: torch.Tensor,
    prompts: list[torch.Tensor],
    n_tokens: int,
    *,
    method: str = "fast",
    action_ids: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Argmax-decode `n_tokens` ids per row; returns [B, n_tokens] int64 (see `left_pad` for the inputs).

    method: "fast" | "reference" | "generate" (module docstring). action_ids: (first, end) to restrict the
    argmax to those ids; None (OpenVLA's behaviour) takes it over the whole vocabulary.
    """
    if method not in DECODE_METHODS:
        raise ConfigError(f"decode method {method!r} is not one of: {', '.join(DECODE_METHODS)}")
    padded = left_pad(language_model, prefix_embeddings, prompts)
    if method == "generate":
        return generate_decode(language_model, padded, n_tokens, action_ids=action_ids)
    if method == "fast" and language_model.config._attn_implementation == "sdpa":
        return fast_decode(language_model, padded, n_tokens, action_ids=action_ids)
    return reference_decode(language_model, padded, n_tokens, action_ids=action_ids)


def _argmax(logits: torch.Tensor, action_ids: tuple[int, int] | None) -> torch.Tensor:
    """[B, V] (or [B, end - first] already restricted) -> [B] ids."""
    if action_ids is None:
        return logits.float().argmax(-1)
    first, end = action_ids
    if logits.shape[-1] != end - first:
        logits = logits[:, first:end]
    return logits.float().argmax(-1) + first


@torch.no_grad()
def reference_decode(
    language_model: nn.Module, padded: Padded, n_tokens: int, *, action_ids: tuple[int, int] | None = None
) -> torch.Tensor:
    """The plain KV-cached loop through `LlamaForCausalLM.forward` (dynamic cache grown by concatenation)."""
    inputs, mask, positions = padded
    batch = inputs.shape[0]
    out = language_model(
        inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    tokens = []
    for step in range(n_tokens):
        next_ids = _argmax(out.logits[:, -1], action_ids)
        tokens.append(next_ids)
        if step == n_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        positions = positions[:, -1:] + 1
        out = language_model(
            input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
            past_key_values=out.past_key_values, use_cache=True,
        )
    return torch.stack(tokens, dim=1)


@torch.no_grad()
def generate_decode(
    language_model: nn.Module, padded: Padded, n_tokens: int, *, action_ids: tuple[int, int] | None = None
) -> torch.Tensor:
    """transformers' `generate(inputs_embeds=..., do_sample=False)`, as OpenVLA's `predict_action` calls it (it
    numbers positions from the mask itself)."""
    if action_ids is not None:
        raise ConfigError("the generate baseline decodes over the whole vocabulary; use method='fast' with action_ids")
    out = language_model.generate(
        inputs_embeds=padded.inputs, attention_mask=padded.mask, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
        do_sample=False, pad_token_id=0, eos_token_id=None,
    )
    return out[:, -n_tokens:]


class StaticKV:
    """Per-layer key/value buffers [B, H_kv, capacity, head_dim], allocated once and filled in place."""

    def __init__(self, n_layers: int, like: torch.Tensor, capacity: int) -> None:
        b, h, _, d = like.shape
        self.keys = [like.new_empty(b, h, capacity, d) for _ in range(n_layers)]
        self.values = [like.new_empty(b, h, capacity, d) for _ in range(n_layers)]
        self.length = 0  # positions filled, the same for every layer

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store keys/values [B, H_kv, T, D] after the filled positions; return views of everything so far."""
        end = self.length + keys.shape[2]
        self.keys[layer][:, :, self.length : end] = keys
        self.values[layer][:, :, self.length : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def _cache_layer(cache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer of a transformers DynamicCache, across its API versions."""
    if hasattr(cache, "layers"):
        return cache.layers[index].keys, cache.layers[index].values
    return cache.key_cache[index], cache.value_cache[index]


@torch.no_grad()
def fast_decode(
    language_model: nn.Module, padded: Padded, n_tokens: int, *, action_ids: tuple[int, int] | None = None
) -> torch.Tensor:
    """Prefill once through the HF model, then decode against a static KV cache (module docstring).

    Needs a Llama with `attn_implementation="sdpa"` (transformers' default); the decoder layers are called
    module by module, so quantised linears (bitsandbytes) work unchanged.
    """
    inputs, mask, positions = padded
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, lm_head = language_model.model, language_model.get_output_embeddings()
    batch, length, _ = inputs.shape
    head_weight, head_bias = lm_head.weight, lm_head.bias
    if action_ids is not None and type(lm_head) is nn.Linear:  # only the action rows of the output layer
        head_weight = head_weight[action_ids[0] : action_ids[1]]
        head_bias = None if head_bias is None else head_bias[action_ids[0] : action_ids[1]]

    def logits(hidden: torch.Tensor) -> torch.Tensor:
        if type(lm_head) is nn.Linear:
            return F.linear(hidden, head_weight, head_bias)
        return lm_head(hidden)

    out = model(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=True)
    next_ids = _argmax(logits(out.last_hidden_state[:, -1:])[:, -1], action_ids)
    tokens = [next_ids]
    if n_tokens == 1:
        return torch.stack(tokens, dim=1)

    layers = model.layers
    first_keys, _ = _cache_layer(out.past_key_values, 0)
    kv = StaticKV(len(layers), first_keys, length + n_tokens - 1)
    for i in range(len(layers)):
        kv.write(i, *_cache_layer(out.past_key_values, i))
    kv.length = length
    del out
    # The attention mask of every decode step is a prefix of this one; without padding SDPA needs none (as in HF).
    padded = bool((mask == 0).any())
    full_mask = torch.ones(batch, length + n_tokens - 1, dtype=torch.bool, device=mask.device)
    full_mask[:, :length] = mask.bool()
    step_positions = positions[:, -1:] + torch.arange(1, n_tokens, device=positions.device)
    cos_all, sin_all = model.rotary_emb(inputs, step_positions)

    for step in range(n_tokens - 1):
        hidden = model.embed_tokens(next_ids[:, None])
        cos, sin = cos_all[:, step : step + 1], sin_all[:, step : step + 1]
        step_mask = full_mask[:, None, None, : kv.length + 1] if padded else None
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            shape = (batch, 1, -1, attn.head_dim)
            q = attn.q_proj(x).view(shape).transpose(1, 2)
            k = attn.k_proj(x).view(shape).transpose(1, 2)
            v = attn.v_proj(x).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = kv.write(i, k, v)
            o, _ = sdpa_attention_forward(attn, q, k, v, step_mask, dropout=0.0, scaling=attn.scaling)
            hidden = hidden + attn.o_proj(o.reshape(batch, 1, -1).contiguous())
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        kv.length += 1
        next_ids = _argmax(logits(model.norm(hidden))[:, -1], action_ids)
        tokens.append(next_ids)
    return torch.stack(tokens, dim=1)
