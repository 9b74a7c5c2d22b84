"""The training loop: a short function built from the parts in this package."""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from clearvla.config import TrainConfig
from clearvla.models.vla import VLA
from clearvla.train.checkpointing import (
    checkpoint_dirs, clear_final, gather_state, load_checkpoint, mark_final, save_checkpoint,
)
from clearvla.train.metrics import step_metrics
from clearvla.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

MODEL_KEYS = ("pixel_values", "input_ids", "attention_mask", "labels", "proprio")  # proprio: models with a state input
CHUNK_KEYS = ("pixel_values", "input_ids", "attention_mask", "proprio", "actions", "attention_target")  # chunk models regress actions
StepCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def autocast_for(cfg: TrainConfig, device: torch.device):
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def model_inputs(batch: dict[str, Any], vla: VLA) -> dict[str, torch.Tensor]:
    """The forward arguments of a loader batch (chunk or token model), on the model's device."""
    keys = CHUNK_KEYS if vla.config.action_chunk else MODEL_KEYS
    return {k: batch[k].to(vla.device, non_blocking=True) for k in keys if k in batch}


def evaluate(model: nn.Module, vla: VLA, batches: Iterable[dict], cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean loss, action accuracy and L1 over up to `cfg.eval_batches` batches."""
    model.eval()
    totals: dict[str, float] = {}
    n = 0
    with torch.no_grad(), autocast_for(cfg, device):
        for batch in batches:
            inputs = model_inputs(batch, vla)
            out = model(**inputs)
            for k, v in {"loss": out.loss.item(), **step_metrics(out, inputs, vla.action_tokenizer)}.items():
                totals[k] = totals.get(k, 0.0) + v
            n += 1
            if n >= cfg.eval_batches:
                break
    model.train()
    return {k: v / max(n, 1) for k, v in totals.items()}


def train(
    vla: VLA,
    train_batches: Callable[[int], Iterator[dict]],
    cfg: TrainConfig,
    *,
    val_batches: Callable[[], Iterable[dict]] | None = None,
    dist: Distributed = Distributed(),
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
    callbacks: tuple[StepCallback, ...] = (),
) -> list[dict[str, float]]:
    """Train `vla` in place per `cfg`; returns the logged history (one dict per log step).

    The caller applies the training mode first (`modes.apply_mode`), so it can report what will train.
    train_batches(start_sample) yields this rank's batches from that data position on (so a resumed run
    sees exactly the data it would have seen). `wrap` wraps the model for DDP/FSDP. Only rank 0 writes.
    """
    run_dir = Path(cfg.run_dir)
    device = vla.device
    has_adapters = any("lora_" in name for name, _ in vla.named_parameters())
    assert has_adapters == (cfg.mode == "lora"), f"mode {cfg.mode!r} does not match the model; call apply_mode first"
    model = wrap(vla)
    optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    lora = {"r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
            "init_lora_weights": "gaussian", "target": "all linear layers except lm_head"} if cfg.mode == "lora" else None

    step, samples = 0, 0
    existing = checkpoint_dirs(run_dir)
    if cfg.resume and existing:
        resumed = load_checkpoint(existing[-1], model, vla, optimizer, scheduler)
        step, samples = resumed.step, resumed.samples
        log.info("resumed from %s (step %d)", existing[-1], step)
    elif existing and dist.is_main:
        log.warning("%s already holds checkpoints; starting fresh (pass resume=True to continue)", run_dir)

    writer = _TensorBoard(run_dir) if dist.is_main else None
    if dist.is_main:
        if step < cfg.max_steps:
            clear_final(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        (run_dir / "dataset_statistics.json").write_text(json.dumps(vla.norm_stats, indent=2))
    history: list[dict[str, float]] = []
    batches = train_batches(samples)
    model.train()
    window_start, window_samples = time.perf_counter(), 0
    while step < cfg.max_steps:
        metrics: dict[str, float] = {}
        # Metrics cost a device sync and an argmax over all logits: only for steps that are logged.
        logged = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps
        for micro in range(cfg.grad_accum):
            inputs = model_inputs(next(batches), vla)
            sync = micro == cfg.grad_accum - 1 or not hasattr(model, "no_sync")
            with (nullcontext() if sync else model.no_sync()), autocast_for(cfg, device):
                out = model(**inputs)
                patch_loss = getattr(out, "patch_loss", None)
                attention_loss = getattr(out, "attention_loss", None)
                focus_loss = getattr(out, "focus_loss", None)
                total = out.loss if patch_loss is None else out.loss + cfg.patch_loss * patch_loss
                if attention_loss is not None:
                    total = total + cfg.attention_loss * attention_loss
                if focus_loss is not None:
                    total = total + cfg.focus_loss * focus_loss
                (total / cfg.grad_accum).backward()
            if logged:
                metrics["loss"] = metrics.get("loss", 0.0) + out.loss.item() / cfg.grad_accum
                for name, value in (("patch_loss", patch_loss), ("attention_loss", attention_loss), ("focus_loss", focus_loss)):
                    if value is not None:
                        metrics[name] = metrics.get(name, 0.0) + value.item() / cfg.grad_accum
                for k, v in step_metrics(out, inputs, vla.action_tokenizer).items():
                    metrics[k] = metrics.get(k, 0.0) + v / cfg.grad_accum
            window_samples += len(inputs["input_ids"]) * dist.world_size
        if cfg.clip_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            if logged:
                metrics["grad_norm"] = float(grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples += cfg.batch_size * cfg.grad_accum
        metrics["lr"] = scheduler.get_last_lr()[0]

        if logged:
            metrics["samples_per_s"] = window_samples / (time.perf_counter() - window_start)
            window_start, window_samples = time.perf_counter(), 0
            if cfg.eval_every and val_batches is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                metrics.update({f"val_{k}": v for k, v in evaluate(model, vla, val_batches(), cfg, device).items()})
            history.append({"step": step, **metrics})
            if writer is not None:
                writer.log(step, metrics)
        for callback in callbacks:
            callback(step, metrics)
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            model_state, optimizer_state = gather_state(model, optimizer)  # collective under FSDP
            if dist.is_main:
                saved = save_checkpoint(run_dir, vla, model_state, optimizer_state, scheduler, step, samples, lora,
                                        cfg.keep_last)
                if step == cfg.max_steps:
                    mark_final(run_dir, saved)
                writer.plot()
            if dist.world_size > 1:
                torch.distributed.barrier()  # no rank runs ahead of a checkpoint being written
    if writer is not None:
        writer.close()
    return history


class _TensorBoard:
    """TensorBoard events, metrics.jsonl and a PNG of the curves, all in the run directory."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.summary = SummaryWriter(str(run_dir / "tensorboard"))
        self.jsonl = (run_dir / "metrics.jsonl").open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.summary.add_scalar(k.replace("val_", "val/") if k.startswith("val_") else f"train/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()

    def plot(self) -> None:
        from clearvla.train.curves import plot_curves

        plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")

    def close(self) -> None:
        self.summary.close()
        self.jsonl.close()
