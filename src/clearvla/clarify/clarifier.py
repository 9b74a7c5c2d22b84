"""The `Clarifier`: instruction + observation -> act on an unambiguous instruction, or ask a question first.

    parse (parse.py) -> ground against the detected scene (ground.py) -> score each interpretation (a `Scorer`)
    -> keep the conformal prediction set (calibrate.py) -> one left: `Act`; several: `Ask` (ask.py)

Without a calibrator every grounded candidate stays in the set, so the clarifier asks whenever the scene has two
or more parts fitting the words (grounding-only mode). When the instruction cannot be grounded (no known part
named, or the detector sees no parts), the scorer's plain `uncertainty` decides: above `uncertainty_threshold` the
clarifier asks the user to rephrase (options empty, free-text answer), else it acts on the instruction as given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clearvla.errors import ConfigError, InputError

from clearvla.clarify.ask import Act, Answer, Ask, Conversation
from clearvla.clarify.calibrate import ConformalCalibrator
from clearvla.clarify.ground import Detector, Grounding, GroundTruthDetector, ground
from clearvla.clarify.parse import ParseError, parse

Decision = Act | Ask
Observation = Mapping[str, Any]  # the env / robot observation: {"image": [H, W, 3] uint8, ...}
REPHRASE = "I could not tell which part you mean in {instruction!r}. Could you say it another way?"


class Scorer(Protocol):
    """Confidence in each interpretation, e.g. from the VLA's action-token distributions."""

    def score(self, observation: Observation | None, instruction: str, interpretations: Sequence[str]) -> np.ndarray:
        """[K] float in [0, 1], summing to 1: how likely each interpretation (an instruction) is what
        `instruction` means in this observation."""
        ...

    def uncertainty(self, observation: Observation | None, instruction: str) -> float:
        """How unsure the policy is about acting on `instruction` at all (higher: less sure), used when the
        instruction cannot be grounded; e.g. the entropy of the first action tokens."""
        ...


class UniformScorer:
    """Grounding-only mode: every interpretation equally likely, and no uncertainty signal (always 0)."""

    def score(self, observation: Observation | None, instruction: str, interpretations: Sequence[str]) -> np.ndarray:
        return np.full(len(interpretations), 1.0 / len(interpretations))

    def uncertainty(self, observation: Observation | None, instruction: str) -> float:
        return 0.0


def checked_scores(scores: Any, k: int) -> np.ndarray:
    """A scorer's output as [k] float64, after checking the Scorer contract."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (k,) or not np.all(np.isfinite(s)) or s.min() < -1e-9 or s.max() > 1 + 1e-9 or abs(s.sum() - 1) > 1e-4:
        raise ValueError(f"a Scorer must return [{k}] scores in [0, 1] summing to 1, got {scores!r}")
    return np.clip(s, 0.0, 1.0)


@dataclass
class Dialogue:
    """One instruction's clarification. `decision` is the current Act or Ask; `reply(answer)` advances it.
    `grounding` and `scores` ([K], aligned with grounding.interpretations) are None when ungrounded;
    `prediction_set` names the candidates kept by calibration; `questions` counts the questions asked."""

    clarifier: Clarifier
    observation: Observation | None
    info: Mapping[str, Any] | None
    instruction: str
    decision: Decision
    grounding: Grounding | None = None
    scores: np.ndarray | None = None
    prediction_set: list[str] = field(default_factory=list)
    conversation: Conversation | None = None
    questions: int = 0
    history: list[tuple[Ask, Answer]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return isinstance(self.decision, Act)

    def reply(self, answer: Answer) -> Decision:
        """Give the user's answer (option index or free text) to the pending question; returns the next decision."""
        if not isinstance(self.decision, Ask):
            raise InputError("there is no pending question to answer")
        self.history.append((self.decision, answer))
        if self.conversation is not None:
            self.decision = self.conversation.reply(answer)
        else:  # a rephrase request: the answer is a new instruction
            turns_left = self.clarifier.max_turns - self.questions
            retry = self.clarifier._decide(self.observation, str(answer), self.info, turns_left) if isinstance(answer, str) else None
            if retry is None or retry.grounding is None:
                self.decision = Act(self.instruction, None, False, "ungrounded")
            else:
                self.grounding, self.scores, self.prediction_set = retry.grounding, retry.scores, retry.prediction_set
                self.conversation, self.decision = retry.conversation, retry.decision
        self.questions += isinstance(self.decision, Ask)
        return self.decision


