"""`clearvla merge`: fold a LoRA run's adapters into a standalone OpenVLA-format checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("merge", help="LoRA run -> standalone checkpoint (with dataset_statistics.json)")
    p.add_argument("--run", required=True, type=Path, help="the training run directory")
    p.add_argument("--step", type=int, default=None, help="which checkpoint step (default: newest)")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clearvla.errors import CheckpointError
    from clearvla.train.merge import merge_checkpoint

    step_dir = None
    if args.step is not None:
        step_dir = args.run / "checkpoints" / f"step-{args.step:08d}"
        if not step_dir.is_dir():
            raise CheckpointError(f"no checkpoint for step {args.step} in {args.run / 'checkpoints'}")
    out = merge_checkpoint(args.run, args.out, step_dir)
    print(f"merged checkpoint written to {out}")
    return 0
