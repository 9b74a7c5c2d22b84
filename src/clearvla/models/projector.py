"""Vision-to-LLM projectors, named as in OpenVLA checkpoints (`projector.fc1..fc3`)."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """Patch features [B, N, vision_dim] -> LLM embeddings [B, N, llm_dim].

    fused=True ("fused-gelu-mlp"): fc1 (vision_dim -> 4*vision_dim) GELU fc2 (-> llm_dim) GELU fc3 (llm_dim -> llm_dim).
    fused=False ("gelu-mlp"):      fc1 (vision_dim -> llm_dim) GELU fc2 (llm_dim -> llm_dim).
    """

    def __init__(self, vision_dim: int, llm_dim: int, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim)
            self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.act_fn2 = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act_fn1(self.fc1(features)))
        return self.fc3(self.act_fn2(x)) if self.fused else x


class ProprioProjector(nn.Module):
    """Normalised robot state [B, P] -> one LLM embedding [B, D]: fc1 (P -> D) GELU fc2 (D -> D), as OpenVLA-OFT."""

    def __init__(self, proprio_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))