class Clarifier:
    """Decides whether an instruction is clear enough to act on, and asks when it is not.

    scorer:                confidence per interpretation (default: UniformScorer, grounding only).
    detector:              the scene's objects (default: GroundTruthDetector, reading info["objects"]).
    calibrator:            a fitted ConformalCalibrator; None keeps every grounded candidate (ask on any ambiguity).
    max_turns:             most questions per instruction (0: never ask; act on the top-scored interpretation).
    uncertainty_threshold: ungrounded instructions with scorer.uncertainty above it get a rephrase question;
                           None never asks about them.
    """

    def __init__(
        self,
        scorer: Scorer | None = None,
        detector: Detector | None = None,
        calibrator: ConformalCalibrator | None = None,
        *,
        max_turns: int = 2,
        uncertainty_threshold: float | None = None,
    ) -> None:
        if not isinstance(max_turns, int) or max_turns < 0:
            raise ConfigError(f"max_turns must be an integer >= 0, got {max_turns!r}")
        self.scorer = scorer or UniformScorer()
        self.detector = detector or GroundTruthDetector()
        self.calibrator = calibrator
        self.max_turns = max_turns
        self.uncertainty_threshold = uncertainty_threshold

    def interpret(
        self, observation: Observation | None, instruction: str, info: Mapping[str, Any] | None = None
    ) -> tuple[Grounding, np.ndarray] | None:
        """Grounding and scores [K] of an instruction, or None when it cannot be grounded. This is what a
        calibration split records (with the index of info["intended_object"] among grounding.candidates)."""
        try:
            referent = parse(instruction)
        except ParseError:
            return None
        objects = self.detector.detect(observation, info)
        if not any(o.category == "part" for o in objects):
            return None
        grounding = ground(referent, objects)
        texts = [i.instruction for i in grounding.interpretations]
        scores = np.ones(1) if len(texts) == 1 else checked_scores(self.scorer.score(observation, instruction, texts), len(texts))
        return grounding, scores

    def _decide(self, observation: Observation | None, instruction: str, info: Mapping[str, Any] | None, max_turns: int) -> Dialogue:
        interpreted = self.interpret(observation, instruction, info)
        if interpreted is None:
            ask_first = self.uncertainty_threshold is not None and max_turns > 0
            if ask_first and self.scorer.uncertainty(observation, instruction) > self.uncertainty_threshold:  # type: ignore[operator]
                decision: Decision = Ask(REPHRASE.format(instruction=instruction), ())
            else:
                decision = Act(instruction, None, False, "ungrounded")
            return Dialogue(self, observation, info, instruction, decision)
        grounding, scores = interpreted
        names = grounding.candidates
        kept = list(range(len(names))) if self.calibrator is None else [int(i) for i in self.calibrator.predict(scores)]
        in_play = [names[i] for i in kept]
        conversation = Conversation(grounding, in_play, dict(zip(names, scores.tolist())), max_turns)
        decision = conversation.start("clear" if len(names) == 1 else "calibrated")
        return Dialogue(self, observation, info, instruction, decision, grounding, scores, in_play, conversation)

    def start(self, observation: Observation | None, instruction: str, info: Mapping[str, Any] | None = None) -> Dialogue:
        """Begin clarifying `instruction`; the returned dialogue's `decision` is an Act or the first Ask."""
        dialogue = self._decide(observation, instruction, info, self.max_turns)
        dialogue.questions = int(isinstance(dialogue.decision, Ask))
        return dialogue

    def run(
        self,
        observation: Observation | None,
        instruction: str,
        info: Mapping[str, Any] | None,
        user: Callable[[Ask], Answer],
    ) -> Dialogue:
        """Clarify to the end, asking `user` (e.g. an OracleUser) each question; the result's decision is an Act."""
        dialogue = self.start(observation, instruction, info)
        while isinstance(dialogue.decision, Ask):
            dialogue.reply(user(dialogue.decision))
        return dialogue


def decision_from_json(data: Mapping[str, Any]) -> Decision:
    """Rebuild an Act or Ask from its to_json() form (what a client receives from the server)."""
    if data.get("type") == "act":
        return Act(str(data["instruction"]))
    if data.get("type") == "ask":
        return Ask(str(data["question"]), tuple(str(o) for o in data["options"]))
    raise InputError(f"a decision has type 'act' or 'ask', got {data.get('type')!r}")
