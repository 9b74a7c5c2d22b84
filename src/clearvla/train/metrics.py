"""Training metrics: token accuracy and the L1 error of decoded (normalised) actions; L1 of predicted chunks."""

from __future__ import annotations

import torch

from clearvla.actions.tokenizer import ActionTokenizer
from clearvla.models.heads import ChunkOutput


@torch.no_grad()
def action_metrics(logits: torch.Tensor, labels: torch.Tensor, action_tokenizer: ActionTokenizer) -> dict[str, float]:
    """logits [B, L+N, V] from `VLA.forward`, labels [B, L] (text positions, -100 = ignored).

    Only supervised positions whose label is an action token count (the closing </s> does not). Returns
    `action_accuracy` (argmax == label) and `action_l1` (mean |decode(pred) - decode(label)|, in [-1, 1] units).
    """
    n_patches = logits.shape[1] - labels.shape[1]
    # Text position t >= 1 sits at sequence position t + N; its prediction comes from position t + N - 1.
    pred_logits = logits[:, n_patches : n_patches + labels.shape[1] - 1]
    targets = labels[:, 1:]
    preds = pred_logits.argmax(-1)
    lo, hi = action_tokenizer.first_token_id, action_tokenizer.vocab_size
    mask = (targets >= lo) & (targets < hi)
    if not mask.any():
        return {"action_accuracy": float("nan"), "action_l1": float("nan")}
    p, t = preds[mask].cpu().numpy(), targets[mask].cpu().numpy()
    l1 = abs(action_tokenizer.decode(p) - action_tokenizer.decode(t)).mean()
    return {"action_accuracy": float((p == t).mean()), "action_l1": float(l1)}


@torch.no_grad()
def chunk_metrics(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Predicted and target chunks [B, K, A] (normalised) -> `action_l1` (the chunk's first action, comparable with
    the token models' figure) and `chunk_l1` (every step of the chunk)."""
    error = (predicted.float() - targets.float()).abs()
    return {"action_l1": float(error[:, 0].mean()), "chunk_l1": float(error.mean())}


def step_metrics(out, inputs: dict[str, torch.Tensor], action_tokenizer: ActionTokenizer) -> dict[str, float]:
    """The metrics of one forward: chunk metrics for chunk models, token metrics otherwise."""
    if isinstance(out, ChunkOutput):
        return chunk_metrics(out.actions, inputs["actions"])
    return action_metrics(out.logits, inputs["labels"], action_tokenizer)
