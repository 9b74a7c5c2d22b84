"""Training-only target: the action slots must know *where* the object the arm heads for is, in every camera.

Why: attention supervision (models/attention_target.py) makes the slots look at the right part, but the workcell
model still did not read its position: on the expert's own states its y actions were no better than a constant
(normalised L1 0.39 vs 0.40), while the centre of the part in the wrist camera alone explains 67% of the expert's
y actions linearly. A head that regresses that centre, per camera, from the slots' final states asks for exactly
the quantity the actions need. The target is the centroid of the simulator's attention masks (the same ground
truth, cropped with the frame); inference never runs the head.
"""

from __future__ import annotations

import torch
from torch import nn

from clearvla.errors import InputError


def mask_centroids(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """masks [B, C, h, w] (non-zero = the object shows there) -> (centroids [B, C, 2], visible [B, C] bool).

    A centroid is (u, v): the mean column and row of the masked pixels' centres, scaled so the image's left / top
    edge is -1 and its right / bottom edge +1. Cameras whose mask is empty get (0, 0) and visible False."""
    if masks.ndim != 4:
        raise InputError(f"focus masks must be [B, cameras, h, w], got {tuple(masks.shape)}")
    h, w = masks.shape[-2:]
    weights = (masks > 0).float()
    mass = weights.sum((-2, -1))
    visible = mass > 0
    cols = (torch.arange(w, dtype=torch.float32, device=masks.device) + 0.5) / w * 2 - 1
    rows = (torch.arange(h, dtype=torch.float32, device=masks.device) + 0.5) / h * 2 - 1
    safe = mass.clamp(min=1.0)
    u = (weights.sum(-2) * cols).sum(-1) / safe
    v = (weights.sum(-1) * rows).sum(-1) / safe
    return torch.stack([u, v], dim=-1), visible


class FocusHead(nn.Module):
    """Linear map from the mean action-slot state [B, D] to every camera's focus centroid (u, v) [B, C, 2]."""

    def __init__(self, hidden_size: int, cameras: int) -> None:
        super().__init__()
        self.cameras = cameras
        self.proj = nn.Linear(hidden_size, 2 * cameras)

    def loss(self, slot_states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """slot_states [B, S, D] (the LLM's last hidden states at the action slots), masks [B, C, h, w] -> mean L1
        between predicted and true centroids over the (sample, camera) pairs where the object shows; 0 when it
        shows nowhere in the batch."""
        if masks.ndim != 4 or masks.shape[:2] != (slot_states.shape[0], self.cameras):
            raise InputError(f"focus masks must be [B={slot_states.shape[0]}, {self.cameras} cameras, h, w], got {tuple(masks.shape)}")
        target, visible = mask_centroids(masks)
        predicted = self.proj(slot_states.mean(dim=1)).float().view(-1, self.cameras, 2)
        if not bool(visible.any()):
            return predicted.sum() * 0.0  # keeps the graph, so every rank's backward sees the head
        return (predicted - target).abs()[visible].mean()
