"""Greedy decoding of action tokens with a KV cache, for one observation or a batch."""

from __future__ import annotations

import torch
from torch import nn


@torch.inference_mode()
def greedy_decode(
    language_model: nn.Module,
    patch_embeddings: torch.Tensor,
    prompts: list[torch.Tensor],
    n_tokens: int,
) -> torch.Tensor:
    """Argmax-decode `n_tokens` ids per row; returns [B, n_tokens] int64.

    patch_embeddings: [B, N, D] projected patches. prompts: B id tensors [L_i], each starting with BOS.
    Row i is `[emb(BOS), patches_i, emb(prompt_i[1:])]`; rows of different length are left-padded and
    get positions 0..L_i-1, so each row sees exactly what it would see alone (OpenVLA decodes one at a time).
    The argmax runs over the whole vocabulary, as OpenVLA's `generate(do_sample=False)` does.
    """
    embed = language_model.get_input_embeddings()
    rows = [torch.cat([embed(ids[:1]), patch_embeddings[i], embed(ids[1:])]) for i, ids in enumerate(prompts)]
    length = max(len(r) for r in rows)
    batch, dim = len(rows), rows[0].shape[-1]
    inputs = patch_embeddings.new_zeros(batch, length, dim)
    mask = torch.zeros(batch, length, dtype=torch.long, device=patch_embeddings.device)
    for i, row in enumerate(rows):
        inputs[i, length - len(row) :] = row
        mask[i, length - len(row) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    out = language_model(
        inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    tokens = []
    for step in range(n_tokens):
        next_ids = out.logits[:, -1].float().argmax(-1)
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
