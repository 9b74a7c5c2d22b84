"""OpenVLA-OFT's parallel decoding: K x A empty action slots after the prompt, bidirectional attention among them,
and an L1 regression head that reads their final hidden states as one action chunk.

Parameter names follow OpenVLA-OFT's `L1RegressionActionHead` (`model.fc1`, `model.mlp_resnet_blocks.N.ffn.1`, ...),
so its action-head weights map onto ours key for key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ChunkOutput:
    """A chunk model's forward: `actions` [B, K, A] normalised; `loss` the mean L1 to the targets (when given).

    What the training objectives (train/objectives.py) read, each only when asked for or given targets:
    `patch_predictions` [B, C * G^2, 3 r^2] the patch decoder's reconstruction of every camera patch (models with
    one); `focus` [B, C, 2] the focus head's centroid per camera (models with one); `attentions` one [B, H, T, T]
    per LLM layer (with output_attentions, under eager attention)."""

    loss: torch.Tensor | None
    actions: torch.Tensor
    patch_predictions: torch.Tensor | None = None
    focus: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class PatchDecoder(nn.Module):
    """Training only: a linear map from a patch token [.., D] to its patch's pixels at `resolution` x `resolution`
    (RGB, 3 r^2 values); the patch loss (train/objectives.py) says why. Inference never runs it."""

    def __init__(self, hidden_size: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.proj = nn.Linear(hidden_size, 3 * resolution * resolution)

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(patch_tokens)


class FocusHead(nn.Module):
    """Training only: the mean action-slot state [B, S, D] -> every camera's focus centroid (u, v) [B, C, 2], where
    the object the arm heads for shows (the focus loss, train/objectives.py, says why). Inference never runs it."""

    def __init__(self, hidden_size: int, cameras: int) -> None:
        super().__init__()
        self.cameras = cameras
        self.proj = nn.Linear(hidden_size, 2 * cameras)

    def forward(self, slot_states: torch.Tensor) -> torch.Tensor:
        return self.proj(slot_states.mean(dim=1)).float().view(-1, self.cameras, 2)


class _ResidualBlock(nn.Module):
    """x + ReLU(Linear(LayerNorm(x)))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class _ResidualMLP(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.mlp_resnet_blocks = nn.ModuleList(_ResidualBlock(hidden_dim) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class L1ActionHead(nn.Module):
    """Slot hidden states [B, K * A, D] -> normalised actions [B, K, A] (trained with an L1 loss; ~[-1, 1])."""

    def __init__(self, hidden_size: int, action_dim: int, chunk: int) -> None:
        super().__init__()
        self.action_dim, self.chunk = action_dim, chunk
        self.model = _ResidualMLP(hidden_size * action_dim, hidden_size, action_dim)

    def forward(self, slot_states: torch.Tensor) -> torch.Tensor:
        b, n, d = slot_states.shape
        assert n == self.chunk * self.action_dim, f"expected {self.chunk} x {self.action_dim} slots, got {n}"
        return self.model(slot_states.reshape(b, self.chunk, self.action_dim * d))


def slot_attention(
    valid: torch.Tensor, n_slots: int, bidirectional_prefix: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention for a right-padded sequence [B, T] (valid: 1 = real token) followed by `n_slots` action slots.

    Returns (mask [B, 1, T + S, T + S] bool, True = may attend; position_ids [B, T + S]). Real tokens attend
    causally to real tokens, as in the autoregressive model, or to all real tokens with `bidirectional_prefix`
    (a prefix-LM); slots attend to every real token and to every slot (bidirectional); real tokens never see slots
    and nothing attends to padding. Slots take the positions right after each row's last real token, so a row's
    padding changes nothing.
    """
    b, t = valid.shape
    valid = valid.bool()
    total = t + n_slots
    keys = torch.cat([valid, valid.new_ones(b, n_slots)], dim=1)  # [B, T + S]
    causal = torch.ones(total, total, dtype=torch.bool, device=valid.device).tril()
    if bidirectional_prefix:
        causal[:t, :t] = True
    causal[t:, :] = True  # slot queries see everything (padding is removed by `keys`); text rows never see slots
    mask = causal[None] & keys[:, None, :]
    positions = valid.long().cumsum(1) - 1
    lengths = valid.sum(1, keepdim=True)
    slots = lengths + torch.arange(n_slots, device=valid.device)[None]
    return mask[:, None], torch.cat([positions.clamp(min=0), slots], dim=1)


def eager_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool attention mask (True = may attend) as the additive float mask eager attention needs: transformers' eager
    path adds the mask to the scores, so a bool mask would add 1 / 0 and mask nothing."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
