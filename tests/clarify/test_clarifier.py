"""The Clarifier acts on clear instructions, asks on ambiguous ones, and with a calibrated scorer asks only when
its prediction set holds several interpretations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from clearvla.clarify import (
    Act,
    Ask,
    Clarifier,
    ConformalCalibrator,
    OracleUser,
    UniformScorer,
    decision_from_json,
    ground,
    parse,
)
from clearvla.clarify.calibrate import evaluate
from clearvla.errors import ConfigError, InputError
from clearvla.sim import suites
from clearvla.sim.env import WorkcellEnv


def _info(s) -> dict:
    return {"objects": list(s.scene.objects), "intended_object": s.intended_object, "instruction": s.instruction}


@pytest.mark.parametrize("suite", [s for s in suites.SUITES if s != "ambiguous"])
def test_clear_instructions_are_acted_on_as_given(setups, suite: str) -> None:
    clarifier = Clarifier()
    for s in setups[suite][:60]:
        d = clarifier.start(None, s.instruction, _info(s))
        assert d.done and d.decision == Act(s.instruction, s.intended_object, True, "clear")
        assert d.questions == 0 and d.prediction_set == [s.intended_object]


@pytest.mark.parametrize(("style", "wrong_rate"), [("choice", 0.0), ("text", 0.0), ("mixed", 0.25)])
def test_ambiguous_instructions_are_asked_about_and_resolved(ambiguous, style: str, wrong_rate: float) -> None:
    clarifier = Clarifier(max_turns=2)
    right, questions = 0, 0
    for s in ambiguous:
        first = clarifier.start(None, s.instruction, _info(s))
        assert isinstance(first.decision, Ask) and set(first.decision.candidates) == set(first.prediction_set)
        oracle = OracleUser(s.intended_object, s.scene.objects, wrong_rate=wrong_rate, style=style, seed=s.spec.index)
        d = clarifier.run(None, s.instruction, _info(s), oracle)
        assert isinstance(d.decision, Act) and d.decision.reason == "answered" and 1 <= d.questions <= 2
        right += d.decision.object == s.intended_object
        questions += d.questions
    if wrong_rate == 0:
        assert right == len(ambiguous)
    else:
        assert abs(right / len(ambiguous) - (1 - wrong_rate)) < 0.08
    assert questions / len(ambiguous) <= 1.2  # the target per ambiguous episode


class NoisyScorer:
    """Test double: puts most mass on the `favourites` interpretation, but on a wrong one a `noise` fraction of
    the time; confidences vary per call. Stands in for the VLA scorer the lead wires later."""

    def __init__(self, favourites: set[str], noise: float, seed: int = 0) -> None:
        self.favourites, self.noise, self.rng = favourites, noise, np.random.default_rng(seed)

    def score(self, observation, instruction: str, interpretations: Sequence[str]) -> np.ndarray:
        good = np.array([t in self.favourites for t in interpretations], dtype=float)
        if self.rng.random() < self.noise:
            good = np.roll(good, 1)
        logits = self.rng.uniform(0.5, 4.0) * good + self.rng.normal(0, 0.5, len(interpretations))
        p = np.exp(logits)
        return p / p.sum()

    def uncertainty(self, observation, instruction: str) -> float:
        return 0.0


def test_calibrated_clarifier_asks_only_when_the_set_is_not_a_singleton(ambiguous) -> None:
    favourites = set()
    for s in ambiguous:
        g = ground(parse(s.instruction), s.scene.objects)
        favourites |= {i.instruction for i in g.interpretations if i.object == s.intended_object}
    scorer = NoisyScorer(favourites, noise=0.1)
    plain = Clarifier(scorer)
    cal_scores, cal_truth = [], []
    for s in ambiguous[:120]:
        grounding, scores = plain.interpret(None, s.instruction, _info(s))
        cal_scores.append(scores)
        cal_truth.append(grounding.candidates.index(s.intended_object))
    calibrator = ConformalCalibrator.fit(cal_scores, cal_truth, epsilon=0.2)
    clarifier = Clarifier(scorer, calibrator=calibrator)
    asked, covered, test_scores, test_truth = 0, 0, [], []
    for s in ambiguous[120:]:
        d = clarifier.start(None, s.instruction, _info(s))
        covered += s.intended_object in d.prediction_set
        asked += isinstance(d.decision, Ask)
        if isinstance(d.decision, Act):
            assert d.decision.reason == "calibrated" and len(d.prediction_set) == 1
        else:
            assert set(d.decision.candidates) == set(d.prediction_set) and len(d.prediction_set) >= 2
        test_scores.append(d.scores)
        test_truth.append(d.grounding.candidates.index(s.intended_object))
    n = len(ambiguous) - 120
    assert covered / n >= 0.8 - 0.1 and 0 < asked < n  # coverage near 1 - epsilon; asks on some, not all
    assert evaluate(calibrator, test_scores, test_truth)["coverage"] == covered / n


def test_scorer_contract_is_checked(ambiguous) -> None:
    class Broken(UniformScorer):
        def score(self, observation, instruction, interpretations):
            return np.ones(len(interpretations))

    s = ambiguous[0]
    with pytest.raises(ValueError, match="summing to 1"):
        Clarifier(Broken()).start(None, s.instruction, _info(s))


def test_ungrounded_instructions_use_the_uncertainty(ambiguous) -> None:
    class Unsure(UniformScorer):
        def uncertainty(self, observation, instruction):
            return 2.0

    s = ambiguous[0]
    d = Clarifier().start(None, "do the usual", _info(s))
    assert d.decision == Act("do the usual", None, False, "ungrounded") and d.grounding is None
    d = Clarifier(Unsure(), uncertainty_threshold=1.0).start(None, "do the usual", _info(s))
    assert isinstance(d.decision, Ask) and d.decision.options == () and "do the usual" in d.decision.question
    follow = d.reply(s.instruction)  # the rephrased instruction is grounded: an ordinary question follows
    assert isinstance(follow, Ask) and d.questions == 2 and d.grounding is not None
    d.reply(d.decision.candidates.index(s.intended_object))
    assert d.decision.object == s.intended_object and d.decision.reason == "answered"
    d = Clarifier(Unsure(), uncertainty_threshold=1.0).start(None, "do the usual", _info(s))
    assert d.reply("just do it") == Act("do the usual", None, False, "ungrounded")
    with pytest.raises(InputError, match="no pending question"):
        d.reply("again")


def test_turn_limits_and_config(ambiguous) -> None:
    s = ambiguous[0]
    d = Clarifier(max_turns=0).start(None, s.instruction, _info(s))
    assert isinstance(d.decision, Act) and d.decision.reason == "max_turns" and not d.decision.resolved
    assert d.decision.object == d.grounding.candidates[0]  # uniform scores: the first candidate
    with pytest.raises(ConfigError, match="max_turns"):
        Clarifier(max_turns=-1)


def test_decisions_round_trip_through_json(ambiguous) -> None:
    s = ambiguous[0]
    ask = Clarifier().start(None, s.instruction, _info(s)).decision
    back = decision_from_json(ask.to_json())
    assert isinstance(back, Ask) and (back.question, back.options) == (ask.question, ask.options)
    assert decision_from_json(Act("lift the nut").to_json()) == Act("lift the nut")
    with pytest.raises(InputError, match="'act' or 'ask'"):
        decision_from_json({"type": "maybe"})


def test_with_the_env_ground_truth() -> None:
    env = WorkcellEnv("ambiguous", images=False)
    try:
        obs, info = env.reset(options={"index": 5})
        d = Clarifier().run(obs, info["instruction"], info, OracleUser.from_info(info, style="text"))
        assert d.decision.object == info["intended_object"] and d.questions == 1
        assert parse(d.decision.instruction).to_dict()["task"] == info["task"]
    finally:
        env.close()
