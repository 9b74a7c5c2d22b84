"""OpenVLA's fine-tuning table on our simulator: one pretrained model adapted in each mode, on the same data and
step budget, then played where it was adapted.

The paper's setting: a model pretrained on one distribution (--init, e.g. the shipped default model, trained on the
train suite) is fine-tuned on demonstrations of another (--data, e.g. semantic-suite episodes 100-199: colours and
part names it never saw) and evaluated on other episodes of that suite (--suite, --start, --episodes). The first row
is --init itself, not fine-tuned. A held-out task instead of a held-out suite: --init trained on a recording made
with `sim record --tasks pick place push`, --data recorded with `--tasks stack`, played with --tasks stack. Per mode (full, last-layer, frozen-vision, sandwich, LoRA r=32): trainable
parameters, peak RAM of the training process tree, samples/s, the last validation L1 of the first action (chunk
models) or action-token accuracy (token models), and closed-loop success with a Wilson 95% interval. Each mode trains
in its own process (`clearvla train --config CONFIG`, which must give the inputs --init reads), so RAM is per mode.

Run: .venv/bin/python benchmarks/finetune_modes.py --init src/clearvla/assets/default_model \\
       --config configs/finetune_semantic.yaml --data runs/data/workcell_semantic_100 --suite semantic \\
       --start 0 --episodes 100 [--tasks stack] [--steps 500] [--modes full lora] [--name N]
  ->  benchmarks/results/finetune_modes.json (or N.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import write_result

MODES = ("full", "lora", "sandwich", "frozen-vision", "last-layer")
PAPER = {"full": 69.7, "lora": 68.2, "sandwich": 62.1, "frozen-vision": 47.0, "last-layer": 30.3}  # OpenVLA, Table 1


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


def trainable_count(log_text: str) -> tuple[int, float]:
    """(trainable parameters, percent of all) from `clearvla train`'s "N of M parameters trainable (P%)" line."""
    match = re.search(r"([\d,]+) of [\d,]+ parameters trainable \(([\d.]+)%\)", log_text)
    if match is None:
        raise SystemExit("the training log has no 'parameters trainable' line")
    return int(match.group(1).replace(",", "")), float(match.group(2))


def last_validation(history: list[dict]) -> dict[str, float]:
    """The last logged validation metrics: first-action L1 (chunk models) or action-token accuracy (token models)."""
    validated = [h for h in history if any(k.startswith("val_") for k in h)]
    if not validated:
        raise SystemExit("the run logged no validation step (is --eval-every > --steps?)")
    last = validated[-1]
    return {k: round(last[k], 4) for k in ("val_action_l1", "val_chunk_l1", "val_action_accuracy") if k in last}


def evaluate(clearvla: list[str], checkpoint: Path, args: argparse.Namespace, out: Path) -> dict:
    subprocess.run([*clearvla, "eval", "--checkpoint", str(checkpoint), "--suite", args.suite, "--start",
                    str(args.start), "--episodes", str(args.episodes), "--workers", str(args.workers), "--videos",
                    "none", "--out", str(out), *(["--tasks", *args.tasks] if args.tasks else [])], check=True,
                   env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    suite = json.loads((out / "report.json").read_text())["suites"][0]
    return {"success": suite["success_rate"], "ci95": suite["ci95"], "episodes": suite["episodes"],
            "failure_modes": suite["failure_modes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="the pretrained checkpoint every mode starts from")
    parser.add_argument("--config", required=True, type=Path,
                        help="`clearvla train` config giving the model's inputs and the fine-tuning recipe")
    parser.add_argument("--data", required=True, help="LeRobot dataset to fine-tune on")
    parser.add_argument("--suite", required=True, help="suite the success column is measured on")
    parser.add_argument("--start", type=int, default=0, help="first episode of --suite played (none of --data's)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="play only --suite episodes of these tasks (e.g. the task --init was pretrained without)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of every mode but LoRA")
    parser.add_argument("--lora-lr", type=float, default=5e-4, help="LoRA's peak learning rate (OpenVLA's)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation worker processes")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_modes"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--name", default="finetune_modes")
    args = parser.parse_args()
    clearvla = [sys.executable, "-m", "clearvla.cli"]
    rows = [{"mode": "none (--init)", **evaluate(clearvla, Path(args.init), args, args.out / "init" / "eval")}]
    print(rows[-1], flush=True)
    for mode in args.modes:
        run_dir = args.out / mode
        train = [*clearvla, "train", "--config", str(args.config), "--datasets", args.data, "--init", args.init,
                 "--mode", mode, "--max-steps", str(args.steps),
                 "--lr", str(args.lora_lr if mode == "lora" else args.lr), "--run-dir", str(run_dir),
                 "--save-every", str(args.steps), "--eval-every", str(args.steps)]
        run_dir.mkdir(parents=True, exist_ok=True)
        peak_gib = run_tracking_rss(train, run_dir / "train.log")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        trainable, pct = trainable_count((run_dir / "train.log").read_text())
        checkpoint = run_dir / "checkpoints" / f"step-{args.steps:08d}" / "model"
        if mode == "lora":
            subprocess.run([*clearvla, "merge", "--run", str(run_dir), "--out", str(run_dir / "merged")], check=True)
            checkpoint = run_dir / "merged"
        rows.append({"mode": mode, "trainable": trainable, "trainable_pct": pct, "peak_ram_gib": round(peak_gib, 2),
                     "samples_per_s": round(sum(h["samples_per_s"] for h in history) / len(history), 1),
                     **last_validation(history), **evaluate(clearvla, checkpoint, args, run_dir / "eval"),
                     "paper_success_pct": PAPER[mode]})
        print(rows[-1], flush=True)
    path = write_result(args.name, {"init": args.init, "config": str(args.config), "data": args.data,
                                    "suite": args.suite, "start": args.start, "tasks": args.tasks, "steps": args.steps, "lr": args.lr,
                                    "lora_lr": args.lora_lr, "rows": rows})
    print(f"\n| mode | trainable | peak RAM | samples/s | val first-action L1 | {args.suite} success (95% CI) | paper |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cost = (f"{r['trainable']:,} ({r['trainable_pct']:.1f}%) | {r['peak_ram_gib']} GiB | {r['samples_per_s']} | "
                f"{r.get('val_action_l1', r.get('val_action_accuracy', float('nan'))):.3f}") if "trainable" in r else "— | — | — | —"
        paper = f"{r['paper_success_pct']}%" if "paper_success_pct" in r else "—"
        print(f"| {r['mode']} | {cost} | {r['success']:.1%} ({r['ci95'][0]:.1%}–{r['ci95'][1]:.1%}) | {paper} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
