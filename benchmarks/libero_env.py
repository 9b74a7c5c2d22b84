"""LIBERO simulator speed under OpenVLA's protocol: env steps per second with both 256² cameras rendered,
alone and with our observation preprocessing (rotate, JPEG round trip, Lanczos resize), plus the costs of
building a task's environment and of one reset (hard reset + fixed initial state).

Needs the libero extra: `make libero-env`, then
Run: MUJOCO_GL=egl .venv-libero/bin/python benchmarks/libero_env.py  ->  benchmarks/results/libero_env.json
(skips with a message where LIBERO is not installed, e.g. in the main venv under `make bench`)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

import numpy as np  # noqa: E402

from common import write_result  # noqa: E402

from clearvla.eval import libero  # noqa: E402


def measure(suite_name: str, task_id: int, steps: int, image_size: int) -> dict[str, float]:
    """Seconds to build and reset the task's env, then steps/s over `steps` small random actions."""
    suite = libero.task_suite(suite_name)
    task = suite.get_task(task_id)
    t0 = time.perf_counter()
    env = libero.make_env(task)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    env.seed(libero.ENV_SEED)
    env.reset()
    obs = env.set_init_state(suite.get_task_init_states(task_id)[0])
    reset_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    step_time = prep_time = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        libero.policy_observation(obs, ("image", "wrist_image"), image_size, proprio=True)
        prep_time += time.perf_counter() - t0
        action = np.concatenate([rng.uniform(-0.3, 0.3, 6), [rng.choice([-1.0, 1.0])]])
        t0 = time.perf_counter()
        obs, _, _, _ = env.step(action.tolist())
        step_time += time.perf_counter() - t0
    env.close()
    return {
        "build_env_s": round(build_s, 1),
        "reset_s": round(reset_s, 1),
        "steps": steps,
        "env_steps_per_s": round(steps / step_time, 2),
        "steps_per_s_with_preprocessing": round(steps / (step_time + prep_time), 2),
        "preprocess_ms_per_step": round(1000 * prep_time / steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="libero_spatial", choices=libero.BENCHMARKS)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=224, help="model input size for the preprocessing")
    parser.add_argument("--note", default="", help="conditions worth recording, e.g. other jobs on the machine")
    args = parser.parse_args()
    if importlib.util.find_spec("libero") is None:
        print("skipped: LIBERO extra not installed (make libero-env; run with .venv-libero/bin/python)")
        return
    import mujoco
    import robosuite

    load_before = os.getloadavg()
    result = measure(args.suite, args.task, args.steps, args.image_size)
    path = write_result("libero_env", {
        "suite": args.suite, "task": args.task, "resolution": libero.RESOLUTION, "cameras": 2,
        "mujoco": mujoco.__version__, "robosuite": robosuite.__version__, "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "note": args.note, **result,
    })
    print(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
