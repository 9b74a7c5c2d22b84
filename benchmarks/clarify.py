"""Asking when unclear (issue 9): four ways to handle an instruction, on the `ambiguous` suite and on clear ones.

  none         act on the instruction as given (OpenVLA's behaviour, the baseline)
  grounding    ground it in the scene; ask whenever two or more parts fit the words
  uncertainty  no grounding: ask the user to rephrase when the policy's uncertainty (token models: the action tokens'
               entropy; chunk models: the chunk's spread over augmented views) is above the 95th percentile of clear
               instructions (so about 5% false asks by construction)
  conformal    grounding + the VLA's scores + a KnowNo conformal prediction set at miss rate epsilon

A simulated user (`OracleUser`) answers from ground truth. Decisions use the first observation of each episode;
with --rollouts every distinct instruction an episode ends up executing is played closed-loop once (deterministic,
so conditions share rollouts), giving task success, and the same episode with the simulator's unambiguous wording
is the reference. Calibration uses episodes after the test ones (ambiguous suite for the conformal threshold, train
suite for the entropy threshold). Writes benchmarks/results/clarify.json and clarify.png (success vs help rate).

usage: python benchmarks/clarify.py --checkpoint DIR [--episodes 40] [--calibration 60] [--clear-episodes 40] [--rollouts]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from clearvla.clarify import Clarifier, ConformalCalibrator, OracleUser  # noqa: E402
from clearvla.clarify.calibrate import evaluate as coverage_of  # noqa: E402
from clearvla.clarify.scoring import VLAScorer  # noqa: E402
from clearvla.eval.stats import exact_mcnemar, wilson_interval  # noqa: E402

EPSILONS = (0.05, 0.1, 0.2)
CURVE_EPSILONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7)


class NoDetector:
    """Sees no parts: every instruction is ungrounded, so only the scorer's uncertainty can trigger a question."""

    def detect(self, observation, info):
        return []


class RememberingScorer(VLAScorer):
    """A VLAScorer that computes each (observation, instruction)'s uncertainty once: the uncertainty condition and
    the AUROC read the same values (observations are the cases', alive for the whole run, so their ids are keys)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._uncertainty: dict[tuple[int, str], float] = {}

    def uncertainty(self, observation, instruction: str) -> float:
        key = (id(observation), instruction)
        if key not in self._uncertainty:
            self._uncertainty[key] = super().uncertainty(observation, instruction)
        return self._uncertainty[key]


@dataclass
class Case:
    """One episode's first observation and ground truth."""

    suite: str
    index: int
    obs: dict
    info: dict


@dataclass
class Outcome:
    """What one condition did on one episode."""

    instruction: str
    questions: int
    seconds: float
    set_size: int = 1
    covered: bool = True
    success: bool | None = None


@dataclass
class Condition:
    name: str
    outcomes: dict[tuple[str, int], Outcome] = field(default_factory=dict)


def cases(env, suite: str, indices: range) -> list[Case]:
    out = []
    for i in indices:
        obs, info = env.reset(options={"index": i})
        out.append(Case(suite, i, obs, info))
    return out


def decide(clarifier: Clarifier, case: Case, rephrase_with_truth: bool = False) -> Outcome:
    """Run the clarifier with the oracle to the end; the instruction it acts on and what it cost."""
    user = OracleUser.from_info(case.info, seed=case.index)
    start = time.perf_counter()
    dialogue = clarifier.start(case.obs, case.info["instruction"], case.info)
    seconds = time.perf_counter() - start
    while not dialogue.done:
        ask = dialogue.decision
        answer = case.info["unambiguous_instruction"] if (rephrase_with_truth and not ask.options) else user(ask)
        dialogue.reply(answer)
    names = dialogue.prediction_set or []
    covered = case.info["intended_object"] in names if names else True
    return Outcome(dialogue.decision.instruction, dialogue.questions, seconds, max(len(names), 1), covered)


def rollout_success(env, vla, case: Case, instruction: str, cache: dict) -> bool:
    from clearvla.infer.policy import VLAPolicy
    from clearvla.sim import suites
    from clearvla.sim.rollout import run_episode

    key = (case.suite, case.index, instruction)
    if key not in cache:
        policy = VLAPolicy(vla, instruction=instruction)
        cache[key] = run_episode(env, policy, suites.episode(case.suite, case.index), record=False).success
    return cache[key]


