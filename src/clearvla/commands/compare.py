"""`clearvla compare`: paired success of two checkpoints on the same episodes (exact McNemar), from eval reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="two `clearvla eval` reports of the same episodes: won / lost, exact McNemar p")
    p.add_argument("--baseline", required=True, nargs="+", type=Path, metavar="REPORT",
                   help="report.json files (or their directories) of the baseline checkpoint")
    p.add_argument("--new", required=True, nargs="+", type=Path, metavar="REPORT",
                   help="report.json files (or their directories) of the checkpoint compared with it")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the comparison as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clearvla.eval.compare import compare, load_outcomes, markdown

    result = compare(load_outcomes(args.baseline), load_outcomes(args.new))
    print(markdown(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
