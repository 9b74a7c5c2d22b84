"""AdamW and the learning-rate schedules: constant (OpenVLA) or linear warmup + cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from clearvla.errors import ConfigError

SCHEDULES = ("constant", "cosine")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, vision_backbone: nn.Module | None = None,
                    vision_lr_scale: float = 1.0) -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters at `lr`; those of `vision_backbone` (a submodule of `model`) at
    `lr * vision_lr_scale`, in a second parameter group, when the scale is not 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the training mode leaves no parameter trainable")
    scaled = set() if vision_backbone is None or vision_lr_scale == 1.0 else {id(p) for p in vision_backbone.parameters()}
    groups = [{"params": [p for p in params if id(p) not in scaled], "lr": lr},
              {"params": [p for p in params if id(p) in scaled], "lr": lr * vision_lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """LR multiplier per optimizer step. "constant": 1 after warmup. "cosine": warmup, then cosine down
    to `min_lr_ratio` at `max_steps`."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
