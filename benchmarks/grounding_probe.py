"""Does a checkpoint find the part the words name? Failure modes by how the instruction names the part, and with
the part's colour added. A diagnostic for issue #6.

The same train-suite episodes are played twice: with their instructions, and with the named part's colour added
where the instruction does not give it ("lift the medium bolt" -> "lift the medium blue bolt"). Each failure gets
its mode (`clearvla.sim.failure`: `wrong_part` is a grounding error). Reported per reference type: what the
instruction uses besides the part's kind (nothing, colour, size, a relation to another object) and whether the
scene holds another part of that kind.

Run: .venv/bin/python benchmarks/grounding_probe.py [--checkpoint DIR] [--start 4000] [--episodes 100]
  ->  benchmarks/results/grounding_probe.json
With `--reports R1 R2 ...` (`clearvla eval --suite train` output directories) nothing is played: each report's
episodes, as recorded, are broken down by reference type side by side (1,000 episodes of an evaluation already run
instead of 100 more), -> benchmarks/results/grounding_reports.json (or --name).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import torch
from common import write_result

from clearvla.assets import default_model_dir
from clearvla.infer.policy import VLAPolicy
from clearvla.models.vla import VLA
from clearvla.sim import suites
from clearvla.sim.env import WorkcellEnv, policy_cameras
from clearvla.sim.failure import FAILURE_MODES, GripperTrace
from clearvla.scene.language import train_wording
from clearvla.sim.rollout import run_episode
from clearvla.sim.sampling import EpisodeSetup


def reference_type(setup: EpisodeSetup) -> str:
    """What the instruction names the part by besides its kind, and "(kind shared)" when another part has it."""
    ref = setup.parse["object"]
    used = [key for key in ("colour", "size", "relation") if ref.get(key)]
    shared = sum(o.category == "part" and o.kind == ref["kind"] for o in setup.scene.objects) > 1
    return (" + ".join(used) or "kind only") + (" (kind shared)" if shared else "")


def with_colour(setup: EpisodeSetup) -> str:
    """The instruction with the named part's colour before its kind word (unchanged when it names the colour)."""
    ref = setup.parse["object"]
    if ref.get("colour"):
        return setup.instruction
    colour = next(o.colour for o in setup.scene.objects if o.name == setup.task.obj)
    kind = train_wording("kind", ref["kind"])
    return re.sub(rf"\b{kind}\b", f"{train_wording('colour', colour)} {kind}", setup.instruction, count=1)


def from_reports(reports: list[str], name: str = "grounding_reports") -> None:
    """Success and `wrong_part` per reference type for the train-suite episodes of evaluation reports."""
    outcomes: dict[str, dict[str, Counter]] = {}
    for report in reports:
        suite = json.loads(Path(report, "report.json").read_text())["suites"][0]
        if suite["suite"] != "train":
            raise SystemExit(f"{report}: a {suite['suite']} evaluation; reference types are for the train suite")
        by_type: dict[str, Counter] = defaultdict(Counter)
        for r in suite["results"]:
            setup = suites.setup(suites.episode("train", r["index"]))
            for kind in ("all", reference_type(setup)):
                by_type[kind]["episodes"] += 1
                by_type[kind]["success" if r["success"] else r["failure"]] += 1
        outcomes[report] = by_type
    first = outcomes[reports[0]]
    kinds = sorted({k for t in outcomes.values() for k in t}, key=lambda k: (k != "all", -first[k]["episodes"]))
    print("| names the part by | episodes | " + " | ".join(f"{r}: success / wrong_part" for r in reports) + " |")
    print("|---|---|" + "---|" * len(reports))
    for kind in kinds:
        cells = " | ".join(f"{outcomes[r][kind]['success']} / {outcomes[r][kind]['wrong_part']}" for r in reports)
        print(f"| {kind} | {first[kind]['episodes']} | {cells} |")
    path = write_result(name, {r: {k: dict(c) for k, c in t.items()} for r, t in outcomes.items()})
    print(f"\n{path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(default_model_dir()))
    parser.add_argument("--start", type=int, default=4000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--reports", nargs="+", help="evaluation output directories to break down instead of playing")
    parser.add_argument("--name", default="grounding_reports", help="--reports: result file name")
    args = parser.parse_args()
    if args.reports:
        return from_reports(args.reports, args.name)

    torch.set_num_threads(1)
    vla = VLA.from_pretrained(args.checkpoint)
    policy = VLAPolicy(vla)
    env = WorkcellEnv("train", image_size=vla.config.image_sizes[0], cameras=policy_cameras(vla.config.cameras))
    variants = {"as recorded": lambda s: s.instruction, "colour named": with_colour}
    outcomes: dict[str, dict[str, Counter]] = {v: defaultdict(Counter) for v in variants}
    for index in range(args.start, args.start + args.episodes):
        spec = suites.episode("train", index)
        setup = suites.setup(spec)
        for variant, text in variants.items():
            policy.instruction = text(setup)
            trace = GripperTrace()
            rollout = run_episode(env, policy, spec, record=False, on_step=lambda o, i: trace.observe(env.world))
            outcome = trace.failure_mode(setup.task, rollout.success) or "success"
            outcomes[variant][reference_type(setup)][outcome] += 1
            outcomes[variant]["all"][outcome] += 1
        print(index, {v: dict(c["all"]) for v, c in outcomes.items()}, flush=True)

    columns = ["success", *FAILURE_MODES]
    print("\n| instruction | names the part by | episodes | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for variant, by_type in outcomes.items():
        for kind, counts in sorted(by_type.items(), key=lambda kv: (kv[0] != "all", -sum(kv[1].values()))):
            print(f"| {variant} | {kind} | {sum(counts.values())} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    path = write_result("grounding_probe", {
        "checkpoint": args.checkpoint, "suite": "train", "start": args.start, "episodes": args.episodes,
        "outcomes": {v: {k: dict(c) for k, c in by_type.items()} for v, by_type in outcomes.items()},
    })
    print(f"\n{path}")


if __name__ == "__main__":
    main()
