"""Workcell simulator speed: env steps per second (physics + IK + rendering) with no camera, one and two
cameras, at 224² and 128², with the scripted expert acting (so grasps and contacts happen).

Run: MUJOCO_GL=egl .venv/bin/python benchmarks/sim_speed.py  ->  benchmarks/results/sim_speed.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

import mujoco  # noqa: E402

from common import write_result  # noqa: E402

from clearvla.sim.env import WorkcellEnv  # noqa: E402
from clearvla.sim.expert import ScriptedExpert  # noqa: E402
from clearvla.sim.suites import episodes  # noqa: E402

CONFIGS = [
    ("no camera", 224, False, False),
    ("1 camera", 224, True, False),
    ("2 cameras", 224, True, True),
    ("1 camera", 128, True, False),
    ("2 cameras", 128, True, True),
]


def measure(image_size: int, images: bool, wrist: bool, n_episodes: int) -> dict[str, float]:
    """Steps/s over the step() calls of `n_episodes` expert episodes of the train suite; resets timed apart."""
    env = WorkcellEnv("train", image_size=image_size, images=images, wrist_camera=wrist)
    expert = ScriptedExpert(env, seed=0)
    step_time = reset_time = 0.0
    steps = 0
    for spec in episodes("train")[:n_episodes]:
        t0 = time.perf_counter()
        obs, info = env.reset(options={"episode": spec})
        expert.reset()
        reset_time += time.perf_counter() - t0
        done = False
        while not done:
            action = expert(obs, info)
            t0 = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(action)
            step_time += time.perf_counter() - t0
            steps += 1
            done = terminated or truncated
    env.close()
    return {
        "steps": steps,
        "steps_per_s": round(steps / step_time, 1),
        "steps_per_s_with_resets": round(steps / (step_time + reset_time), 1),
        "reset_ms": round(1000 * reset_time / n_episodes, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=8, help="expert episodes per configuration")
    args = parser.parse_args()
    rows = []
    for name, size, images, wrist in CONFIGS:
        row = {"cameras": name, "image_size": size, **measure(size, images, wrist, args.episodes)}
        rows.append(row)
        print(row, flush=True)
    path = write_result("sim_speed", {
        "mujoco": mujoco.__version__, "mujoco_gl": os.environ.get("MUJOCO_GL"), "control_hz": 10,
        "physics_dt": 0.002, "episodes_per_config": args.episodes, "rows": rows,
    })  # fmt: skip
    print("\n| cameras | image | env steps/s | incl. resets | reset (ms) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cameras']} | {r['image_size']}² | {r['steps_per_s']} | {r['steps_per_s_with_resets']} | {r['reset_ms']} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
