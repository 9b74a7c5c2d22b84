"""Training throughput of the default model's real configuration (recipes/default_model.yaml `defaults`: tiny at 128²,
cameras image + wrist_image, proprio, 8-step chunk head, patch / attention / focus losses, bidirectional prefix) at
batch 32 on recorded simulator data: full training steps (forward with every objective, backward, clip, AdamW) as
the trainer runs them (train/loop.py `_step`, under its `autocast_for`).

Variants, interleaved round-robin (the machine is shared and noisy; each round times every variant once, and a
variant's figure is its median over rounds, and its best round), all against fp32 / fused backbones / model-only:
  precision   fp32 | bf16 autocast (`--precision bf16`: master weights fp32)
  data        model-only (batches drawn once, then reused) | the real loader (make_dataloader) at 1 | 2 workers
  vision      fused DINOv2 + SigLIP (the default) | DINOv2 alone (`get_config("tiny", fused=False)`)
Also FLOPs per sample (torch's FlopCounterMode: matmuls and attention) and this CPU's square-matmul peaks.

`--quality-steps N` trains fp32, bf16 and the single backbone from the same seed on the same data for N steps and
reports the validation action L1 (first action of the chunk, normalised units) each reaches, evaluated in its own
precision (as the trainer logs it) and in fp32, plus fp32 from a second seed: the seed-to-seed spread is the
yardstick a precision difference has to beat.

Run: .venv/bin/python benchmarks/train_throughput.py [--dataset DIR] [--quality-steps 300]
     ->  benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from common import write_result

from clearvla.data.cleaning import CleaningConfig
from clearvla.data.loader import make_dataloader
from clearvla.data.mixture import DatasetSpec, Mixture
from clearvla.models.vla import VLA
from clearvla.train.build import build_model
from clearvla.train.config import TrainConfig
from clearvla.train.loop import _step, evaluate, train
from clearvla.train.modes import apply_mode
from clearvla.train.objectives import attention_implementation, needs_masks
from clearvla.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "default_model.yaml"
DEFAULT_DATA = ROOT / "runs" / "data" / "train_throughput_24"
# Run bookkeeping and stage-specific fields of the recipe's defaults that a benchmark run does not take over.
NOT_TAKEN = ("max_steps", "log_every", "eval_every", "save_every", "keep_last", "val_fraction", "warmup_steps")

VAL_BATCHES = 8  # 256 held-out frames (the same ones for every run: the val split is one deterministic pass)


@dataclass(frozen=True)
class Variant:
    precision: str = "fp32"  # fp32 | bf16
    workers: int | None = None  # None: model-only (pre-loaded batches); else the real loader's num_workers
    fused: bool = True  # two backbones (DINOv2 + SigLIP) or DINOv2 alone

    @property
    def name(self) -> str:
        data = "model-only" if self.workers is None else f"loader {self.workers}w"
        return f"{self.precision} / {'fused' if self.fused else 'single'} / {data}"


BASELINE = Variant()
VARIANTS = (
    BASELINE, Variant("bf16"), Variant(fused=False), Variant("bf16", fused=False),
    Variant(workers=1), Variant(workers=2), Variant("bf16", workers=1), Variant("bf16", workers=2),
)


def default_config(batch_size: int, **fields: Any) -> TrainConfig:
    """The default model's TrainConfig (recipes/default_model.yaml `defaults`) at `batch_size`, with `fields` over it."""
    defaults = {k: v for k, v in yaml.safe_load(RECIPE.read_text())["defaults"].items() if k not in NOT_TAKEN}
    return TrainConfig.from_dict({**defaults, "batch_size": batch_size, "val_fraction": 0.125, **fields}, str(RECIPE))


def record_dataset(out: Path, episodes: int = 24) -> Path:
    """Train-suite demonstrations at 128² with both cameras and attention masks (128 is a multiple of 32)."""
    from clearvla.sim.record import record_demos

    print(f"recording {episodes} episodes to {out}")
    record_demos("train", episodes, out, image_size=128, workers=2, seed=0)
    return out


def open_mixture(dataset: Path, cfg: TrainConfig, cache: Path) -> Mixture:
    data = cfg.data
    return Mixture.build([DatasetSpec(dataset)], cleaning=CleaningConfig(drop_outliers=data.drop_outliers,
                         outlier_k=data.outlier_k), val_fraction=data.val_fraction, seed=cfg.run.seed, cache_dir=cache)


