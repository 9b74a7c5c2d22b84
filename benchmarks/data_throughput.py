"""Loader throughput: frames/s from a LeRobot v3 mp4 dataset to augmented, model-ready batches, and RAM over time.

A synthetic dataset (H.264 video at --size px, written once into a temp dir) is read by `make_dataloader` with
--workers worker processes: video decoding, mixture sampling, OpenVLA's augmentation, the fused (DINOv2 + SigLIP,
6-channel) processor normalisation, prompt tokenisation and label masking. After --warmup batches, batches are
counted for --seconds while a sampler thread records the RSS of the main process and of every worker.
The CPU time of all processes per frame gives the machine-independent cost (other jobs on a shared machine slow
the wall clock, not this). Target: >= 1000 frames/s at 224 px with 2 workers.

With --dataset DIR a recording is read instead, as the default model's recipe reads it (`clearvla sim record`
output: --cameras, the robot state, 8-step chunks, attention masks, a 64-episode shuffle buffer), at its image size.

Run: .venv/bin/python benchmarks/data_throughput.py  ->  benchmarks/results/data_throughput.json
     .venv/bin/python benchmarks/data_throughput.py --dataset runs/data/workcell_train_4k_cams --size 128
       --buffer-episodes 64  ->  benchmarks/results/data_throughput_recording.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from common import write_result

from clearvla.data.episode import Episode
from clearvla.data.formats.lerobot import LeRobotWriter
from clearvla.data.loader import make_dataloader
from clearvla.data.mixture import Mixture
from clearvla.models.processor import ImageProcessor
from clearvla.models.tokenizer import build_tiny_tokenizer
from clearvla.models.vision import IMAGENET_MEAN, IMAGENET_STD

TASKS = ["pick up the red block", "put the green cube in the left bin", "stack the blue ring on the peg", "push the yellow box"]


def scene(t: int, episode: int, size: int) -> np.ndarray:
    """A clean render-like frame: shaded table, two moving blocks, a gripper bar ([size, size, 3] uint8)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.stack([90 + 60 * y, 80 + 50 * y + 20 * x, 70 + 30 * x], -1)
    rng = np.random.default_rng(episode)
    for colour, speed in ((rng.uniform(60, 255, 3), 0.004), (rng.uniform(60, 255, 3), -0.003)):
        cx, cy = 0.3 + 0.4 * rng.random() + speed * t, 0.3 + 0.4 * rng.random()
        image[(np.abs(x - cx) < 0.08) & (np.abs(y - cy) < 0.08)] = colour
    image[(np.abs(y - 0.15 - 0.002 * t) < 0.02) & (np.abs(x - 0.5) < 0.25)] = (200, 200, 210)
    return image.clip(0, 255).astype(np.uint8)


