"""OpenVLA's quantisation table on our simulator: weight memory, latency and success for bf16, int8 and int4.

The paper (openvla-7b, real robot): bf16 16.8 GB / 71.3%, int8 10.2 GB / 58.1%, int4 7.0 GB / 71.9%.
Here: a checkpoint (default: the shipped default model) evaluated closed-loop on N episodes of a suite from
--start with each precision, as `clearvla eval --quantize ...` runs it; int8 and int4 are compared with bf16 episode
by episode (won / lost, exact McNemar p). Weight memory counts stored bytes (quantised
layers: packed weights + scales), with the unquantised rest in bfloat16 as on a GPU and in the paper (as run
here, with the rest in float32, is `weight_bytes_as_run`). Latency: one predict call on simulator-sized frames, median, in the same
process. bf16 runs bfloat16 weights and compute; int8/int4 compute in float32 on this CPU (no bf16 matmul units),
bfloat16 with --device cuda.

Run: .venv/bin/python benchmarks/quantize_eval.py [--checkpoint DIR] [--episodes 5] [--start 0] [--workers 1]
     -> benchmarks/results/quantize_eval.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from common import write_result

from clearvla.eval.stats import exact_mcnemar, wilson_interval
from clearvla.eval.workcell import evaluate_suite
from clearvla.infer.quantize import load_for_inference, weight_bytes

PAPER = {"bfloat16": {"weight_gb": 16.8, "success": 0.713}, "int8": {"weight_gb": 10.2, "success": 0.581},
         "int4": {"weight_gb": 7.0, "success": 0.719}}


def latency_ms(checkpoint: Path, dtype: str, quantize: str, device: str, repeats: int = 10) -> float:
    vla = load_for_inference(checkpoint, dtype=dtype, quantize=quantize, device=device)
    size = vla.processor.image_size
    rng = np.random.default_rng(0)
    # Every camera the model reads, and a state when it reads one (the default model has both).
    observation = {camera: rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for camera in vla.config.cameras}
    state = np.zeros(vla.config.proprio_dim) if vla.config.proprio_dim else None
    vla.predict_action(observation, "pick up the red block", proprio=state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vla.predict_action(observation, "pick up the red block", proprio=state)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    from clearvla.assets import default_model_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped default model")
    parser.add_argument("--suite", default="train")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--start", type=int, default=0, help="first episode (e.g. 4000: train scenes never recorded)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = args.checkpoint or default_model_dir()
    cuda = args.device.startswith("cuda")
    rows = []
    bf16_success: dict[int, bool] = {}
    for label, dtype, quantize in (("bfloat16", "bfloat16", "none"), ("int8", "float32", "int8"), ("int4", "float32", "int4")):
        dtype = "bfloat16" if cuda else dtype
        sizes = weight_bytes(load_for_inference(checkpoint, dtype=dtype, quantize=quantize))
        # As deployed on a GPU (and in the paper): what is not quantised is held in bfloat16.
        deployed = weight_bytes(load_for_inference(checkpoint, dtype="bfloat16", quantize=quantize))
        report = evaluate_suite(checkpoint, args.suite, args.episodes, start=args.start, workers=args.workers,
                                videos="none", dtype=dtype, quantize=quantize)
        wins = sum(e.success for e in report.episodes)
        success = {e.index: e.success for e in report.episodes}
        if label == "bfloat16":  # the first row: the others are paired with it
            bf16_success = success
        won = sum(s and not bf16_success[i] for i, s in success.items())
        lost = sum(bf16_success[i] and not s for i, s in success.items())
        row = {"precision": label, "weights_dtype": dtype, "quantize": quantize, "weight_bytes": deployed["total"],
               "weight_bytes_as_run": sizes["total"], "quantized_bytes": sizes["quantized"],
               "ms_per_predict_p50": round(latency_ms(checkpoint, dtype, quantize, args.device), 1),
               "episodes": len(report.episodes), "successes": wins, "success": wins / len(report.episodes),
               "ci95": list(wilson_interval(wins, len(report.episodes))), "eval_seconds": round(report.seconds, 1),
               "vs_bfloat16": {"won": won, "lost": lost, "p": round(exact_mcnemar(won, lost), 3)},
               "paper": PAPER[label]}
        rows.append(row)
        print(row, flush=True)
    path = write_result("quantize_eval", {"checkpoint": str(checkpoint), "suite": args.suite, "start": args.start,
                                          "device": args.device, "rows": rows})
    print("\n| weights | memory (MB) | ms / predict | success | 95% CI | vs bf16: won / lost (p) | paper (7B, real robot) |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ci95"]
        pair = r["vs_bfloat16"]
        versus = "–" if r["precision"] == "bfloat16" else f"{pair['won']} / {pair['lost']} ({pair['p']})"
        print(f"| {r['precision']} | {r['weight_bytes'] / 1e6:.2f} | {r['ms_per_predict_p50']} | {r['successes']}/{r['episodes']} | "
              f"{lo:.0%}–{hi:.0%} | {versus} | {r['paper']['weight_gb']} GB / {r['paper']['success']:.1%} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
