"""`clearvla demo`: the first command a new user runs (`make demo`).

Loads the trained default model shipped with clearvla, runs a few closed-loop episodes of every simulator
suite in worker processes, prints a success table with Wilson 95% intervals, and writes videos of the
rollouts (instruction and predicted action drawn under each frame) to runs/demo/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SUITES = ("train", "visual", "motion", "physical", "semantic", "ambiguous")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="watch the shipped default model do tasks in the simulator")
    p.add_argument("--checkpoint", type=Path, default=None, help="another checkpoint instead of the shipped default")
    p.add_argument("--episodes", type=int, default=4, help="episodes per suite")
    p.add_argument("--suites", nargs="+", default=list(SUITES), choices=SUITES)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--interactive", action="store_true",
                   help="one episode where the model asks you which part you mean (the first of --suites, default ambiguous)")
    p.add_argument("--index", type=int, default=0, help="with --interactive: which episode of the suite")
    p.set_defaults(func=run)


def run_interactive(args: argparse.Namespace, checkpoint: Path) -> int:
    from clearvla.commands.interactive import run_interactive_episode

    suite = args.suites[0] if args.suites != list(SUITES) else "ambiguous"
    run_interactive_episode(checkpoint, suite=suite, index=args.index, out_dir=args.out / "videos")
    return 0


def run(args: argparse.Namespace) -> int:
    from clearvla.assets import default_model_dir
    from clearvla.eval.report import failure_counts, summary_table, write_reports
    from clearvla.eval.workcell import evaluate_suite

    checkpoint = args.checkpoint or default_model_dir()
    if args.interactive:
        return run_interactive(args, checkpoint)
    print(f"clearvla demo: {checkpoint}  (model card: {Path(checkpoint) / 'README.md'})")
    print(f"{args.episodes} closed-loop episodes per suite, {args.workers} worker processes\n")
    start, reports = time.perf_counter(), []
    for suite in args.suites:
        report = evaluate_suite(checkpoint, suite, args.episodes, workers=args.workers, out_dir=args.out, videos="all")
        s = report.summary()
        failures = failure_counts(report)
        print(f"  {suite:10} {s['successes']}/{s['episodes']} in {report.seconds:.0f}s" + (f"  (failures: {failures})" if failures else ""))
        reports.append(report)
    write_reports(reports, args.out)
    print("\n" + summary_table(reports))
    print(f"\n{len(args.suites) * args.episodes} episodes in {time.perf_counter() - start:.0f}s. Videos of every rollout "
          f"(instruction and predicted action under each frame): {args.out / 'videos'}; report: {args.out / 'report.md'}")
    print("Few episodes give wide intervals: `clearvla eval --checkpoint ... --episodes 50` measures properly.")
    return 0