def write_dataset(root: Path, episodes: int, steps: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with LeRobotWriter(root, fps=10, robot_type="synthetic") as writer:
        for k in range(episodes):
            actions = rng.normal(0, 0.01, size=(steps, 7)).astype(np.float32)
            actions[:, 6] = np.arange(steps) < steps // 2
            frames = np.stack([scene(t, k, size) for t in range(steps)])
            proprio = rng.normal(size=(steps, 8)).astype(np.float32)
            writer.add_episode(Episode({"image": frames}, actions, TASKS[k % len(TASKS)], proprio))


class RamSampler(threading.Thread):
    """Every `period` s: (seconds since start, RSS of main, summed RSS of its child processes) in MB."""

    def __init__(self, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self.stop = period, [], threading.Event()
        self.me, self.start_time = psutil.Process(), time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            children = 0
            for child in self.me.children(recursive=True):
                try:
                    children += child.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((time.perf_counter() - self.start_time, self.me.memory_info().rss / 2**20, children / 2**20))
            self.stop.wait(self.period)


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU seconds of (this process, its live children: the loader's workers)."""
    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    me = psutil.Process()
    return used(me), sum(used(child) for child in me.children(recursive=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--buffer-episodes", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10, help="batches before timing starts")
    parser.add_argument("--seconds", type=float, default=40.0, help="timed duration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", type=Path, help="read this recording instead of a synthetic dataset")
    parser.add_argument("--cameras", nargs="+", default=["image", "wrist_image"], help="--dataset: cameras to read")
    parser.add_argument("--main-threads", type=int, default=0, help="torch threads of the main process (0: torch's default)")
    args = parser.parse_args()
    if args.main_threads:
        torch.set_num_threads(args.main_threads)

    with tempfile.TemporaryDirectory(prefix="clearvla-bench-") as tmp:
        root, start = args.dataset or Path(tmp) / "synthetic", time.perf_counter()
        if args.dataset is None:
            write_dataset(root, args.episodes, args.steps, args.size, args.seed)
        write_s = time.perf_counter() - start
        video_mb = sum(p.stat().st_size for p in root.rglob("*.mp4")) / 2**20
        mixture = Mixture.build([root], val_fraction=0.0, seed=args.seed, cache_dir=Path(tmp) / "cache")
        processor = ImageProcessor(args.size, (IMAGENET_MEAN, (0.5, 0.5, 0.5)), (IMAGENET_STD, (0.5, 0.5, 0.5)))
        recording = {} if args.dataset is None else dict(cameras=tuple(args.cameras), proprio=True, action_chunk=8,
                                                         attention=True)
        loader = make_dataloader(mixture, build_tiny_tokenizer(), processor, batch_size=args.batch_size,
                                 num_workers=args.workers, seed=args.seed, buffer_episodes=args.buffer_episodes,
                                 **recording)
        sampler = RamSampler()
        sampler.start()
        batches = iter(loader)
        for _ in range(args.warmup):
            next(batches)
        load_before = os.getloadavg()[0]
        cpu0, t0, frames, per_second = cpu_seconds(), time.perf_counter(), 0, []
        mark, mark_frames = t0, 0
        while time.perf_counter() - t0 < args.seconds:
            batch = next(batches)
            frames += len(batch["input_ids"])
            now = time.perf_counter()
            if now - mark >= 5.0:
                per_second.append(round((frames - mark_frames) / (now - mark), 1))
                mark, mark_frames = now, frames
        elapsed, cpu1 = time.perf_counter() - t0, cpu_seconds()
        sampler.stop.set()
        sampler.join()
        shape = list(batch["pixel_values"].shape)
        del batches, loader

    samples = np.array(sampler.samples)
    total = samples[:, 1] + samples[:, 2]
    timed = np.flatnonzero(samples[:, 0] >= samples[-1, 0] - elapsed)
    first, last = total[timed[: len(timed) // 3]].mean(), total[timed[-(len(timed) // 3) :]].mean()
    main_ms, workers_ms = (1000 * (b - a) / frames for a, b in zip(cpu0, cpu1))
    cpu_ms = main_ms + workers_ms
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "dataset": {"frames": args.episodes * args.steps, "video_mb": round(video_mb, 1), "write_s": round(write_s, 1),
                    "write_frames_per_s": round(args.episodes * args.steps / write_s, 1)} if args.dataset is None else
                   {"path": str(args.dataset), "episodes": len(mixture.members[0].train), "video_mb": round(video_mb, 1)},
        "pixel_values_shape": shape,
        "main_torch_threads": torch.get_num_threads(),
        "frames_per_s": round(frames / elapsed, 1),
        "frames_per_s_every_5s": per_second,
        "cpu_ms_per_frame_all_processes": round(cpu_ms, 3),
        "cpu_ms_per_frame_main_workers": [round(main_ms, 3), round(workers_ms, 3)],
        "frames_per_s_capacity_on_all_cores": round(1000 * os.cpu_count() / cpu_ms, 1),
        "load_average_1min_before_timing": round(load_before, 2),
        "ram_mb": {
            "main_final": round(float(samples[-1, 1]), 1),
            "workers_final": round(float(samples[-1, 2]), 1),
            "total_peak": round(float(total.max()), 1),
            "total_first_third_of_timing": round(float(first), 1),
            "total_last_third_of_timing": round(float(last), 1),
        },
        "ram_timeline_s_main_workers_mb": [[round(float(v), 1) for v in row] for row in samples[:: max(1, len(samples) // 40)]],
    }
    path = write_result("data_throughput" if args.dataset is None else "data_throughput_recording", result)
    ram = result["ram_mb"]
    print("| metric | value |\n|---|---|")
    print(f"| frames/s ({args.workers} workers, {args.size} px, batch {args.batch_size}, augmented) | {result['frames_per_s']} |")
    print(f"| frames/s every 5 s | {', '.join(map(str, per_second))} |")
    print(f"| CPU ms per frame, all processes (main + workers) | {result['cpu_ms_per_frame_all_processes']} "
          f"({main_ms:.2f} + {workers_ms:.2f}) |")
    print(f"| frames/s capacity if all {os.cpu_count()} cores were free | {result['frames_per_s_capacity_on_all_cores']} |")
    print(f"| load average before timing (other jobs) | {result['load_average_1min_before_timing']} |")
    print(f"| RSS main / workers at end (MB) | {ram['main_final']} / {ram['workers_final']} |")
    print(f"| RSS total (main + workers), first -> last third of timing (MB) | {ram['total_first_third_of_timing']} -> "
          f"{ram['total_last_third_of_timing']} (peak {ram['total_peak']}) |")
    if args.dataset is None:
        print(f"| dataset: frames, mp4 MB, write frames/s | {args.episodes * args.steps}, {result['dataset']['video_mb']}, "
              f"{result['dataset']['write_frames_per_s']} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
