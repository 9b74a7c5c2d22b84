"""The `clearvla` command. Each subcommand lives in its own module exposing `register(subparsers)`;
this file only wires them and turns user errors into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from clearvla.errors import ClearVLAError

# Subcommand name -> module with `register(subparsers)`. Imported lazily so `clearvla predict`
# never pays for MuJoCo and `clearvla sim` never pays for transformers.
SUBCOMMANDS: dict[str, str] = {
    "predict": "clearvla.commands.predict",
    "demo": "clearvla.commands.demo",
    "train": "clearvla.commands.train",
    "pretrain-vision": "clearvla.commands.pretrain_vision",
    "recipe": "clearvla.commands.recipe",
    "merge": "clearvla.commands.merge",
    "eval": "clearvla.commands.eval",
    "compare": "clearvla.commands.compare",
    "data": "clearvla.commands.data",
    "sim": "clearvla.commands.sim",
    "serve": "clearvla.commands.serve",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just that subcommand's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(prog="clearvla", description="Vision-language-action models for robot arms.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=f"see `clearvla {name} --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # the reader went away (`clearvla train --help | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


def _run(argv: list[str]) -> int:
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in SUBCOMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.options = extra  # commands with their own option parser (train: tyro) take the rest
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except ClearVLAError as e:
        print(f"clearvla {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clearvla {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
