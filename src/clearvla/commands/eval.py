"""`clearvla eval`: success of any OpenVLA-format checkpoint on simulator suites, with intervals and videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from clearvla.commands.predict import add_inference_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="closed-loop success on simulator suites (Wilson 95%% CIs, per task)")
    p.add_argument("--checkpoint", required=True, type=Path, help="OpenVLA-format checkpoint directory")
    p.add_argument("--suite", nargs="+", default=["train"], help="one or more suites: train visual motion physical semantic ambiguous")
    p.add_argument("--episodes", type=int, default=50, help="episodes per suite (the first N of its fixed list)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    p.add_argument("--out", type=Path, default=None, help="report directory (default runs/eval/<checkpoint name>)")
    p.add_argument("--videos", choices=("failures", "all", "none"), default="failures", help="which episodes get an MP4")
    p.add_argument("--unnorm-key", default=None)
    p.add_argument("--center-crop", action="store_true", help="centre crop of area 0.9 (models trained with crop augmentation)")
    p.add_argument("--image-size", type=int, default=None, help="camera size (default: the checkpoint's input size)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    add_inference_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from clearvla.errors import CheckpointError
    from clearvla.eval.report import summary_table, write_reports
    from clearvla.eval.rollout import evaluate_suite

    if not (args.checkpoint / "config.json").is_file():
        raise CheckpointError(f"{args.checkpoint} is not a checkpoint directory (no config.json)")
    out = args.out or Path("runs/eval") / args.checkpoint.resolve().name
    reports = []
    for suite in args.suite:
        with tqdm(total=args.episodes, desc=f"eval {suite}", unit="ep") as bar:
            wins = 0

            def tick(result) -> None:
                nonlocal wins
                wins += result.success
                bar.update(1)
                bar.set_postfix(success=f"{wins}/{bar.n}")

            reports.append(evaluate_suite(
                args.checkpoint, suite, args.episodes, workers=args.workers, image_size=args.image_size,
                unnorm_key=args.unnorm_key, center_crop=args.center_crop, out_dir=out, videos=args.videos,
                dtype=args.dtype, quantize=args.quantize, action_tokens_only=args.action_tokens_only, on_episode=tick,
            ))
    json_path, md_path = write_reports(reports, out)
    print(summary_table(reports))
    print(f"\nreports: {json_path}, {md_path}" + (f"; failure videos in {out / 'videos'}" if args.videos != "none" else ""))
    return 0
