"""Closed-loop evaluation of a checkpoint in the simulator, episodes spread over worker processes.

Each worker loads the checkpoint once and plays its share of the suite's fixed episode list, so results do
not depend on the number of workers. Workers are spawned (not forked): MuJoCo's GL context and torch's
thread pools do not survive a fork.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from clearvla.eval.report import EpisodeResult, SuiteReport
from clearvla.workers import stream_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalJob:
    """What one worker needs: which checkpoint, suite and episode indices, and how to run them."""

    checkpoint: str
    suite: str
    indices: tuple[int, ...]
    image_size: int
    unnorm_key: str | None
    center_crop: bool
    video_dir: str | None
    videos: str  # "failures" | "all" | "none"
    dtype: str = "float32"
    quantize: str = "none"  # none | int8 | int4 (bitsandbytes)
    action_tokens_only: bool = False
    execute: int | None = None  # chunk models: actions run open loop per forward (None: the checkpoint's setting)
    ensemble: float | None = None  # chunk models: ACT's temporal ensemble with this weight decay (a forward per step)
    server: str | None = None  # a `clearvla serve` URL to act through instead of loading `checkpoint`
    token: str | None = None  # the server's bearer token


def overlay(frame: np.ndarray, instruction: str, action: np.ndarray | None) -> np.ndarray:
    """The frame (upscaled to at least 256 px) with the instruction and the predicted action written below."""
    from PIL import Image

    from clearvla.sim.video import caption

    scale = max(1, 256 // frame.shape[0])
    big = np.asarray(Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST))
    # Fixed-width action text, also before the first action, so every frame of a video has the same height.
    values = action if action is not None else np.full(7, np.nan)
    return caption(caption(big, instruction), "a " + " ".join("  --  " if np.isnan(a) else f"{a:+.3f}" for a in values))


def load_policy(job: EvalJob) -> tuple[Any, list[str]]:
    """(the policy a job plays, the cameras it reads): the checkpoint in this process, or the job's server."""
    if job.server is not None:
        from clearvla.client import PolicyClient, RemotePolicy

        remote = RemotePolicy(PolicyClient(job.server, token=job.token, timeout=60.0), job.unnorm_key, execute=job.execute)
        return remote, remote.cameras
    import torch

    from clearvla.infer.policy import VLAPolicy
    from clearvla.models.vla import VLA

    torch.set_num_threads(1)  # one core per worker process
    vla = VLA.from_pretrained(job.checkpoint, dtype=getattr(torch, job.dtype), quantize=job.quantize)
    policy = VLAPolicy(vla, job.unnorm_key, job.center_crop, action_tokens_only=job.action_tokens_only, execute=job.execute,
                       ensemble=job.ensemble)
    return policy, list(vla.config.cameras)