def auroc(positives: list[float], negatives: list[float]) -> float:
    """P(a positive scores above a negative), ties counting half: 0.5 is a signal that tells nothing."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def mean_ci95(values: list[float], resamples: int = 2000) -> list[float]:
    """Percentile bootstrap 95% interval of a mean (seeded: one set of values, one interval)."""
    x = np.asarray(values, dtype=np.float64)
    means = x[np.random.default_rng(0).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def rate(flags: list[bool]) -> tuple[float, list[float]]:
    """A rate and its Wilson 95% interval."""
    return float(np.mean(flags)), list(wilson_interval(int(sum(flags)), len(flags)))


def paired(mine: list[bool], theirs: list[bool]) -> dict:
    """Episode by episode against a baseline on the same episodes: where only this condition succeeded (wins), where
    only the baseline did (losses), and the exact McNemar p-value of that split."""
    wins = sum(a and not b for a, b in zip(mine, theirs))
    losses = sum(b and not a for a, b in zip(mine, theirs))
    return {"wins": wins, "losses": losses, "mcnemar_p": exact_mcnemar(wins, losses)}


def resampled_coverage(scores: list, truth: list[int], epsilon: float, splits: int = 1000) -> dict:
    """Held-out coverage and set size averaged over `splits` random halvings of the scored episodes into calibration
    and test (seeded). One split's coverage swings by about sqrt(eps (1 - eps) / n) (4 points at 100 episodes and
    eps 0.2); the mean over splits is the estimate to hold against 1 - eps, the 2.5-97.5th percentiles show the swing."""
    rng = np.random.default_rng(0)
    half = len(scores) // 2
    covered, sizes = [], []
    for _ in range(splits):
        order = rng.permutation(len(scores))
        cal, test = order[:half], order[half:]
        calibrator = ConformalCalibrator.fit([scores[i] for i in cal], [truth[i] for i in cal], epsilon)
        held_out = coverage_of(calibrator, [scores[i] for i in test], [truth[i] for i in test])
        covered.append(held_out["coverage"])
        sizes.append(held_out["mean_set_size"])
    return {"coverage": float(np.mean(covered)), "coverage_range95": [float(np.quantile(covered, 0.025)), float(np.quantile(covered, 0.975))],
            "mean_set_size": float(np.mean(sizes)), "splits": splits, "calibration": half, "test": len(scores) - half}


def summarise(condition: Condition, keys: list[tuple[str, int]]) -> dict:
    rows = [condition.outcomes[k] for k in keys]
    questions, set_sizes = [r.questions for r in rows], [r.set_size for r in rows]
    (asked, asked_ci), (covered, covered_ci) = rate([r.questions > 0 for r in rows]), rate([r.covered for r in rows])
    seconds = [r.seconds for r in rows]
    out = {
        "episodes": len(rows),
        "questions_per_episode": float(np.mean(questions)),
        "questions_per_episode_ci95": mean_ci95(questions),
        "asked_rate": asked,
        "asked_rate_ci95": asked_ci,
        "mean_set_size": float(np.mean(set_sizes)),
        "mean_set_size_ci95": mean_ci95(set_sizes),
        "coverage": covered,
        "coverage_ci95": covered_ci,
        "latency_ms_p50": 1000 * float(np.median(seconds)),
        "latency_ms_p90": 1000 * float(np.quantile(seconds, 0.9)),
    }
    if rows and rows[0].success is not None:
        wins = sum(bool(r.success) for r in rows)
        out["success"] = wins / len(rows)
        out["success_ci95"] = list(wilson_interval(wins, len(rows)))
    return out


def main() -> None:
    import torch

    from clearvla.models.vla import VLA
    from clearvla.sim.env import WorkcellEnv

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=40, help="ambiguous test episodes (0..N-1)")
    parser.add_argument("--calibration", type=int, default=60, help="ambiguous calibration episodes (after the test ones)")
    parser.add_argument("--clear-episodes", type=int, default=40, help="train-suite episodes for false asks")
    parser.add_argument("--rollouts", action="store_true", help="play the chosen instructions closed-loop for task success")
    parser.add_argument("--temperature", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)

    vla = VLA.from_pretrained(args.checkpoint).eval()
    size, wrist = vla.processor.image_size, "wrist_image" in vla.config.cameras
    envs = {s: WorkcellEnv(s, image_size=size, wrist_camera=wrist) for s in ("ambiguous", "train")}
    scorer = RememberingScorer(vla, temperature=args.temperature)
    test = cases(envs["ambiguous"], "ambiguous", range(args.episodes))
    calib = cases(envs["ambiguous"], "ambiguous", range(args.episodes, args.episodes + args.calibration))
    clear = cases(envs["train"], "train", range(args.clear_episodes))
    clear_calib = cases(envs["train"], "train", range(1000, 1000 + args.clear_episodes))

    # conformal thresholds from the calibration split
    full = Clarifier(scorer)
    cal_scores, cal_truth = [], []
    for case in calib:
        grounding, scores = full.interpret(case.obs, case.info["instruction"], case.info)
        cal_scores.append(scores)
        cal_truth.append(grounding.candidates.index(case.info["intended_object"]))
    calibrators = {eps: ConformalCalibrator.fit(cal_scores, cal_truth, eps) for eps in sorted(set(EPSILONS + CURVE_EPSILONS))}
    # uncertainty threshold: 95th percentile on clear calibration instructions
    clear_uncertainty = [scorer.uncertainty(c.obs, c.info["instruction"]) for c in clear_calib]
    uncertainty_threshold = float(np.quantile(clear_uncertainty, 0.95))

    clarifiers = {
        "none": None,
        "grounding": Clarifier(),
        "uncertainty": Clarifier(scorer, detector=NoDetector(), uncertainty_threshold=uncertainty_threshold, max_turns=1),
        **{f"conformal@{eps}": Clarifier(scorer, calibrator=calibrators[eps]) for eps in calibrators},
    }
    conditions = {name: Condition(name) for name in clarifiers}
    everything = test + clear
    for name, clarifier in clarifiers.items():
        for case in everything:
            conditions[name].outcomes[(case.suite, case.index)] = (
                Outcome(case.info["instruction"], 0, 0.0) if clarifier is None
                else decide(clarifier, case, rephrase_with_truth=name == "uncertainty")
            )
        print(f"decided: {name}", flush=True)

    # held-out coverage of the raw prediction sets (before any question is answered)
    test_scores = [full.interpret(c.obs, c.info["instruction"], c.info) for c in test]
    truth = [g.candidates.index(c.info["intended_object"]) for (g, _), c in zip(test_scores, test)]
    coverage = {}
    for eps in EPSILONS:
        held_out = coverage_of(calibrators[eps], [s for _, s in test_scores], truth)
        hits = round(held_out["coverage"] * len(truth))
        coverage[str(eps)] = {"target": 1 - eps, **held_out, "coverage_ci95": list(wilson_interval(hits, len(truth))),
                              "resampled": resampled_coverage(cal_scores + [s for _, s in test_scores], cal_truth + truth, eps)}

    reference = {}
    if args.rollouts:
        cache: dict = {}
        for case in test:
            reference[case.index] = rollout_success(envs["ambiguous"], vla, case, case.info["unambiguous_instruction"], cache)
        for condition in conditions.values():
            for case in test:
                outcome = condition.outcomes[(case.suite, case.index)]
                outcome.success = rollout_success(envs["ambiguous"], vla, case, outcome.instruction, cache)
        print(f"rollouts: {len(cache)} distinct", flush=True)

    ambiguous_keys = [(c.suite, c.index) for c in test]
    clear_keys = [(c.suite, c.index) for c in clear]
    results = {
        name: {"ambiguous": summarise(cond, ambiguous_keys),
               "clear": dict(zip(("false_ask_rate", "false_ask_ci95"), rate([cond.outcomes[k].questions > 0 for k in clear_keys])),
                             episodes=len(clear_keys))}
        for name, cond in conditions.items()
    }
    payload = {
        "checkpoint": str(args.checkpoint),
        "episodes": {"ambiguous_test": args.episodes, "ambiguous_calibration": args.calibration, "clear": args.clear_episodes},
        "uncertainty": {"measure": "action-token entropy" if vla.action_head is None else "chunk spread over augmented views",
                        "threshold": uncertainty_threshold,
                        "clear_calibration_median": float(np.median(clear_uncertainty)),
                        "auroc_ambiguous_vs_clear": auroc([scorer.uncertainty(c.obs, c.info["instruction"]) for c in test],
                                                          [scorer.uncertainty(c.obs, c.info["instruction"]) for c in clear])},
        "coverage": coverage,
        "conditions": results,
    }
    if reference:
        wins = sum(reference.values())
        payload["unambiguous_reference"] = {"success": wins / len(reference), "success_ci95": list(wilson_interval(wins, len(reference)))}
        baselines = {"none": [conditions["none"].outcomes[k].success for k in ambiguous_keys],
                     "unambiguous_reference": [reference[c.index] for c in test]}
        for name, cond in conditions.items():
            mine = [cond.outcomes[k].success for k in ambiguous_keys]
            results[name]["ambiguous"]["paired"] = {base: paired(mine, theirs) for base, theirs in baselines.items()}
    print(f"wrote {write_result('clarify', payload)}")
    if args.rollouts:
        plot(results, payload.get("unambiguous_reference"))


def plot(results: dict, reference: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    curve = sorted((r["ambiguous"]["asked_rate"], r["ambiguous"]["success"]) for n, r in results.items() if n.startswith("conformal@"))
    ax.plot(*zip(*curve), "o-", label="grounding + VLA scores + conformal (ε sweep)")
    for name, marker in (("none", "s"), ("grounding", "^"), ("uncertainty", "D")):
        if name not in results:
            continue
        r = results[name]["ambiguous"]
        ax.plot(r["asked_rate"], r["success"], marker, markersize=9, label=name)
    if reference:
        ax.axhline(reference["success"], color="grey", ls="--", label="unambiguous wording (reference)")
    ax.set_xlabel("help rate (episodes with a question)")
    ax.set_ylabel("task success on `ambiguous`")
    ax.set_xlim(-0.05, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "clarify.png", dpi=120)


if __name__ == "__main__":
    main()
