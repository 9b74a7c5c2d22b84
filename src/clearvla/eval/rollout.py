"""The one evaluation harness: an `EvalJob` (a policy, a target's episodes, workers, output) played in parallel.

A target is where episodes are played: our workcell suites (eval/workcell.py) or LIBERO (eval/libero.py). It only
builds the environment for an episode and plays and scores it (`Player.play`); loading the policy (a checkpoint or
a server, infer/loading.py), spreading the episodes over workers, capturing frames, writing videos and the
per-episode records are the same for every target, and the records go to the one report (eval/report.py).

Each worker loads the policy once and plays its share of the target's fixed episode list, so results do not
depend on the number of workers. Workers are spawned (not forked): MuJoCo's GL context and torch's thread pools do
not survive a fork.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from clearvla.errors import ConfigError
from clearvla.eval.report import EpisodeResult, SuiteReport
from clearvla.infer.loading import PolicyInputs, PolicySource, load_policy
from clearvla.workers import stream_workers

VIDEOS = ("failures", "all", "none")  # which episodes get an MP4
FrameSink = Callable[[np.ndarray, str], None]  # (frame uint8 [H, W, 3], the instruction it was acted on)


@dataclass(frozen=True)
class Outcome:
    """How one episode ended, as its target scores it. `index`: its place in the target's episode list (the
    report's episode index); `failure`: a key of clearvla.sim.failure.FAILURE_MODES (None for successes and for
    targets without failure modes); `video_stem`: its video's file name before the outcome."""

    index: int
    task: str
    instruction: str
    success: bool
    steps: int
    failure: str | None
    video_stem: str


class Player(Protocol):
    """A target's environments in one worker process."""

    def play(self, index: int, policy: Any, on_frame: FrameSink | None) -> Outcome:
        """Play episode `index` with `policy`, passing every frame the policy acted on to `on_frame`."""
        ...

    def close(self) -> None: ...


class Target(Protocol):
    """Where episodes are played; picklable, as it travels to every worker. `name` is the report's suite."""

    name: str
    video_fps: int

    def open(self, inputs: PolicyInputs) -> Player:
        """The environments for a policy reading `inputs` (in the worker process)."""
        ...


@dataclass(frozen=True)
class EvalJob:
    """What to run: the policy `source`, the `target`, its `episodes` (indices into the target's fixed list,
    played in ascending order), how many worker processes (at most one per episode), and `out_dir` (videos go
    to out_dir/videos; None: no videos) with which episodes get one (`videos`: failures | all | none)."""

    source: PolicySource
    target: Target
    episodes: tuple[int, ...]
    workers: int = 2
    out_dir: str | None = None
    videos: str = "failures"

    def __post_init__(self) -> None:
        if self.videos not in VIDEOS:
            raise ConfigError(f"videos must be failures, all or none, got {self.videos!r}")
        if not self.episodes:
            raise ConfigError(f"{self.target.name}: no episodes to play")

    def shares(self) -> list[EvalJob]:
        """One job per worker: every n-th episode, n = the number of workers."""
        n = max(1, min(self.workers, len(self.episodes)))
        return [replace(self, episodes=self.episodes[w::n], workers=1) for w in range(n)]


def evaluate(job: EvalJob, on_episode: Callable[[EpisodeResult], None] | None = None) -> SuiteReport:
    """Play `job` (in this process when it has one worker, else one spawned process per worker; a worker that
    raises or dies stops them all); `on_episode` sees each result as it arrives, in completion order."""
    shares = job.shares()
    start = time.perf_counter()
    report = SuiteReport(job.source.name, job.target.name)
    if len(shares) == 1:
        report.episodes = run_job(shares[0], on_episode)
    else:
        for result in stream_workers(run_job, shares, "eval"):
            report.episodes.append(result)
            if on_episode is not None:
                on_episode(result)
    report.seconds = time.perf_counter() - start
    return report


def run_job(job: EvalJob, progress: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """One worker: load the policy, play `job.episodes` on the target, write videos as asked; the results in
    order, each also passed to `progress`."""
    policy, inputs = load_policy(job.source)
    player = job.target.open(inputs)
    capture = job.videos != "none" and job.out_dir is not None
    results = []
    try:
        for index in sorted(job.episodes):
            frames: list[np.ndarray] = []

            def on_frame(frame: np.ndarray, instruction: str) -> None:
                frames.append(overlay(frame, instruction, policy.last_action))

            outcome = player.play(index, policy, on_frame if capture else None)
            video = None
            if capture and frames and (job.videos == "all" or not outcome.success):
                video = _write_video(job, outcome, frames)
            result = EpisodeResult(job.target.name, outcome.index, outcome.task, outcome.instruction, outcome.success,
                                   outcome.steps, video, outcome.failure)
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        player.close()
    return results


def _write_video(job: EvalJob, outcome: Outcome, frames: list[np.ndarray]) -> str:
    """out_dir/videos/<stem>_success.mp4, or _failure (_failure_<mode> when the target names one)."""
    from clearvla.sim.video import write_video

    assert job.out_dir is not None
    label = "success" if outcome.success else "_".join(["failure", *([outcome.failure] if outcome.failure else [])])
    path = Path(job.out_dir) / "videos" / f"{outcome.video_stem}_{label}.mp4"
    return str(write_video(frames, path, fps=job.target.video_fps))


def overlay(frame: np.ndarray, instruction: str, action: np.ndarray | None) -> np.ndarray:
    """The frame (upscaled to at least 256 px) with the instruction and the predicted action written below."""
    from PIL import Image

    from clearvla.sim.video import caption

    scale = max(1, 256 // frame.shape[0])
    big = np.asarray(Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST))
    # Fixed-width action text, also before the first action, so every frame of a video has the same height.
    values = action if action is not None else np.full(7, np.nan)
    return caption(caption(big, instruction), "a " + " ".join("  --  " if np.isnan(a) else f"{a:+.3f}" for a in values))
