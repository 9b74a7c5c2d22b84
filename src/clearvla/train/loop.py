"""The training loop: a short function built from the parts in this package."""

from __future__ import annotations

import functools
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from clearvla.models.vla import VLA
from clearvla.train import objectives
from clearvla.train.checkpointing import (
    checkpoint_dirs, clear_final, gather_state, load_checkpoint, mark_final, save_checkpoint,
)
from clearvla.train.config import TrainConfig
from clearvla.train.metrics import step_metrics
from clearvla.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

MODEL_KEYS = ("pixel_values", "input_ids", "attention_mask", "labels", "proprio")  # proprio: models with a state input
CHUNK_KEYS = ("pixel_values", "input_ids", "attention_mask", "proprio", "actions")  # chunk models regress actions
TARGET_KEYS = ("attention_target",)  # what the objectives read beside the forward's output (train/objectives.py)
StepCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX-BF16). Without them oneDNN emulates bf16
    and autocast is slower than fp32; with them the default model trains 1.36x faster in bf16 autocast
    (benchmarks/train_throughput.py). torch's get_cpu_capability() says only "AVX512", so the flags are read."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_autocast(precision: str, device: torch.device) -> bool:
    """`precision` auto: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere. bf16 asked for on a CPU without
    native bf16 is used, with a warning: emulated, it trains many times slower than fp32."""
    if precision == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("precision bf16 on a CPU without native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): "
                    "emulated, it runs many times slower than fp32; precision auto picks the faster one")
    return precision == "bf16"


def autocast_for(cfg: TrainConfig, device: torch.device):
    bf16 = bf16_autocast(cfg.optim.precision, device)
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def model_inputs(batch: dict[str, Any], vla: VLA) -> dict[str, torch.Tensor]:
    """The forward arguments of a loader batch (chunk or token model), on the model's device."""
    keys = CHUNK_KEYS if vla.config.action_chunk else MODEL_KEYS
    return {k: batch[k].to(vla.device, non_blocking=True) for k in keys if k in batch}


