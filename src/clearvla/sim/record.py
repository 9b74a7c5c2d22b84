"""Recording scripted-expert demonstrations of a suite into a LeRobot v3 dataset (successful episodes only)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clearvla.data.episode import Episode
from clearvla.errors import ConfigError
from clearvla.sim import suites
from clearvla.sim.env import ATTENTION_RESOLUTION, DEFAULT_CAMERAS, WorkcellEnv, check_cameras
from clearvla.sim.expert import MAX_STEP_NOISE, ScriptedExpert
from clearvla.sim.handover import Handover, HandoverPolicy
from clearvla.sim.rollout import Policy, run_episode
from clearvla.workers import stream_workers

log = logging.getLogger(__name__)
ROBOT_TYPE = "clearvla_ur5_workcell"


@dataclass(frozen=True)
class RecordReport:
    """What a recording run did: episodes written, episodes tried, and where."""

    out: Path
    written: int
    attempted: int


@dataclass(frozen=True)
class _Player:
    """What a recording process needs to play episodes: the env's settings and the expert's seed."""

    suite: str
    image_size: int
    cameras: tuple[str, ...]
    control_hz: float
    seed: int
    step_noise: float | None
    random_start: bool
    handover: Handover | None = None

    def play(self, indices: Iterable[int]) -> Iterator[tuple[int, Episode | None]]:
        """(suite index, the episode if the expert succeeded else None) for each index, in order. With a
        handover, the episode is the expert's part only, and None also when the first policy finished alone."""
        specs = suites.episodes(self.suite)
        env = WorkcellEnv(self.suite, image_size=self.image_size, cameras=self.cameras,
                          control_hz=self.control_hz, attention_masks=self.image_size % ATTENTION_RESOLUTION == 0,
                          random_start=self.random_start)
        expert = ScriptedExpert(env, seed=self.seed, step_noise=self.step_noise)
        policy: Policy = expert
        if self.handover is not None:
            policy = HandoverPolicy(self.handover.load_policy(self.cameras), expert, self.handover)
        try:
            for index in indices:
                rollout = run_episode(env, policy, specs[index])
                meta = {"expert_seed": self.seed, "expert_step_noise": expert.translation_noise, "image_size": self.image_size,
                        "random_start": self.random_start}
                if isinstance(policy, HandoverPolicy):
                    rollout = rollout.since(policy.handover_step or 0)
                    meta.update(handover_step=policy.handover_step, handover_checkpoint=policy.handover.checkpoint,
                                handover_window=[policy.handover.first, policy.handover.last])
                if not len(rollout):
                    log.info("%s episode %d: the first policy finished before the handover; skipped", self.suite, index)
                    yield index, None
                    continue
                if not rollout.success:
                    log.warning("expert failed %s episode %d (%s); skipped", self.suite, index, specs[index].task)
                yield index, rollout.to_episode(meta) if rollout.success else None
        finally:
            env.close()


def _play_into(job: tuple[_Player, list[int]], emit: Callable[[tuple[int, Episode | None]], None]) -> None:
    player, indices = job
    for item in player.play(indices):
        emit(item)


def _play_parallel(player: _Player, indices: list[int], workers: int) -> Iterator[tuple[int, Episode | None]]:
    """`player.play(indices)` spread over `workers` spawned processes (worker w plays every w-th index), yielded in
    the order of `indices`. Stopping the iteration stops the workers."""
    jobs = [(player, indices[w::workers]) for w in range(workers)]
    arrived = stream_workers(_play_into, jobs, "recording", max_queue=8 * workers)
    pending: dict[int, Episode | None] = {}
    try:
        for index in indices:
            while index not in pending:
                done, episode = next(arrived)
                pending[done] = episode
            yield index, pending.pop(index)
    finally:
        arrived.close()


def record_demos(
    suite: str,
    episodes: int,
    out: str | Path,
    *,
    image_size: int = 128,
    seed: int = 0,
    start: int = 0,
    stop: int | None = None,
    wrist_camera: bool = True,
    cameras: tuple[str, ...] | None = None,
    control_hz: float = 10.0,
    workers: int = 1,
    step_noise: float | None = None,
    random_start: bool = True,
    handover: Handover | None = None,
    tasks: tuple[str, ...] | None = None,
    on_episode: Callable[[bool], None] | None = None,
) -> RecordReport:
    """Run the expert on `suite` episodes start, start+1, ... (before `stop`; None: the suite's end) and write the
    first `episodes` successful ones to a new LeRobot v3 dataset at `out`. `on_episode(success)` is called after
    every attempt (for progress bars).
    `cameras` names the cameras to record (`WorkcellEnv`'s: image, wrist_image, image_top); None records "image" and,
    with `wrist_camera`, "wrist_image". Image sizes divisible by 32 also record per-camera attention masks (where the
    object the arm heads for shows). The episodes played, and the expert's actions, are the same for any cameras.
    `workers` > 1 plays episodes in that many processes; the dataset is the same as with one. `step_noise` (m)
    sets the expert's per-step translation noise (`ScriptedExpert`; default 1.5 mm). `random_start=False` starts
    every episode's arm at the home posture. With `handover`, a checkpoint acts first and the expert finishes from
    where it left the arm; only the expert's part is written (`clearvla.sim.handover`). `tasks` plays only the
    episodes of those tasks (pick, place, stack, push; None: all), e.g. to hold one task out of a model's data."""
    from clearvla.data.formats.lerobot import LeRobotWriter  # pyarrow and video deps only when recording

    specs = suites.episodes(suite)
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not 0 <= start < len(specs):
        raise ConfigError(f"--start must be in 0..{len(specs) - 1} for suite {suite!r}, got {start}")
    stop = len(specs) if stop is None else stop
    if not start < stop <= len(specs):
        raise ConfigError(f"--stop must be in {start + 1}..{len(specs)} (after --start {start}) for suite {suite!r}, "
                          f"got {stop}")
    if control_hz != int(control_hz):
        raise ConfigError(f"recording needs an integer control rate (dataset fps), got {control_hz}")
    if step_noise is not None and not 0.0 <= step_noise <= MAX_STEP_NOISE:
        raise ConfigError(f"--step-noise must be in 0..{MAX_STEP_NOISE} m, got {step_noise}")
    if cameras is None:
        cameras = DEFAULT_CAMERAS if wrist_camera else ("image",)
    elif not wrist_camera:
        raise ConfigError("give either cameras or wrist_camera=False (--cameras or --no-wrist), not both")
    chosen = suites.indices(suite, start, stop, tasks)
    if not chosen:
        raise ConfigError(f"suite {suite!r} has no {'/'.join(tasks or ())} episodes in {start}..{stop - 1}")
    player = _Player(suite, image_size, check_cameras(cameras), control_hz, seed, step_noise, random_start, handover)
    played = player.play(chosen) if workers == 1 else _play_parallel(player, chosen, workers)
    written = attempted = 0
    try:
        with LeRobotWriter(out, fps=int(control_hz), robot_type=ROBOT_TYPE) as writer:
            for _, episode in played:
                attempted += 1
                if episode is not None:
                    writer.add_episode(episode)
                    written += 1
                if on_episode is not None:
                    on_episode(episode is not None)
                if written >= episodes:
                    break
    finally:
        played.close()
    if written < episodes:
        log.warning("suite %r ran out of episodes before %d: wrote %d of %d requested", suite, stop, written, episodes)
    return RecordReport(Path(out), written, attempted)
