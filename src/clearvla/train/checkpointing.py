"""Atomic, resumable training checkpoints.

run_dir/checkpoints/step-00000100/
    model/        full OpenVLA-format checkpoint (every mode but LoRA) — usable by predict/eval/serve as is
    adapter/      LoRA only: adapter_model.safetensors + adapter_config.json (`clearvla merge` makes a model)
    optimizer.{json,safetensors}, scheduler.json, rng.{json,safetensors}, trainer_state.json
Each is written to a hidden temporary directory and renamed into place, so a crash (even SIGKILL) leaves
either the previous complete checkpoints or the new complete one; only the last `keep_last` are kept.

run_dir/checkpoints/final.json names the checkpoint a finished run ended at ({"step": N, "checkpoint":
"step-0000000N"}). A pointer file rather than a symlink: it is replaced atomically (os.replace) on every filesystem,
symlinks or not, and copies as itself. It exists only while the run's checkpoints are a finished run's.
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
from clearvla.models.checkpoint import publish_permissions, read_state_dict
from clearvla.models.vla import VLA
from clearvla.train.modes import is_adapter_tensor
from clearvla.train.state import load_tree, save_tree

_STEP_DIR = re.compile(r"^step-(\d{8})$")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FINAL_POINTER = "final.json"


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


def mark_final(run_dir: Path, checkpoint: Path) -> None:
    """Point run_dir/checkpoints/final.json at `checkpoint` (a step directory of this run), atomically."""
    assert checkpoint.parent == run_dir / "checkpoints" and _STEP_DIR.match(checkpoint.name), checkpoint
    pointer = run_dir / "checkpoints" / FINAL_POINTER
    tmp = pointer.with_name(f".{FINAL_POINTER}.tmp")
    tmp.write_text(json.dumps({"step": int(_STEP_DIR.match(checkpoint.name).group(1)), "checkpoint": checkpoint.name}))
    os.replace(tmp, pointer)


def clear_final(run_dir: Path) -> None:
    """Remove the final pointer: the run's checkpoints are about to change."""
    (run_dir / "checkpoints" / FINAL_POINTER).unlink(missing_ok=True)


def final_checkpoint(run_dir: Path) -> Path | None:
    """The step directory a finished run ended at (run_dir/checkpoints/step-N), or None if it has not finished."""
    pointer = run_dir / "checkpoints" / FINAL_POINTER
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / json.loads(pointer.read_text())["checkpoint"]
    if not path.is_dir():
        raise CheckpointError(f"{pointer} names {path.name}, which is not there (deleted by hand?)")
    return path


def gather_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (unsharded, CPU) model and optimizer state dicts keyed by parameter name, for a plain, DDP or
    FSDP model alike. A collective under FSDP: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def save_checkpoint(
    run_dir: Path, vla: VLA, model_state: dict, optimizer_state: dict, scheduler: Any,
    step: int, samples: int, lora: dict[str, Any] | None, keep_last: int,
) -> Path:
    """Write one checkpoint from gathered state (see `gather_state`); rank 0 only."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        if lora is None:
            vla.save_pretrained(tmp / "model", state_dict=model_state)
        else:
            (tmp / "adapter").mkdir()
            adapters = {k: v.detach().contiguous() for k, v in model_state.items() if is_adapter_tensor(k)}
            save_file(adapters, str(tmp / "adapter" / ADAPTER_WEIGHTS))
            (tmp / "adapter" / ADAPTER_CONFIG).write_text(json.dumps(lora, indent=2))
        save_tree(optimizer_state, tmp, "optimizer")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        save_tree({"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}, tmp, "rng")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "samples": samples}))
        publish_permissions(tmp)
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


def load_checkpoint(
    directory: Path, model: torch.nn.Module, vla: VLA, optimizer: torch.optim.Optimizer, scheduler: Any
) -> Resumed:
    """Restore weights (or LoRA adapters), optimizer, scheduler and RNG in place. `model` is what trains
    (plain, DDP or FSDP); every rank reads the files itself."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True, strict=False)
    names = {k: v for k, v in vla.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    if (directory / "adapter").is_dir():
        weights = load_file(str(directory / "adapter" / ADAPTER_WEIGHTS))
        if set(weights) != {k for k in names if is_adapter_tensor(k)}:
            raise CheckpointError(f"{directory / 'adapter'}: adapter tensors do not match the model's LoRA layers")
    else:
        weights = read_state_dict(directory / "model", {k: v.shape for k, v in names.items()}, torch.float32)
    set_model_state_dict(model, weights, options=full)
    set_optimizer_state_dict(model, optimizer, load_tree(directory, "optimizer"), options=full)
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text()))
    rng = load_tree(directory, "rng")
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    state = json.loads((directory / "trainer_state.json").read_text())
    return Resumed(step=int(state["step"]), samples=int(state["samples"]))
