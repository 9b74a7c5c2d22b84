"""`clearvla data inspect|stats|clean|convert`: look at, measure, clean and convert robot datasets.

Readers cover RLDS/TFRecord (OpenX), LeRobot v3 and LIBERO/robomimic HDF5; clean and convert always write a NEW
LeRobot v3 dataset. `--on-error skip` skips (and counts) unreadable episodes; the default fails on the first.
"""

from __future__ import annotations

import argparse
import collections
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from clearvla.errors import ConfigError


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=("auto", "lerobot", "rlds", "hdf5"),
                   help="dataset format (default: detect)")
    p.add_argument("--name", default=None, help="dataset name, the norm_stats key (default: from the dataset)")
    p.add_argument("--standardize", default="auto",
                   help="RLDS: auto (by dataset name), none, or bridge_orig|fractal20220817_data|libero|generic; "
                        "HDF5: auto (LIBERO's -1..1 gripper), none, or a gripper convention")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="unreadable episode: stop, or skip and count it")


def _cleaning_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cleaning rules (all on by default)")
    g.add_argument("--no-clean", action="store_true", help="turn every rule off")
    g.add_argument("--keep-noops", action="store_true", help="keep LIBERO-style no-op steps")
    g.add_argument("--noop-threshold", type=float, default=1e-4, help="no-op when ||action[:-1]|| is below this")
    g.add_argument("--keep-zero-actions", action="store_true", help="keep all-zero actions")
    g.add_argument("--keep-nonfinite", action="store_true", help="keep episodes with NaN/inf")
    g.add_argument("--keep-outliers", action="store_true", help="keep episodes with outlier actions")
    g.add_argument("--outlier-k", type=float, default=3.0, help="outlier beyond Q1 - k*IQR .. Q3 + k*IQR")
    g.add_argument("--outlier-min-steps", type=int, default=1000, help="skip the outlier rule below this many steps")
    g.add_argument("--keep-empty-instructions", action="store_true", help="keep episodes without instruction")
    g.add_argument("--min-steps", type=int, default=2, help="drop episodes with fewer steps")
    g.add_argument("--gripper-convention", default="open1",
                   help="stored gripper convention to unify to 1=open/0=closed: open1, close1, signed_close1, "
                        "continuous_open1, relative_close1, or none")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="inspect, measure, clean and convert robot datasets")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    q = sub.add_parser("inspect", help="summary of a dataset (episodes, cameras, actions, instructions)")
    q.add_argument("path", type=Path)
    _source_args(q)
    q.add_argument("--verify", action="store_true", help="decode every episode, images included")
    q.add_argument("--sample", type=int, default=3, help="episodes to describe, drawn at random")
    q.add_argument("--seed", type=int, default=0, help="seed of the episode sample")
    q.set_defaults(func=run_inspect)

    s = sub.add_parser("stats", help="cleaned statistics as OpenVLA's dataset_statistics.json")
    s.add_argument("paths", type=Path, nargs="+")
    _source_args(s)
    _cleaning_args(s)
    s.add_argument("--out", type=Path, default=Path("dataset_statistics.json"), help="output JSON file")
    s.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "clearvla" / "stats",
                   help="statistics cache, keyed by dataset content")
    s.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    s.set_defaults(func=run_stats)

    c = sub.add_parser("clean", help="write a cleaned copy as a new LeRobot v3 dataset")
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path, help="new directory (must not exist or be empty)")
    _source_args(c)
    _cleaning_args(c)
    c.add_argument("--fps", type=int, default=None, help="frame rate when the source does not record it")
    c.add_argument("--robot-type", default="unknown")
    c.set_defaults(func=run_clean)

    v = sub.add_parser("convert", help="convert any supported dataset to a new LeRobot v3 dataset")
    v.add_argument("src", type=Path)
    v.add_argument("dst", type=Path, help="new directory (must not exist or be empty)")
    _source_args(v)
    v.add_argument("--fps", type=int, default=None, help="frame rate when the source does not record it")
    v.add_argument("--robot-type", default="unknown")
    v.set_defaults(func=run_convert)


def _open(args: argparse.Namespace, path: Path):
    from clearvla.data.formats import open_source

    standardize = None if args.standardize == "none" else args.standardize
    return open_source(path, format=args.format, name=args.name, standardize=standardize)


def _cleaning(args: argparse.Namespace):
    from clearvla.data.cleaning import CleaningConfig

    if args.no_clean:
        return CleaningConfig.off()
    return CleaningConfig(
        drop_noops=not args.keep_noops, noop_threshold=args.noop_threshold, drop_zero_actions=not args.keep_zero_actions,
        drop_nonfinite=not args.keep_nonfinite, drop_outliers=not args.keep_outliers, outlier_k=args.outlier_k,
        outlier_min_steps=args.outlier_min_steps,
        drop_empty_instructions=not args.keep_empty_instructions, min_steps=args.min_steps,
        gripper_convention=None if args.gripper_convention == "none" else args.gripper_convention,
    )


