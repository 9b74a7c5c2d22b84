"""`clearvla sim`: the MuJoCo workcell. Subcommands:

  record  write scripted-expert demonstrations of a suite as a LeRobot v3 dataset
  video   write an MP4 or GIF of the expert playing one episode
  expert  measure the scripted expert's success per suite and task
  suites  list the suites and their sizes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearvla.errors import ConfigError

if TYPE_CHECKING:
    from clearvla.sim.record import RecordReport

SUITE_HELP = "suite name: train, visual, motion, physical, semantic, ambiguous"
CAMERA_CHOICES = ("image", "wrist_image", "image_top")  # sim.scene.CAMERAS' keys (not imported: keeps --help fast)
TASK_CHOICES = ("pick", "place", "stack", "push")  # sim.tasks.TASKS (not imported: keeps --help fast)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sim", help="MuJoCo workcell: record demos, render videos, measure the expert")
    sub = p.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")

    r = sub.add_parser("record", help="record successful expert demonstrations (LeRobot v3)")
    r.add_argument("--suite", default="train", help=SUITE_HELP)
    r.add_argument("--episodes", type=int, required=True, help="number of successful episodes to write")
    r.add_argument("--out", type=Path, required=True, help="new dataset directory (must not exist or be empty)")
    r.add_argument("--image-size", type=int, default=128, help="square camera images, pixels (default 128)")
    r.add_argument("--seed", type=int, default=0, help="expert noise seed (default 0)")
    r.add_argument("--start", type=int, default=0, help="first suite episode index to play (default 0)")
    r.add_argument("--stop", type=int, default=None,
                   help="play only suite episodes before this index (default: the suite's end), e.g. 4000 to keep "
                        "train 4000-4999 unseen however many the expert fails")
    r.add_argument("--tasks", nargs="+", choices=TASK_CHOICES, default=None, metavar="TASK",
                   help="play only episodes of these tasks, from pick place stack push (default: all), e.g. to hold "
                        "stack out of a model's data and fine-tune on it later")
    r.add_argument("--no-wrist", action="store_true", help="record only the third-person camera")
    r.add_argument("--cameras", nargs="+", choices=CAMERA_CHOICES, default=None, metavar="CAMERA",
                   help="cameras to record, from image (front), wrist_image (gripper), image_top (overhead, "
                        "orthographic) (default: image wrist_image); the episodes and actions are the same for any")
    r.add_argument("--step-noise", type=float, default=None, metavar="M",
                   help="std (m) of the expert's per-step translation noise (default 0.0015); more shows a cloned "
                        "policy how to recover from off-path states (DART)")
    r.add_argument("--workers", type=int, default=1,
                   help="processes playing episodes (default 1); the dataset is the same for any number")
    r.add_argument("--home-start", action="store_true",
                   help="start every episode's arm at the home posture instead of the episode's own random pose")
    r.add_argument("--handover", metavar="CHECKPOINT", default=None,
                   help="let this checkpoint act first and the expert take over and finish; only the expert's part "
                        "is written, so the demonstrations start where the policy goes wrong (DAgger-style)")
    r.add_argument("--handover-window", type=float, nargs=2, default=(0.0, 0.5), metavar=("FIRST", "LAST"),
                   help="the expert takes over at a step drawn uniformly from FIRST..LAST x the episode's step "
                        "limit (default 0 0.5)")
    r.set_defaults(func=run_record)

    v = sub.add_parser("video", help="MP4/GIF of the expert playing one episode")
    v.add_argument("--suite", default="train", help=SUITE_HELP)
    v.add_argument("--episode", type=int, default=0, help="episode index within the suite (default 0)")
    v.add_argument("--out", type=Path, required=True, help="output file, .mp4 or .gif")
    v.add_argument("--image-size", type=int, default=224, help="square frame size, pixels (default 224)")
    v.add_argument("--seed", type=int, default=0, help="expert noise seed (default 0)")
    v.add_argument("--wrist", action="store_true", help="put the wrist camera beside the third-person view")
    v.add_argument("--cameras", nargs="+", choices=CAMERA_CHOICES, default=None, metavar="CAMERA",
                   help="cameras to show side by side, in this order (default: image; with --wrist: image wrist_image)")
    v.set_defaults(func=run_video)

    e = sub.add_parser("expert", help="scripted-expert success rate per suite and task")
    e.add_argument("--suite", action="append", help=f"{SUITE_HELP}; repeatable (default: all)")
    e.add_argument("--episodes", type=int, default=100, help="episodes per suite, from index 0 (default 100)")
    e.add_argument("--seed", type=int, default=0, help="expert noise seed (default 0)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.set_defaults(func=run_expert)

    s = sub.add_parser("suites", help="list the suites")
    s.set_defaults(func=run_suites)


def run_record(args: argparse.Namespace) -> int:
    report = record(args.suite, args.episodes, args.out, image_size=args.image_size, seed=args.seed, start=args.start,
                    stop=args.stop, wrist_camera=not args.no_wrist,
                    cameras=None if args.cameras is None else tuple(args.cameras),
                    workers=args.workers, step_noise=args.step_noise,
                    random_start=not args.home_start, handover=args.handover, handover_window=args.handover_window,
                    tasks=None if args.tasks is None else tuple(args.tasks))
    print(f"wrote {report.written} episodes ({report.attempted} attempted) to {report.out}")
    return 0


def record(suite: str, episodes: int, out: Path, *, handover: str | Path | None = None,
           handover_window: tuple[float, float] = (0.0, 0.5), **options: Any) -> RecordReport:
    """`record_demos` with a progress bar; `handover` is a checkpoint directory (checked) that acts first."""
    from tqdm import tqdm

    from clearvla.sim.handover import Handover
    from clearvla.sim.record import record_demos
    from clearvla.sim.suites import check_suite

    check_suite(suite)
    player = None
    if handover is not None:
        if not Path(handover).is_dir():
            raise ConfigError(f"--handover {handover}: no such checkpoint directory")
        player = Handover(str(handover), *handover_window)
    with tqdm(total=episodes, desc=f"recording {suite}", unit="demo") as bar:
        attempts = 0

        def progress(success: bool) -> None:
            nonlocal attempts
            attempts += 1
            bar.update(int(success))
            bar.set_postfix(attempts=attempts)

        return record_demos(suite, episodes, out, handover=player, on_episode=progress, **options)


def run_video(args: argparse.Namespace) -> int:
    import numpy as np

    from clearvla.sim.env import WorkcellEnv
    from clearvla.sim.expert import ScriptedExpert
    from clearvla.sim.rollout import run_episode
    from clearvla.sim.suites import episode
    from clearvla.sim.video import VIDEO_SUFFIXES, caption, write_video

    if args.out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(VIDEO_SUFFIXES)}, got {args.out.name!r}")
    shown = list(dict.fromkeys(args.cameras or ["image"]))
    if args.wrist and "wrist_image" not in shown:
        shown.append("wrist_image")
    spec = episode(args.suite, args.episode)
    env = WorkcellEnv(args.suite, image_size=args.image_size, cameras=tuple(shown))
    frames: list[np.ndarray] = []

    def grab(obs: dict, info: dict) -> None:
        view = np.concatenate([obs[name] for name in shown], axis=1)
        status = " [success]" if info["success"] else ""
        frames.append(caption(view, f"{info['instruction']}{status}"))

    try:
        rollout = run_episode(env, ScriptedExpert(env, seed=args.seed), spec, record=False, on_step=grab)
    finally:
        env.close()
    write_video(frames, args.out, fps=env.metadata["render_fps"])
    result = "success" if rollout.success else "failure"
    print(f"{args.out}: {len(frames)} frames, {spec.suite}/{spec.index} {spec.task}: {rollout.instruction!r} ({result})")
    return 0


def run_expert(args: argparse.Namespace) -> int:
    from clearvla.sim.env import WorkcellEnv
    from clearvla.sim.expert import ScriptedExpert
    from clearvla.sim.rollout import evaluate
    from clearvla.sim.suites import SUITES, check_suite, episodes

    names = [check_suite(s) for s in (args.suite or SUITES)]
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    results = {}
    for name in names:
        env = WorkcellEnv(name, images=False)
        results[name] = evaluate(env, ScriptedExpert(env, seed=args.seed), episodes(name)[: args.episodes]).to_dict()
        env.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| suite | episodes | success | pick | place | stack | push |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        tasks = " | ".join(f"{r['per_task'][t]['success_rate']:.1%}" if t in r["per_task"] else "-" for t in ("pick", "place", "stack", "push"))
        print(f"| {name} | {r['episodes']} | {r['success_rate']:.1%} | {tasks} |")
    return 0


def run_suites(args: argparse.Namespace) -> int:
    from clearvla.sim.suites import SUITE_SIZES, SUITES

    for name in SUITES:
        print(f"{name:10s} {SUITE_SIZES[name]:5d} episodes")
    return 0