def loader(mixture: Mixture, vla: VLA, cfg: TrainConfig, split: str, workers: int, seed: int):
    """The loader `clearvla train` builds (commands/train.py `train_from_config`)."""
    return make_dataloader(mixture, vla.tokenizer, vla.processor, split=split, batch_size=cfg.optim.batch_size,
                           num_workers=workers, seed=seed, augment=cfg.data.augment,
                           action_vocab_size=vla.config.base_vocab_size, cameras=vla.config.cameras,
                           proprio=vla.config.proprio_dim > 0, action_chunk=vla.config.action_chunk,
                           buffer_episodes=cfg.data.shuffle_buffer,
                           attention=split == "train" and needs_masks(cfg.objectives),
                           gripper_change_repeats=cfg.data.gripper_change_repeats)


def new_model(cfg: TrainConfig, mixture: Mixture, fused: bool) -> VLA:
    vla = build_model(cfg, mixture.norm_stats, **({} if fused else {"fused": False}))
    apply_mode(vla, cfg.model.mode)
    return vla


@dataclass
class Runner:
    """One variant's model, optimizer and batch source, kept across rounds."""

    variant: Variant
    cfg: TrainConfig
    vla: VLA
    batches: Iterator[dict]
    prefetched: int  # batches a loader holds ready between rounds (workers x prefetch_factor)
    optimizer: Any = None
    rates: list[float] = field(default_factory=list)

    def step(self) -> None:
        _step(self.vla, self.vla, self.batches, self.cfg, logged=False)
        torch.nn.utils.clip_grad_norm_(self.vla.parameters(), self.cfg.optim.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def time_round(self, steps: int) -> None:
        # A loader's workers fill its queue while other variants run: drain what is ready, so the timed steps wait
        # for batches made while they run, as in a real run's steady state.
        for _ in range(self.prefetched):
            next(self.batches)
        self.step()  # warm-up: allocator, and the workers' pipeline refilled
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.rates.append(steps * self.cfg.optim.batch_size / (time.perf_counter() - start))


def make_runner(variant: Variant, dataset: Path, batch_size: int, cache: Path, preloaded: int) -> Runner:
    cfg = default_config(batch_size, precision=variant.precision)
    mixture = open_mixture(dataset, cfg, cache)
    vla = new_model(cfg, mixture, variant.fused)
    workers = variant.workers or 0
    source = iter(loader(mixture, vla, cfg, "train", workers, cfg.run.seed * 1000))
    if variant.workers is None:
        source = itertools.cycle([next(source) for _ in range(preloaded)])
    runner = Runner(variant, cfg, vla, source, 2 * workers)
    runner.optimizer = build_optimizer(vla, cfg.learning_rate, cfg.optim.weight_decay)
    return runner


def step_flops(runner: Runner) -> int:
    """FLOPs of one forward + backward with every objective (FlopCounterMode counts matmuls and attention)."""
    with FlopCounterMode(display=False) as counter:
        _step(runner.vla, runner.vla, runner.batches, runner.cfg, logged=False)
    runner.vla.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 1.5) -> float:
    """Best sustained square-matmul rate over about `seconds`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def throughput(dataset: Path, batch_size: int, rounds: int, steps: int, cache: Path,
               variants: tuple[Variant, ...] = VARIANTS) -> dict[str, Any]:
    runners = [make_runner(v, dataset, batch_size, cache, preloaded=4) for v in variants]
    contexts = [attention_implementation(r.vla, r.cfg.objectives) for r in runners]  # eager attention, as train() runs
    for c in contexts:
        c.__enter__()
    try:
        flops = {r.variant.fused: step_flops(r) / batch_size for r in runners
                 if r.variant.workers is None and r.variant.precision == "fp32"}
        for r in range(rounds):
            order = runners if r % 2 == 0 else runners[::-1]  # no variant always runs right after the same one
            for runner in order:
                runner.time_round(steps)
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{x.variant.name} {x.rates[-1]:.1f}" for x in runners))
    finally:
        for c in contexts:
            c.__exit__(None, None, None)
    # Median over rounds; the best round too, since on a shared machine a round can lose most of the CPU to
    # another job (no round runs faster than the machine allows, so the best is the least disturbed).
    base, base_best = statistics.median(runners[0].rates), max(runners[0].rates)
    rows = []
    for runner in runners:
        v, sps = runner.variant, statistics.median(runner.rates)
        rows.append({"variant": v.name, "precision": v.precision, "vision": "fused" if v.fused else "single",
                     "data": "model-only" if v.workers is None else f"loader_{v.workers}w",
                     "samples_per_s": round(sps, 2), "ratio": round(sps / base, 3),
                     "samples_per_s_best": round(max(runner.rates), 2),
                     "ratio_best": round(max(runner.rates) / base_best, 3),
                     "samples_per_s_rounds": [round(x, 2) for x in runner.rates],
                     "gflops_per_sample": round(flops[v.fused] / 1e9, 3)})
    return {"rows": rows, "gflops_per_sample": {("fused" if k else "single"): round(f / 1e9, 3) for k, f in flops.items()}}


def quality(dataset: Path, batch_size: int, steps: int, lr: float, cache: Path) -> list[dict[str, Any]]:
    """Validation action L1 after `steps` steps for each variant, from the same seed and data (loader, 2 workers)."""
    runs = [("fp32 / fused", "fp32", True, 0), ("bf16 / fused", "bf16", True, 0),
            ("fp32 / single", "fp32", False, 0), ("fp32 / fused, seed 1", "fp32", True, 1)]
    out = []
    for name, precision, fused, seed in runs:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = default_config(batch_size, precision=precision, seed=seed, lr=lr, max_steps=steps,
                                 warmup_steps=min(100, steps // 10), log_every=max(1, steps // 10), eval_every=steps,
                                 eval_batches=VAL_BATCHES, save_every=steps, keep_last=1, num_workers=2, run_dir=run_dir)
            mixture = open_mixture(dataset, cfg, cache)
            vla = new_model(cfg, mixture, fused)
            train_loader = loader(mixture, vla, cfg, "train", 2, cfg.run.seed * 1000)
            val = loader(mixture, vla, cfg, "val", 0, cfg.run.seed)
            start = time.perf_counter()
            history = train(vla, lambda _: iter(train_loader), cfg, val_batches=lambda: iter(val))
            seconds = time.perf_counter() - start
            fp32_cfg = default_config(batch_size, precision="fp32", eval_batches=VAL_BATCHES)
            fp32 = evaluate(vla, vla, iter(val), fp32_cfg, vla.device)
        last = history[-1]
        out.append({"run": name, "precision": precision, "vision": "fused" if fused else "single", "seed": seed,
                    "steps": steps, "train_loss": round(last["loss"], 4), "val_action_l1": round(last["val_action_l1"], 4),
                    "val_chunk_l1": round(last["val_chunk_l1"], 4), "val_action_l1_fp32_eval": round(fp32["action_l1"], 4),
                    "train_seconds": round(seconds, 1)})
        print(out[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, help=f"recorded dataset (default: record 24 episodes to {DEFAULT_DATA})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (default 3)")
    parser.add_argument("--quality-steps", type=int, default=0, help="also train each precision / backbone N steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="quality runs' peak rate (default 1e-3: stage 1's, "
                        "the recipe's from-scratch stage)")
    parser.add_argument("--name", default="train_throughput", help="result file name (default train_throughput)")
    args = parser.parse_args()
    dataset = args.dataset or (DEFAULT_DATA if (DEFAULT_DATA / "meta").is_dir() else record_dataset(DEFAULT_DATA))
    cache = Path(tempfile.mkdtemp(prefix="train_throughput_cache_"))
    peak = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    measured = throughput(dataset, args.batch_size, args.rounds, args.steps, cache)
    peak_after = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    peak = {k: max(peak[k], peak_after[k]) for k in peak}
    for row in measured["rows"]:
        achieved = row["samples_per_s"] * row["gflops_per_sample"]
        row["fraction_of_own_peak"] = round(achieved / peak[row["precision"]], 3)
    found = quality(dataset, args.batch_size, args.quality_steps, args.lr, cache) if args.quality_steps else []
    path = write_result(args.name, {
        "config": "recipes/default_model.yaml defaults", "dataset": str(dataset), "batch_size": args.batch_size,
        "rounds": args.rounds, "steps_per_round": args.steps, "bf16_cpu": torch.backends.cpu.get_cpu_capability(),
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peak.items()}, **measured,
        "quality": found, "quality_lr": args.lr if found else None,
    })
    print(f"\nmatmul peak (1024²): fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s; "
          f"GFLOP/sample {measured['gflops_per_sample']}\n")
    print("| precision | vision | data | samples/s (median) | ratio | samples/s (best round) | ratio | of own matmul peak |"
          "\n|---|---|---|---|---|---|---|---|")
    for r in measured["rows"]:
        print(f"| {r['precision']} | {r['vision']} | {r['data']} | {r['samples_per_s']:.1f} | {r['ratio']:.2f}x "
              f"| {r['samples_per_s_best']:.1f} | {r['ratio_best']:.2f}x | {r['fraction_of_own_peak']:.0%} |")
    if found:
        print("\n| run | steps | train loss | val action L1 | val action L1 (fp32 eval) | val chunk L1 |\n|---|---|---|---|---|---|")
        for q in found:
            print(f"| {q['run']} | {q['steps']} | {q['train_loss']} | {q['val_action_l1']} | "
                  f"{q['val_action_l1_fp32_eval']} | {q['val_chunk_l1']} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
