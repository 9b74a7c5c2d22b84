"""`clearvla merge`: a LoRA run's checkpoint -> a standalone OpenVLA-format checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from clearvla.errors import CheckpointError
from clearvla.models.vla import VLA
from clearvla.train.build import build_model
from clearvla.train.checkpointing import ADAPTER_WEIGHTS, checkpoint_dirs
from clearvla.train.config import TrainConfig
from clearvla.train.modes import LoraSettings, apply_mode, is_adapter_tensor, merge_lora

NORM_STATS_FILE = "dataset_statistics.json"


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "train_config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a training run: {path.name} is missing")
    return TrainConfig.from_dict(json.loads(path.read_text()), str(path), saved=True)  # flat or grouped, old or new


def merge_checkpoint(run_dir: Path, out: Path, step_dir: Path | None = None) -> Path:
    """Rebuild the run's base model, load the adapters of `step_dir` (default: newest), fold them in,
    and save an OpenVLA-format checkpoint with dataset_statistics.json to `out`."""
    cfg = load_run_config(run_dir)
    if cfg.model.mode != "lora":
        raise CheckpointError(f"{run_dir} trained in mode {cfg.model.mode!r}; its checkpoints' model/ directories are already standalone")
    step_dir = step_dir or (checkpoint_dirs(run_dir) or [None])[-1]
    if step_dir is None or not (step_dir / "adapter" / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"no LoRA adapter checkpoint found in {step_dir or run_dir / 'checkpoints'}")
    norm_stats = json.loads((run_dir / NORM_STATS_FILE).read_text()) if (run_dir / NORM_STATS_FILE).is_file() else {}
    model: VLA = build_model(cfg, norm_stats)
    apply_mode(model, "lora", LoraSettings(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_dropout))
    adapters = load_file(str(step_dir / "adapter" / ADAPTER_WEIGHTS))
    missing = {k for k in model.state_dict() if is_adapter_tensor(k)} - set(adapters)
    if missing:
        raise CheckpointError(f"{step_dir / 'adapter'} lacks {len(missing)} adapter tensors, e.g. {sorted(missing)[0]}")
    model.load_state_dict(adapters, strict=False)
    return merge_lora(model).save_pretrained(out)