def run_job(job: EvalJob, progress: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """Play `job.indices` of `job.suite` with the checkpoint (or through the server); write videos as asked."""
    from clearvla.sim import suites
    from clearvla.sim.env import WorkcellEnv
    from clearvla.sim.failure import GripperTrace
    from clearvla.sim.rollout import run_episode
    from clearvla.sim.video import write_video

    policy, cameras = load_policy(job)
    env = WorkcellEnv(job.suite, image_size=job.image_size, wrist_camera="wrist_image" in cameras)
    results = []
    try:
        for index in job.indices:
            spec = suites.episode(job.suite, index)
            frames: list[np.ndarray] = []
            capture = job.videos != "none" and job.video_dir is not None
            trace = GripperTrace()

            def on_step(obs: dict, info: dict) -> None:
                assert env.world is not None  # on_step runs after reset
                trace.observe(env.world)
                if capture:
                    frames.append(overlay(obs["image"], info["instruction"], policy.last_action))

            rollout = run_episode(env, policy, spec, record=False, on_step=on_step)
            assert env.setup is not None
            failure = trace.failure_mode(env.setup.task, rollout.success)
            video = None
            if capture and (job.videos == "all" or failure is not None):
                outcome = "success" if failure is None else f"failure_{failure}"
                path = Path(job.video_dir) / f"{job.suite}_{index:04d}_{spec.task}_{outcome}.mp4"
                video = str(write_video(frames, path, fps=10))
            result = EpisodeResult(job.suite, index, spec.task, rollout.instruction, rollout.success,
                                   int(rollout.final_info["step"]), video, failure)
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        env.close()
    return results


Runner = Callable[[Any, Callable[[EpisodeResult], None] | None], list[EpisodeResult]]


def run_workers(run: Runner, jobs: Sequence[Any], on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """`run(job, progress)` for every job: in this process when there is one job, else one spawned process per
    job (`clearvla.workers`). `run` must be a module-level function (it is pickled). Results come back in
    completion order; a worker that raises or dies stops them all."""
    if len(jobs) == 1:
        return run(jobs[0], on_episode)
    results: list[EpisodeResult] = []
    for result in stream_workers(run, jobs, "eval"):
        results.append(result)
        if on_episode is not None:
            on_episode(result)
    return results


def evaluate_suite(
    checkpoint: str | Path | None,
    suite: str,
    episodes: int,
    *,
    start: int = 0,
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
    """Success of a checkpoint on episodes start .. start + episodes - 1 of `suite` (a fixed list), with `workers`
    processes. `image_size` defaults to the checkpoint's input size. Failure videos go to out_dir/videos.
    `quantize` (none | int8 | int4) and `action_tokens_only` are applied in every worker (see infer/quantize.py);
    `execute`: actions of each chunk run open loop (chunk models; None = the checkpoint's `execute_actions`, else the
    whole chunk); `ensemble`: act on ACT's temporal ensemble instead (infer/policy.py). `server` (a `clearvla serve`
    URL, with `token`) instead of a checkpoint: every worker acts through it (`client.RemotePolicy`), and image_size
    defaults to the served model's; dtype, quantize, action_tokens_only, center_crop and ensemble are then the
    server's or not available."""
    from clearvla.errors import ConfigError
    from clearvla.models.checkpoint import PROCESSOR_FILE
    from clearvla.models.processor import ImageProcessor
    from clearvla.sim import suites

    suites.check_suite(suite)
    available = len(suites.episodes(suite))
    if episodes < 1 or not 0 <= start <= available - episodes:
        raise ConfigError(f"suite {suite!r} has episodes 0..{available - 1}; asked for {episodes} from {start}")
    if videos not in ("failures", "all", "none"):
        raise ConfigError(f"videos must be failures, all or none, got {videos!r}")
    if (checkpoint is None) == (server is None):
        raise ConfigError("evaluate a checkpoint or a server URL: give exactly one")
    if server is not None:
        served = {"dtype": dtype != "float32", "quantize": quantize not in (None, "none"),
                  "action_tokens_only": action_tokens_only, "center_crop": center_crop}
        if any(served.values()):
            raise ConfigError(f"{', '.join(k for k, v in served.items() if v)}: set on the server (`clearvla serve`), not here")
        if ensemble is not None:
            raise ConfigError("the temporal ensemble needs a forward pass per step in this process; through a server "
                              "each answered chunk runs open loop (--execute K re-plans sooner)")
        from clearvla.client import PolicyClient

        try:
            with PolicyClient(server, token=token, timeout=30.0, retries=1) as client:
                metadata = client.metadata()
        except Exception as e:  # connection errors, ServerError (a wrong token): say which server, in one line
            raise ConfigError(f"cannot read {server}/metadata: {e}") from None
        chunk = int(metadata.get("chunk_size") or 1)
        if execute is not None and not 1 <= execute <= chunk:
            raise ConfigError(f"execute must be between 1 and the served model's chunk size {chunk}, got {execute}")
        image_size = image_size or int(metadata["image_size"])
    if quantize not in (None, "none"):  # fail here in one line, not in every worker
        from clearvla.infer.quantize import check_mode, require_bitsandbytes

        check_mode(quantize)
        require_bitsandbytes()
    if image_size is None:
        import json

        path = Path(checkpoint) / PROCESSOR_FILE
        image_size = ImageProcessor.from_json_dict(json.loads(path.read_text()), str(path)).image_size if path.is_file() else 224
    video_dir = None if out_dir is None else str(out_dir / "videos")
    indices = list(range(start, start + episodes))
    workers = max(1, min(workers, episodes))
    source = str(checkpoint if server is None else server)
    jobs = [EvalJob(source, suite, tuple(indices[w::workers]), image_size, unnorm_key, center_crop,
                    video_dir, videos, dtype, quantize, action_tokens_only, execute, ensemble, server, token)
            for w in range(workers)]
    start = time.perf_counter()
    report = SuiteReport(source, suite)
    report.episodes = run_workers(run_job, jobs, on_episode)
    report.seconds = time.perf_counter() - start
    return report
