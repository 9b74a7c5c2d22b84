"""A training-only dense objective: decode every camera patch token (the LLM's input) back to its patch's pixels.

Why: trained from scratch, the tiny model's patch tokens do know what each patch holds, but that signal is one token
in 64 per camera, and neither mean pooling nor the LLM's initially uniform attention finds it, so the policy never
learns *where* a part is (benchmarks/vision_probe.py). Asking each token to reconstruct its own patch (MAE's target
without the masking) makes every part's tokens distinct and loud from the first steps; attention can then select
them. Inference never runs it. It needs no labels, so it works on any dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDecoder(nn.Module):
    """Linear map from a patch token [.., D] to its patch's pixels at `resolution` x `resolution` (RGB, 3 r^2 values)."""

    def __init__(self, hidden_size: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.proj = nn.Linear(hidden_size, 3 * resolution * resolution)

    def loss(self, patch_tokens: torch.Tensor, pixel_values: torch.Tensor, cameras: int) -> torch.Tensor:
        """patch_tokens [B, C * G^2, D] (cameras in order, row-major patches) and the pixel_values they came from
        -> mean squared error of the decoded patches against `patch_targets` (scalar)."""
        target = patch_targets(pixel_values, cameras, patch_tokens.shape[1], self.resolution)
        return F.mse_loss(self.proj(patch_tokens).float(), target)


def patch_targets(pixel_values: torch.Tensor, cameras: int, num_tokens: int, resolution: int) -> torch.Tensor:
    """pixel_values [B, C * 3k, S, S] (each camera's first three channels: the first backbone's normalised image)
    -> [B, num_tokens, 3 r^2]: every patch of every camera, row-major, average-pooled to r x r, channel-major."""
    b = pixel_values.shape[0]
    grid = round((num_tokens // cameras) ** 0.5)
    if cameras * grid * grid != num_tokens:
        raise ValueError(f"{num_tokens} patch tokens do not split into {cameras} square grids")
    r = resolution
    images = pixel_values.reshape(b, cameras, -1, *pixel_values.shape[-2:])[:, :, :3].flatten(0, 1)
    small = F.adaptive_avg_pool2d(images.float(), grid * r)  # [B*C, 3, G*r, G*r]
    return small.reshape(b, cameras, 3, grid, r, grid, r).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, num_tokens, 3 * r * r)
