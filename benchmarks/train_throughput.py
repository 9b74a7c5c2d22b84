"""Training throughput of the tiny preset: samples/s, and the fraction of this CPU's bf16 matmul peak
that a training step achieves (FLOPs counted by torch's FlopCounterMode; peaks measured in the same run).
On CPUs without native bf16 (no AVX512-BF16/AMX) bf16 matmuls are far slower than fp32, so fp32 training
can exceed the bf16 "peak"; the fp32 fraction is reported beside it.

Run: .venv/bin/python benchmarks/train_throughput.py  ->  benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import write_result

from clearvla.models.tokenizer import prompt_ids
from clearvla.models.vla import VLA
from clearvla.train.modes import apply_mode, count_parameters


def matmul_peak_tflops(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    """Best sustained square-matmul rate, measured for about `seconds` (CPUs without native bf16 are slow)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e12


def fake_batch(vla: VLA, batch: int) -> dict[str, torch.Tensor]:
    """Real prompt + 7 action tokens + </s>, labels on the last 8; random pixels."""
    row = prompt_ids(vla.tokenizer, "put the small red block in the left bin") + list(range(800, 807)) + [2]
    ids = torch.tensor([row] * batch)
    labels = torch.full_like(ids, -100)
    labels[:, -8:] = ids[:, -8:]
    size = vla.processor.image_size
    return {"pixel_values": torch.randn(batch, 6, size, size), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": labels}


def step_flops(vla: VLA, batch: dict[str, torch.Tensor]) -> int:
    with FlopCounterMode(display=False) as counter:
        vla(**batch).loss.backward()
    vla.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def throughput(vla: VLA, batch: dict, precision: str, steps: int) -> float:
    """Optimizer steps per second x batch, after two warm-up steps."""
    optimizer = torch.optim.AdamW([p for p in vla.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def one_step() -> None:
        with autocast:
            loss = vla(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(1 if precision == "bf16" else 2):
        one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return steps * len(batch["input_ids"]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    peak = {"bf16": matmul_peak_tflops(torch.bfloat16), "fp32": matmul_peak_tflops(torch.float32)}
    rows = []
    for mode in ("full", "lora"):
        vla = VLA.from_config("tiny", image_size=args.image_size)
        apply_mode(vla, mode)
        batch = fake_batch(vla, args.batch_size)
        flops_per_sample = step_flops(vla, batch) / args.batch_size
        for precision in ("fp32", "bf16"):
            sps = throughput(vla, batch, precision, args.steps if precision == "fp32" else 1)
            achieved = sps * flops_per_sample / 1e12
            rows.append({
                "mode": mode, "precision": precision, "samples_per_s": round(sps, 1),
                "gflops_per_sample": round(flops_per_sample / 1e9, 3), "achieved_tflops": round(achieved, 4),
                "fraction_of_bf16_peak": round(achieved / peak["bf16"], 3),
                "fraction_of_fp32_peak": round(achieved / peak["fp32"], 3),
                "trainable_parameters": count_parameters(vla)[0],
            })
            print(rows[-1])
    path = write_result("train_throughput", {
        "preset": "tiny", "image_size": args.image_size, "batch_size": args.batch_size,
        "matmul_peak_gflops": {k: round(v * 1e3, 2) for k, v in peak.items()}, "rows": rows,
    })
    print(f"\nmatmul peak (1024²): bf16 {peak['bf16'] * 1e3:.1f} GFLOP/s, fp32 {peak['fp32'] * 1e3:.1f} GFLOP/s\n")
    print("| mode | precision | samples/s | GFLOP/sample | of bf16 peak | of fp32 peak |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['precision']} | {r['samples_per_s']} | {r['gflops_per_sample']} "
              f"| {r['fraction_of_bf16_peak']:.0%} | {r['fraction_of_fp32_peak']:.0%} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
