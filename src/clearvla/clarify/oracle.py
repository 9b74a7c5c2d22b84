"""A simulated user for benchmarks: answers clarifying questions from the simulator's ground truth.

The oracle knows the intended part (`info["intended_object"]`) and the scene (`info["objects"]`). Asked an `Ask`,
it picks the option meaning the intended part, or, with probability `wrong_rate`, a different option (a wrong but
valid answer, as a distracted operator gives). It answers as a choice index, as free text describing the part by
what tells it apart from the other options, worked out from the ground truth rather than copied from the option
labels ("the red one", "I mean the one next to the tray"), or either at random. All draws come from one generator seeded at construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from clearvla.errors import ConfigError, InputError
from clearvla.scene.objects import ObjectSpec, SceneObject

from clearvla.clarify import features as ft
from clearvla.clarify.ask import Answer, Ask
from clearvla.clarify.ground import to_spec

STYLES: tuple[str, ...] = ("choice", "text", "mixed")
NONE_ANSWER = "none of those"
_FRAMES: tuple[str, ...] = ("{d}", "I mean {d}", "{d}, please", "it's {d}")


class OracleUser:
    """Answers questions about `intended` in the scene `objects`.

    wrong_rate: probability in [0, 1] of answering with another option (needs two or more options).
    style:      "choice" (0-based option index), "text" (free text), or "mixed" (either, half the time each).
    seed:       seeds every random draw; the same seed and questions give the same answers.
    """

    def __init__(
        self,
        intended: str,
        objects: Sequence[ObjectSpec | SceneObject],
        *,
        wrong_rate: float = 0.0,
        style: str = "choice",
        seed: int = 0,
    ) -> None:
        if not 0.0 <= wrong_rate <= 1.0:
            raise ConfigError(f"wrong_rate must be in [0, 1], got {wrong_rate!r}")
        if style not in STYLES:
            raise ConfigError(f"unknown oracle style {style!r}; valid styles: {', '.join(STYLES)}")
        self.objects = [to_spec(o) for o in objects]
        if intended not in {o.name for o in self.objects}:
            raise InputError(f"intended object {intended!r} is not in the scene")
        self.intended, self.wrong_rate, self.style = intended, float(wrong_rate), style
        self.rng = np.random.default_rng(seed)
        self.wrong_answers = 0  # how many answers so far pointed at another part

    @classmethod
    def from_info(cls, info: Mapping[str, Any], **kwargs: Any) -> OracleUser:
        """The oracle of an env episode: intended part and scene from the env info."""
        return cls(info["intended_object"], info["objects"], **kwargs)

    def __call__(self, ask: Ask) -> Answer:
        return self.answer(ask)

    def choose(self, ask: Ask) -> str | None:
        """The candidate the oracle will answer with (None: the intended part is not among the options)."""
        if self.intended not in ask.candidates:
            return None
        others = [c for c in ask.candidates if c != self.intended]
        if others and self.rng.random() < self.wrong_rate:
            self.wrong_answers += 1
            return others[int(self.rng.integers(len(others)))]
        return self.intended

    def answer(self, ask: Ask) -> Answer:
        """An answer to `ask`: an option index, free text, or NONE_ANSWER when the intended part is not offered."""
        pick = self.choose(ask)
        if pick is None:
            return NONE_ANSWER
        style = self.style if self.style != "mixed" else ("choice", "text")[int(self.rng.integers(2))]
        index = list(ask.candidates).index(pick)
        if style == "choice":
            return index
        return self.describe(pick, ask) or f"option {index + 1}"

    def describe(self, name: str, ask: Ask) -> str | None:
        """Free text picking `name` out of the options of `ask`, from ground truth; None when no attribute does."""
        by_name = {o.name: o for o in self.objects}
        group = [by_name[c] for c in ask.candidates]
        combo = ft.separating(by_name[name], group, self.objects)
        if combo is None:
            return None
        kinds = {o.kind for o in group}
        noun = "one" if len(kinds) == 1 and self.rng.random() < 0.7 else None
        text = ft.describe(by_name[name], combo, self.objects, noun=noun)
        return _FRAMES[int(self.rng.integers(len(_FRAMES)))].format(d=text)
