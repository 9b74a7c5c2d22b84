"""Milliseconds per action for the tiny preset: fp32 vs bf16, batch 1 vs batch 8 (KV-cached greedy decoding).

Run: .venv/bin/python benchmarks/predict_latency.py  ->  benchmarks/results/predict_latency.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from common import write_result

from clearvla.models.vla import VLA

STATS = {"bench": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7}}}


def measure(model: VLA, batch: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(batch)]
    texts = [f"pick up the {c} block" for c in ("red", "green", "blue", "yellow")] * (batch // 4 + 1)
    texts = texts[:batch]
    model.predict_action(images, texts)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_action(images, texts)
        times.append((time.perf_counter() - start) * 1000)
    median = statistics.median(times)
    return {"batch": batch, "ms_per_call_p50": round(median, 2), "ms_per_action": round(median / batch, 2),
            "actions_per_s": round(1000 * batch / median, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model = VLA.from_config("tiny", image_size=args.image_size, norm_stats=STATS).to(dtype).eval()
        for batch in (1, 8):
            row = {"dtype": str(dtype).removeprefix("torch."), **measure(model, batch, args.repeats)}
            rows.append(row)
            print(row)
    params = sum(p.numel() for p in model.parameters())
    path = write_result("predict_latency", {"preset": "tiny", "image_size": args.image_size, "parameters": params, "rows": rows})
    print("\n| dtype | batch | ms / call (p50) | ms / action | actions / s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['batch']} | {r['ms_per_call_p50']} | {r['ms_per_action']} | {r['actions_per_s']} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
