"""`clearvla eval`: success of any OpenVLA-format checkpoint on simulator suites or LIBERO, with intervals and videos."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from clearvla.commands.predict import add_inference_options
from clearvla.errors import ConfigError
from clearvla.eval.libero import BENCHMARKS, TRIALS_PER_TASK, check_benchmark
from clearvla.eval.report import EpisodeResult, failure_counts, summary_table, write_reports
from clearvla.eval.rollout import EvalJob, evaluate

EPISODES = 50  # --episodes default (our suites)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="closed-loop success on simulator suites or LIBERO (Wilson 95%% CIs, per task)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="OpenVLA-format checkpoint directory")
    source.add_argument("--server", default=None, metavar="URL",
                        help="--suite: act through a running `clearvla serve` (e.g. http://127.0.0.1:8000) instead of "
                             "loading a checkpoint; each answered chunk runs open loop")
    p.add_argument("--token", default=None, help="--server: its bearer token")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--suite", nargs="+", default=None,
                       help="one or more of our suites: train visual motion physical semantic ambiguous (default: train)")
    where.add_argument("--benchmark", default=None,
                       help=f"a LIBERO suite, OpenVLA's protocol (needs `make libero-env`): {' | '.join(BENCHMARKS)}")
    p.add_argument("--episodes", type=int, default=None, help=f"--suite: episodes per suite, the first N of its fixed list (default {EPISODES})")
    p.add_argument("--start", type=int, default=None,
                   help="--suite: index of the first episode (default 0); e.g. 4000 for train-suite scenes that "
                        "`clearvla sim record --episodes 3000` never showed the model")
    p.add_argument("--trials-per-task", type=int, default=None,
                   help=f"--benchmark: trials per task, the first N fixed initial states (default {TRIALS_PER_TASK})")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="only these tasks: --suite task names (pick place stack push; --episodes then counts episodes "
                        "of these tasks from --start), --benchmark task ids (quick runs)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="--benchmark: override the suite's step limit (quick checks; results are then not comparable)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    p.add_argument("--out", type=Path, default=None, help="report directory (default runs/eval/<checkpoint name>)")
    p.add_argument("--videos", choices=("failures", "all", "none"), default="failures", help="which episodes get an MP4")
    p.add_argument("--unnorm-key", default=None, help="dataset key of norm_stats (--benchmark default: the suite name)")
    p.add_argument("--center-crop", action="store_true", help="centre crop of area 0.9 (models trained with crop augmentation)")
    p.add_argument("--image-size", type=int, default=None, help="--suite: camera size (default: the checkpoint's input size)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--execute", type=int, default=None,
                   help="chunk models: actions of each predicted chunk run open loop before the next forward (default: the "
                        "checkpoint's execute_actions, else the whole chunk)")
    p.add_argument("--temporal-ensemble", type=float, default=None, metavar="M",
                   help="chunk models: a forward at every step, acting on ACT's temporal ensemble of the last K chunks "
                        "(weights exp(-M * i), i = 0 the oldest; ACT uses 0.01, M < 0 favours the newest); K times the compute")
    add_inference_options(p)
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Options that belong to the other mode (--suite vs --benchmark) are errors, not silently ignored."""
    if args.benchmark is None:
        given = {"--trials-per-task": args.trials_per_task, "--max-steps": args.max_steps}
        mode = "--benchmark"
    else:
        check_benchmark(args.benchmark)
        given = {"--episodes": args.episodes, "--image-size": args.image_size, "--start": args.start,
                 "--server": args.server, "--temporal-ensemble": args.temporal_ensemble}
        mode = "--suite (LIBERO renders at 256 px and runs --trials-per-task per task)"
    if args.token is not None and args.server is None:
        raise ConfigError("--token goes with --server")
    misplaced = [flag for flag, value in given.items() if value is not None]
    if misplaced:
        raise ConfigError(f"{', '.join(misplaced)} apply to {mode} only")


def _ticker(bar: Any) -> Callable[[EpisodeResult], None]:
    """Per-episode progress for a tqdm bar: one tick and the running success count."""
    wins = 0

    def tick(result: EpisodeResult) -> None:
        nonlocal wins
        wins += result.success
        bar.update(1)
        bar.set_postfix(success=f"{wins}/{bar.n}")

    return tick


def eval_jobs(args: argparse.Namespace, out: Path) -> list[EvalJob]:
    """One job per target the arguments name (each --suite, or the --benchmark), all checked before any runs."""
    from clearvla.eval.libero import libero_job
    from clearvla.eval.workcell import workcell_job
    from clearvla.infer.loading import PolicySource

    source = PolicySource(None if args.checkpoint is None else str(args.checkpoint), args.server, token=args.token,
                          unnorm_key=args.unnorm_key, center_crop=args.center_crop, dtype=args.dtype,
                          quantize=args.quantize, action_tokens_only=args.action_tokens_only, execute=args.execute,
                          ensemble=args.temporal_ensemble)
    common = dict(workers=args.workers, out_dir=out, videos=args.videos)
    if args.benchmark is not None:
        trials = TRIALS_PER_TASK if args.trials_per_task is None else args.trials_per_task
        return [libero_job(source, args.benchmark, trials_per_task=trials, tasks=_task_ids(args.tasks),
                           max_steps=args.max_steps, **common)]
    episodes = EPISODES if args.episodes is None else args.episodes
    return [workcell_job(source, suite, episodes, start=args.start or 0, image_size=args.image_size, tasks=args.tasks,
                         **common)
            for suite in args.suite or ["train"]]


def _task_ids(tasks: list[str] | None) -> list[int] | None:
    """--benchmark's --tasks as LIBERO task ids."""
    if tasks is None:
        return None
    bad = [t for t in tasks if not t.isdigit()]
    if bad:
        raise ConfigError(f"--benchmark --tasks takes task ids (integers), got {', '.join(bad)}")
    return [int(t) for t in tasks]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    check_options(args)
    out = args.out or Path("runs/eval") / (args.checkpoint.resolve().name if args.checkpoint else "server")
    reports = []
    for job in eval_jobs(args, out):
        with tqdm(total=len(job.episodes), desc=f"eval {job.target.name}", unit="ep") as bar:
            reports.append(evaluate(job, _ticker(bar)))
    json_path, md_path = write_reports(reports, out)
    print(summary_table(reports))
    for report in reports:
        failures = failure_counts(report)
        if failures:
            print(f"{report.suite} failures: {failures}")
    print(f"\nreports: {json_path}, {md_path}" + (f"; failure videos in {out / 'videos'}" if args.videos != "none" else ""))
    return 0
