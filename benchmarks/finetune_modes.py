"""OpenVLA's fine-tuning table on our simulator: the same data and step budget in each mode.

For each of full, last-layer, frozen-vision, sandwich and LoRA: trainable parameters, peak RAM of the
training process tree, samples/s, final validation action accuracy, and closed-loop success on the train
suite (Wilson 95% interval). Each mode trains in its own process (`clearvla train`), so RAM is per mode.

Run: .venv/bin/python benchmarks/finetune_modes.py --data runs/data/workcell_train_128
     [--init tiny|CHECKPOINT] [--steps 300] [--episodes 20]  ->  benchmarks/results/finetune_modes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import write_result

MODES = ("full", "last-layer", "frozen-vision", "sandwich", "lora")


def run_tracking_rss(cmd: list[str], log: Path) -> float:
    """Run `cmd`; return the peak summed RSS (GiB) of it and its children, sampled every 0.2 s."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed; see {log}")
    return peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="LeRobot dataset of train-suite demonstrations")
    parser.add_argument("--init", default="tiny", help="preset (from scratch) or checkpoint (fine-tune)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=20, help="train-suite episodes for the success column")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_modes"))
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    args = parser.parse_args()
    clearvla = [sys.executable, "-m", "clearvla.cli"]
    rows = []
    for mode in args.modes:
        run_dir = args.out / mode
        lr = "5e-4" if mode == "lora" else "1e-3" if args.init == "tiny" else "2e-5"
        train = [*clearvla, "train", "--datasets", args.data, "--init", args.init, "--image-size", str(args.image_size),
                 "--mode", mode, "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", lr,
                 "--run-dir", str(run_dir), "--save-every", str(args.steps), "--eval-every", str(args.steps),
                 "--log-every", "10", "--num-workers", "1"]
        run_dir.mkdir(parents=True, exist_ok=True)
        peak_gib = run_tracking_rss(train, run_dir / "train.log")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        last = history[-1]
        trainable = next(line for line in (run_dir / "train.log").read_text().splitlines() if "parameters trainable" in line)
        step_dir = run_dir / "checkpoints" / f"step-{args.steps:08d}"
        checkpoint = step_dir / "model"
        if mode == "lora":
            subprocess.run([*clearvla, "merge", "--run", str(run_dir), "--out", str(run_dir / "merged")], check=True)
            checkpoint = run_dir / "merged"
        subprocess.run([*clearvla, "eval", "--checkpoint", str(checkpoint), "--suite", "train", "--episodes",
                        str(args.episodes), "--videos", "none", "--out", str(run_dir / "eval")], check=True,
                       env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
        suite = json.loads((run_dir / "eval" / "report.json").read_text())["suites"][0]
        rows.append({
            "mode": mode, "trainable": int(trainable.split(":")[1].split(" of ")[0].replace(",", "")),
            "trainable_pct": float(trainable.split("(")[1].split("%")[0]), "peak_ram_gib": round(peak_gib, 2),
            "samples_per_s": round(sum(h["samples_per_s"] for h in history) / len(history), 1),
            "val_action_accuracy": round(last.get("val_action_accuracy", float("nan")), 3),
            "train_action_accuracy": round(last["action_accuracy"], 3),
            "success": suite["success_rate"], "ci95": suite["ci95"], "episodes": suite["episodes"],
        })
        print(rows[-1], flush=True)
    path = write_result("finetune_modes", {"init": args.init, "data": args.data, "steps": args.steps,
                                           "batch_size": args.batch_size, "image_size": args.image_size, "rows": rows})
    print("\n| mode | trainable | peak RAM | samples/s | val action acc. | train-suite success (95% CI) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['trainable']:,} ({r['trainable_pct']:.1f}%) | {r['peak_ram_gib']} GiB | {r['samples_per_s']} "
              f"| {r['val_action_accuracy']:.3f} | {r['success']:.0%} ({r['ci95'][0]:.0%}–{r['ci95'][1]:.0%}) |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