@contextmanager
def _bar(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` episodes for the `with` block, which advances it by calling what it yields."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="ep", leave=False, disable=None)  # None: no bar when not a terminal
    try:
        yield bar.update
    finally:
        bar.close()


def _print_report(report) -> None:
    r = report.to_dict()
    print(f"| {r['dataset']} | {r['episodes_in']} -> {r['episodes_out']} | {r['steps_in']} -> {r['steps_out']} | "
          + ", ".join(f"{k} {v}" for k, v in {**r["dropped_steps"], **r["dropped_episodes"]}.items() if v) + " |")


def _report_header() -> None:
    print("| dataset | episodes in -> out | steps in -> out | dropped (steps: rule count; episodes: rule count) |")
    print("|---|---|---|---|")


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from clearvla.data.formats import SkipLog, iter_source

    source = _open(args, args.path)
    n = len(source)
    print(f"dataset   : {source.name}  ({source.format}, {n} episodes)  {source.path}")
    if getattr(source, "standardization", None):
        print(f"standardised as: {source.standardization}")
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(n, size=min(args.sample, n), replace=False).tolist()) if n else []
    for _, episode in iter_source(source, indices=sample, on_error=args.on_error):
        cams = ", ".join(f"{k} {v.shape[1]}x{v.shape[2]}" for k, v in sorted(episode.images.items())) or "none"
        proprio = "none" if episode.proprio is None else str(episode.proprio.shape[1])
        print(f"episode   : {len(episode)} steps, cameras [{cams}], action {episode.actions.shape[1]}-D, proprio {proprio}")
        low, high = (" ".join(f"{v:+.4f}" for v in row) for row in (episode.actions.min(0), episode.actions.max(0)))
        print(f"            instruction {episode.instruction!r}")
        print(f"            action min [{low}]  max [{high}]")
    skips, steps, tasks = SkipLog(), 0, collections.Counter()
    with _bar("verify" if args.verify else "scan", n) as update:
        for _, episode in iter_source(source, on_error=args.on_error, images=args.verify, skips=skips, progress=update):
            steps += len(episode)
            tasks[episode.instruction] += 1
    unreadable = f"; {len(skips)} unreadable (skipped)" if skips else ""
    print(f"steps     : {steps} in {n - len(skips)} readable episodes{unreadable}")
    for text, count in tasks.most_common(5):
        print(f"task      : {count:5d} x {text!r}")
    if len(tasks) > 5:
        print(f"            ... {len(tasks) - 5} more distinct instructions")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from clearvla.data.index import scan_dataset
    from clearvla.data.stats import save_dataset_statistics

    cleaning = _cleaning(args)
    if args.name and len(args.paths) > 1:
        raise ConfigError("--name applies to a single dataset; give one path or drop --name")
    stats, reports = {}, []
    for path in args.paths:
        source = _open(args, path)
        if source.name in stats:
            raise ConfigError(
                f"two datasets are named {source.name!r}; statistics are keyed by name (use one path with --name)"
            )
        cache_dir = None if args.no_cache else args.cache_dir
        with _bar(source.name, len(source)) as update:
            index = scan_dataset(source, cleaning, on_error=args.on_error, cache_dir=cache_dir, progress=update)
        stats[source.name] = index.statistics
        reports.append(index.report)
    save_dataset_statistics(args.out, stats)
    _report_header()
    for report in reports:
        _print_report(report)
    for name, block in stats.items():
        print(f"{name}: {block['num_trajectories']} trajectories, {block['num_transitions']} transitions")
        print("  action q01 " + json.dumps([round(v, 5) for v in block["action"]["q01"]]))
        print("  action q99 " + json.dumps([round(v, 5) for v in block["action"]["q99"]]))
    print(f"wrote {args.out}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from clearvla.data.convert import export_lerobot, plan_for_export
    from clearvla.errors import DataError

    source = _open(args, args.src)
    with _bar("plan", len(source)) as update:
        plan, _ = plan_for_export(source, _cleaning(args), on_error=args.on_error, progress=update)
    if not plan.episodes:
        raise DataError(f"{args.src}: no episode survives cleaning; nothing written ({plan.report.to_dict()})")
    with _bar("write", len(plan.episodes)) as update:
        result = export_lerobot(source, args.dst, fps=args.fps, robot_type=args.robot_type, plan=plan,
                                on_error=args.on_error, progress=update)
    _report_header()
    _print_report(plan.report)
    skipped = f"; {len(result.skipped)} more unreadable while writing (skipped)" if result.skipped else ""
    print(f"wrote {result.episodes} episodes, {result.frames} frames to {result.path}{skipped}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from clearvla.data.convert import export_lerobot

    source = _open(args, args.src)
    with _bar("convert", len(source)) as update:
        result = export_lerobot(source, args.dst, fps=args.fps, robot_type=args.robot_type, on_error=args.on_error,
                                progress=update)
    skipped = f"; {len(result.skipped)} unreadable episodes skipped" if result.skipped else ""
    print(f"wrote {result.episodes} episodes, {result.frames} frames to {result.path}{skipped}")
    return 0
