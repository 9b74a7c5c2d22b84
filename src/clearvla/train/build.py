"""The model a run starts from: a preset (random init from the run's seed) or a pretrained checkpoint.
Deterministic, so `clearvla merge` can rebuild a LoRA run's base exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clearvla.config import TrainConfig
from clearvla.models.vla import VLA


def build_model(cfg: TrainConfig, norm_stats: dict[str, Any], device: str | torch.device = "cpu") -> VLA:
    """fp32 master weights on `device`; norm_stats of the training data replace any the checkpoint had."""
    if Path(cfg.init).is_dir():
        model = VLA.from_pretrained(cfg.init, dtype=torch.float32)
    else:
        overrides = {} if cfg.image_size is None else {"image_size": cfg.image_size}
        model = VLA.from_config(cfg.init, seed=cfg.seed, **overrides)
    model.norm_stats = dict(norm_stats)
    return model.to(device)
