"""Recording scripted-expert demonstrations of a suite into a LeRobot v3 dataset (successful episodes only)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clearvla.errors import ConfigError
from clearvla.sim import suites
from clearvla.sim.env import ATTENTION_RESOLUTION, WorkcellEnv
from clearvla.sim.expert import ScriptedExpert
from clearvla.sim.rollout import run_episode

log = logging.getLogger(__name__)
ROBOT_TYPE = "clearvla_ur5_workcell"


@dataclass(frozen=True)
class RecordReport:
    """What a recording run did: episodes written, episodes tried, and where."""

    out: Path
    written: int
    attempted: int


def record_demos(
    suite: str,
    episodes: int,
    out: str | Path,
    *,
    image_size: int = 128,
    seed: int = 0,
    start: int = 0,
    wrist_camera: bool = True,
    control_hz: float = 10.0,
    on_episode: Callable[[bool], None] | None = None,
) -> RecordReport:
    """Run the expert on `suite` episodes start, start+1, ... and write the first `episodes` successful ones to
    a new LeRobot v3 dataset at `out`. `on_episode(success)` is called after every attempt (for progress bars).
    Image sizes divisible by 32 also record per-camera attention masks (where the task's part and target show)."""
    from clearvla.data.formats.lerobot import LeRobotWriter  # pyarrow and video deps only when recording

    specs = suites.episodes(suite)
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if not 0 <= start < len(specs):
        raise ConfigError(f"--start must be in 0..{len(specs) - 1} for suite {suite!r}, got {start}")
    if control_hz != int(control_hz):
        raise ConfigError(f"recording needs an integer control rate (dataset fps), got {control_hz}")
    env = WorkcellEnv(suite, image_size=image_size, wrist_camera=wrist_camera, control_hz=control_hz,
                      attention_masks=image_size % ATTENTION_RESOLUTION == 0)
    expert = ScriptedExpert(env, seed=seed)
    written = attempted = 0
    try:
        with LeRobotWriter(out, fps=int(control_hz), robot_type=ROBOT_TYPE) as writer:
            for spec in specs[start:]:
                if written >= episodes:
                    break
                rollout = run_episode(env, expert, spec)
                attempted += 1
                if rollout.success:
                    writer.add_episode(rollout.to_episode({"expert_seed": seed, "image_size": image_size}))
                    written += 1
                else:
                    log.warning("expert failed %s episode %d (%s); skipped", suite, spec.index, spec.task)
                if on_episode is not None:
                    on_episode(rollout.success)
    finally:
        env.close()
    if written < episodes:
        log.warning("suite %r ran out of episodes: wrote %d of %d requested", suite, written, episodes)
    return RecordReport(Path(out), written, attempted)
