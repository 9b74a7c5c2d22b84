"""Our workcell suites as an evaluation target: episode i of a suite's fixed list, scored by the simulator, each
failure named by its failure mode (clearvla.sim.failure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

from clearvla.errors import ConfigError
from clearvla.eval.report import EpisodeResult, SuiteReport
from clearvla.eval.rollout import EvalJob, FrameSink, Outcome, evaluate
from clearvla.infer.loading import PolicyInputs, PolicySource, inspect_policy

VIDEO_FPS = 10  # the workcell's control rate


@dataclass(frozen=True)
class WorkcellTarget:
    """A suite of ours, rendered at `image_size` pixels square."""

    name: str
    image_size: int
    video_fps: int = VIDEO_FPS

    def open(self, inputs: PolicyInputs) -> _WorkcellPlayer:
        return _WorkcellPlayer(self, inputs)


class _WorkcellPlayer:
    """One WorkcellEnv (rendering the front view and every camera the policy reads) for every episode of a worker."""

    def __init__(self, target: WorkcellTarget, inputs: PolicyInputs) -> None:
        from clearvla.sim.env import WorkcellEnv, policy_cameras

        self.suite = target.name
        self.env = WorkcellEnv(self.suite, image_size=target.image_size, cameras=policy_cameras(inputs.cameras))

    def play(self, index: int, policy: Any, on_frame: FrameSink | None) -> Outcome:
        """Episode `index` of the suite; a failure's mode from the gripper's trace (sim/failure.py)."""
        from clearvla.sim import suites
        from clearvla.sim.failure import GripperTrace
        from clearvla.sim.rollout import run_episode

        spec = suites.episode(self.suite, index)
        trace = GripperTrace()

        def on_step(obs: dict, info: dict) -> None:
            assert self.env.world is not None  # on_step runs after reset
            trace.observe(self.env.world)
            if on_frame is not None:
                on_frame(obs["image"], info["instruction"])

        rollout = run_episode(self.env, policy, spec, record=False, on_step=on_step)
        assert self.env.setup is not None
        failure = trace.failure_mode(self.env.setup.task, rollout.success)
        return Outcome(index, spec.task, rollout.instruction, rollout.success, int(rollout.final_info["step"]), failure,
                       f"{self.suite}_{index:04d}_{spec.task}")

    def close(self) -> None:
        self.env.close()


def workcell_job(source: PolicySource, suite: str, episodes: int, *, start: int = 0, image_size: int | None = None,
                 tasks: Sequence[str] | None = None, workers: int = 2, out_dir: Path | None = None,
                 videos: str = "failures") -> EvalJob:
    """The job for the first `episodes` episodes of `suite` (a fixed list) from index `start` whose task is one of
    `tasks` (None: every task, so start .. start + episodes - 1). `image_size` defaults to the policy's input size.
    Raises ConfigError for an unknown suite or task, or episodes beyond its list (and what `inspect_policy` raises
    for the source)."""
    from clearvla.sim import suites

    suites.check_suite(suite)
    available = len(suites.episodes(suite))
    chosen = suites.indices(suite, start, None, tasks)[:episodes] if 0 <= start < available else []
    if episodes < 1 or len(chosen) < episodes:
        which = "" if tasks is None else f" ({len(chosen)} of them {'/'.join(tasks)} from {max(start, 0)})"
        raise ConfigError(f"suite {suite!r} has episodes 0..{available - 1}{which}; asked for {episodes} from {start}")
    target = WorkcellTarget(suite, image_size or inspect_policy(source).image_size)
    return EvalJob(source, target, tuple(chosen), workers, None if out_dir is None else str(out_dir), videos)


def evaluate_suite(
    checkpoint: str | Path | None,
    suite: str,
    episodes: int,
    *,
    start: int = 0,
    tasks: Sequence[str] | None = None,
    workers: int = 2,
    image_size: int | None = None,
    unnorm_key: str | None = None,
    center_crop: bool = False,
    out_dir: Path | None = None,
    videos: str = "failures",
    dtype: str = "float32",
    quantize: str = "none",
    action_tokens_only: bool = False,
    execute: int | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    ensemble: float | None = None,
    server: str | None = None,
    token: str | None = None,
) -> SuiteReport:
    """Success of a checkpoint (or, instead, of a `server` URL with its `token`) on the first `episodes` episodes of
    `suite` from `start` whose task is one of `tasks` (None: all), with `workers` processes; failure videos go to out_dir/videos. The policy options
    are PolicySource's (infer/loading.py), applied in every worker."""
    source = PolicySource(None if checkpoint is None else str(checkpoint), server, token=token, unnorm_key=unnorm_key,
                          center_crop=center_crop, dtype=dtype, quantize=quantize,
                          action_tokens_only=action_tokens_only, execute=execute, ensemble=ensemble)
    job = workcell_job(source, suite, episodes, start=start, image_size=image_size, tasks=tasks, workers=workers,
                       out_dir=out_dir, videos=videos)
    return evaluate(job, on_episode)
