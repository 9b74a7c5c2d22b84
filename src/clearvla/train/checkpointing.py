"""Atomic, resumable training checkpoints.

run_dir/checkpoints/step-00000100/
    model/        full OpenVLA-format checkpoint (every mode but LoRA) — usable by predict/eval/serve as is
    adapter/      LoRA only: adapter_model.safetensors + adapter_config.json (`clearvla merge` makes a model)
    optimizer.{json,safetensors}, scheduler.json, rng.{json,safetensors}, trainer_state.json
Each is written to a hidden temporary directory and renamed into place, so a crash (even SIGKILL) leaves
either the previous complete checkpoints or the new complete one; only the last `keep_last` are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from clearvla.errors import CheckpointError
from clearvla.models.checkpoint import read_state_dict
from clearvla.models.vla import VLA
from clearvla.train.modes import lora_state_dict
from clearvla.train.state import load_tree, save_tree

_STEP_DIR = re.compile(r"^step-(\d{8})$")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Resumed:
    step: int
    samples: int


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if _STEP_DIR.match(p.name)), key=lambda p: p.name)


def save_checkpoint(
    run_dir: Path, model: VLA, optimizer: torch.optim.Optimizer, scheduler: Any,
    step: int, samples: int, lora: dict[str, Any] | None, keep_last: int,
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        if lora is None:
            model.save_pretrained(tmp / "model")
        else:
            (tmp / "adapter").mkdir()
            save_file({k: v.detach().contiguous() for k, v in lora_state_dict(model).items()}, str(tmp / "adapter" / ADAPTER_WEIGHTS))
            (tmp / "adapter" / ADAPTER_CONFIG).write_text(json.dumps(lora, indent=2))
        save_tree(optimizer.state_dict(), tmp, "optimizer")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        save_tree({"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}, tmp, "rng")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "samples": samples}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):  # left by a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(directory: Path, model: VLA, optimizer: torch.optim.Optimizer, scheduler: Any) -> Resumed:
    """Restore model weights (or LoRA adapters), optimizer, scheduler and RNG in place."""
    if (directory / "adapter").is_dir():
        adapters = load_file(str(directory / "adapter" / ADAPTER_WEIGHTS))
        expected = set(lora_state_dict(model))
        if set(adapters) != expected:
            raise CheckpointError(f"{directory / 'adapter'}: adapter tensors do not match the model's LoRA layers")
        model.load_state_dict(adapters, strict=False)
    else:
        expected_shapes = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
        model.load_state_dict(read_state_dict(directory / "model", expected_shapes, model.dtype), strict=False)
    optimizer.load_state_dict(load_tree(directory, "optimizer"))
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text()))
    rng = load_tree(directory, "rng")
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    state = json.loads((directory / "trainer_state.json").read_text())
    return Resumed(step=int(state["step"]), samples=int(state["samples"]))
