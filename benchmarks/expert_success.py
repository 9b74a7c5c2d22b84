"""Scripted-expert success rate per suite and task (the expert must reach >= 98% on every suite).

Run: MUJOCO_GL=egl .venv/bin/python benchmarks/expert_success.py [--episodes 200]
     ->  benchmarks/results/expert_success.json
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

from common import write_result  # noqa: E402

from clearvla.sim.env import WorkcellEnv  # noqa: E402
from clearvla.sim.expert import ScriptedExpert  # noqa: E402
from clearvla.sim.rollout import evaluate  # noqa: E402
from clearvla.sim.suites import SUITES, episodes  # noqa: E402

TASKS = ("pick", "place", "stack", "push")


def run_suite(suite: str, n: int, seed: int) -> dict:
    env = WorkcellEnv(suite, images=False)  # the expert reads ground truth, not pixels
    report = evaluate(env, ScriptedExpert(env, seed=seed), episodes(suite)[:n])
    env.close()
    return report.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200, help="episodes per suite, from index 0")
    parser.add_argument("--seed", type=int, default=0, help="expert noise seed")
    parser.add_argument("--workers", type=int, default=2, help="processes (one suite each at a time)")
    args = parser.parse_args()
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip(SUITES, pool.map(run_suite, SUITES, [args.episodes] * len(SUITES), [args.seed] * len(SUITES))))
    path = write_result("expert_success", {
        "episodes_per_suite": args.episodes, "seed": args.seed, "seconds": round(time.perf_counter() - start, 1),
        "suites": results,
    })  # fmt: skip
    print("| suite | episodes | success | " + " | ".join(TASKS) + " | mean steps |")
    print("|---|---|---|" + "---|" * len(TASKS) + "---|")
    for suite, r in results.items():
        per = r["per_task"]
        tasks = " | ".join(f"{per[t]['success_rate']:.1%}" if t in per else "-" for t in TASKS)
        steps = sum(p["mean_steps"] * p["episodes"] for p in per.values()) / r["episodes"]
        print(f"| {suite} | {r['episodes']} | {r['success_rate']:.1%} | {tasks} | {steps:.1f} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