def objective_targets(batch: dict[str, Any], vla: VLA) -> dict[str, torch.Tensor]:
    """The targets of a loader batch that only the objectives read, on the model's device."""
    return {k: batch[k].to(vla.device, non_blocking=True) for k in TARGET_KEYS if k in batch}


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
            if n >= cfg.run.eval_batches:
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
    run, optim = cfg.run, cfg.optim
    run_dir = Path(run.run_dir)
    has_adapters = any("lora_" in name for name, _ in vla.named_parameters())
    assert has_adapters == (cfg.model.mode == "lora"), f"mode {cfg.model.mode!r} does not match the model; call apply_mode first"
    with objectives.attention_implementation(vla, cfg.objectives):
        model = wrap(vla)
        optimizer = build_optimizer(model, cfg.learning_rate, optim.weight_decay, vla.vision_backbone,
                                    optim.vision_lr_scale)
        scheduler = build_scheduler(optimizer, optim.schedule, optim.warmup_steps, optim.max_steps)
        step, samples = _resume(cfg, run_dir, model, vla, optimizer, scheduler, dist)
        writer = _start_run(cfg, run_dir, vla, step) if dist.is_main else None
        history: list[dict[str, float]] = []
        batches = train_batches(samples)
        model.train()
        window_start, window_samples = time.perf_counter(), 0
        while step < optim.max_steps:
            # Metrics cost a device sync and an argmax over all logits: only for steps that are logged, which
            # include every validation step.
            last = step + 1 == optim.max_steps
            validated = bool(run.eval_every) and val_batches is not None and ((step + 1) % run.eval_every == 0 or last)
            logged = (step + 1) % run.log_every == 0 or last or validated
            metrics, seen = _step(model, vla, batches, cfg, logged)
            window_samples += seen * dist.world_size
            if optim.clip_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad_norm)
                if logged:
                    metrics["grad_norm"] = float(grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            samples += optim.batch_size * optim.grad_accum
            metrics["lr"] = scheduler.get_last_lr()[0]
            if logged:
                metrics["samples_per_s"] = window_samples / (time.perf_counter() - window_start)
                window_start, window_samples = time.perf_counter(), 0
                if validated:
                    metrics.update({f"val_{k}": v for k, v in evaluate(model, vla, val_batches(), cfg, vla.device).items()})
                history.append({"step": step, **metrics})
                if writer is not None:
                    writer.log(step, metrics)
            for callback in callbacks:
                callback(step, metrics)
            if step % run.save_every == 0 or step == optim.max_steps:
                _save(run_dir, model, vla, optimizer, scheduler, step, samples, cfg, dist, writer)
    if writer is not None:
        writer.close()
    return history


def _step(model: nn.Module, vla: VLA, batches: Iterator[dict], cfg: TrainConfig, logged: bool) -> tuple[dict[str, float], int]:
    """One optimizer step's forwards and backwards (`grad_accum` micro-batches): (the logged step's metrics, or none,
    and how many samples it read)."""
    accum = cfg.optim.grad_accum
    metrics: dict[str, float] = {}
    seen = 0
    for micro in range(accum):
        batch = next(batches)
        inputs, targets = model_inputs(batch, vla), objective_targets(batch, vla)
        sync = micro == accum - 1 or not hasattr(model, "no_sync")
        with (nullcontext() if sync else model.no_sync()), autocast_for(cfg, vla.device):
            out = model(**inputs, **objectives.forward_options(cfg.objectives, targets))
            found = objectives.losses(vla, out, inputs, targets)
            (objectives.total(out.loss, found, cfg.objectives) / accum).backward()
        if logged:
            metrics["loss"] = metrics.get("loss", 0.0) + out.loss.item() / accum
            for name, value in found.items():
                metrics[name] = metrics.get(name, 0.0) + value.item() / accum
            for k, v in step_metrics(out, inputs, vla.action_tokenizer).items():
                metrics[k] = metrics.get(k, 0.0) + v / accum
        seen += len(inputs["input_ids"])
    return metrics, seen


def _resume(cfg: TrainConfig, run_dir: Path, model: nn.Module, vla: VLA, optimizer: Any, scheduler: Any,
            dist: Distributed) -> tuple[int, int]:
    """(step, samples) to start from: the newest checkpoint's with `resume`, else (0, 0)."""
    existing = checkpoint_dirs(run_dir)
    if cfg.run.resume and existing:
        resumed = load_checkpoint(existing[-1], model, vla, optimizer, scheduler)
        log.info("resumed from %s (step %d)", existing[-1], resumed.step)
        return resumed.step, resumed.samples
    if existing and dist.is_main:
        log.warning("%s already holds checkpoints; starting fresh (pass resume=True to continue)", run_dir)
    return 0, 0


def _start_run(cfg: TrainConfig, run_dir: Path, vla: VLA, step: int) -> "_TensorBoard":
    """Rank 0: the run directory with the run's config (flat, as `TrainConfig.from_dict` reads it back) and
    statistics, and the metrics writer. A run that will train further loses its `final` pointer until it ends."""
    if step < cfg.optim.max_steps:
        clear_final(run_dir)
    writer = _TensorBoard(run_dir)
    (run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (run_dir / "dataset_statistics.json").write_text(json.dumps(vla.norm_stats, indent=2))
    return writer


def _save(run_dir: Path, model: nn.Module, vla: VLA, optimizer: Any, scheduler: Any, step: int, samples: int,
          cfg: TrainConfig, dist: Distributed, writer: "_TensorBoard | None") -> None:
    """A checkpoint of every rank's state, written by rank 0; no rank runs ahead of it."""
    lora = {"r": cfg.model.lora_rank, "lora_alpha": cfg.model.lora_alpha, "lora_dropout": cfg.model.lora_dropout,
            "init_lora_weights": "gaussian", "target": "all linear layers except lm_head"} if cfg.model.mode == "lora" else None
    model_state, optimizer_state = gather_state(model, optimizer)  # collective under FSDP
    if dist.is_main:
        saved = save_checkpoint(run_dir, vla, model_state, optimizer_state, scheduler, step, samples, lora,
                                cfg.run.keep_last)
        if step == cfg.optim.max_steps:
            mark_final(run_dir, saved)
        writer.plot()
    if dist.world_size > 1:
        torch.distributed.barrier()


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
