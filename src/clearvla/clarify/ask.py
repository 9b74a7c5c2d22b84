"""Clarifying questions, reading answers, and the multi-turn exchange.

`question(group, objects)` builds an `Ask` whose options each describe one candidate by the attributes that tell
it from the others (colour, size, side as seen in the camera, being next to a landmark, a relation to a landmark).
`read_answer(answer, ask, objects)` turns a choice index or free text ("the red one", "2", "the one next to the
tray", "left") into the candidates it fits. A `Conversation` runs the exchange: it asks until one candidate is
left, at most `max_turns` times, and stops after an answer that rules nothing out (or everything), acting then on
the highest-scored candidate still in play.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clearvla.errors import InputError
from clearvla.scene.objects import ObjectSpec

from clearvla.clarify import features as ft
from clearvla.clarify.ground import Grounding
from clearvla.clarify.parse import Description, lexemes, noun_phrases, tokenize

Answer = int | str
ORDINALS: dict[str, int] = {
    "first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5, "1st": 0, "2nd": 1, "3rd": 2,
}  # fmt: skip
NEGATIVE = frozenset({"none", "neither", "nothing", "nope", "dunno", "unsure", "whatever", "any", "either"})
NEAR_WORDS = frozenset({"near", "next", "beside", "by", "closest", "nearest", "close", "nearer", "closer", "against"})
SIDE_WORDS: dict[str, str] = {
    "leftmost": "left", "rightmost": "right", "middle": "middle", "center": "middle", "centre": "middle", "central": "middle",
}  # fmt: skip
BIGGER = frozenset({"bigger", "biggest", "larger", "largest", "huger"})
SMALLER = frozenset({"smaller", "smallest", "littler", "tinier", "tiniest"})
OTHER = "other"  # the option for the one candidate no attribute separates: "the other bolt"
SIZE_ORDER: dict[str, int] = {"small": 0, "medium": 1, "large": 2}


@dataclass(frozen=True)
class Ask:
    """A question with one option per candidate part; `candidates[i]` is the object option i means."""

    question: str
    options: tuple[str, ...]
    candidates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": "ask", "question": self.question, "options": list(self.options)}


@dataclass(frozen=True)
class Act:
    """Go ahead with `instruction` (unambiguous where `resolved`). `object` is the part it means (None when no
    grounding was available); `reason` is one of "clear", "calibrated", "answered", "max_turns",
    "unhelpful_answer", "ungrounded"."""

    instruction: str
    object: str | None = None
    resolved: bool = True
    reason: str = "clear"

    def to_json(self) -> dict[str, Any]:
        return {"type": "act", "instruction": self.instruction}


def _join(options: Sequence[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + ", or " + options[-1]


def question(group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]) -> Ask:
    """Ask which member of `group` (two or more parts) is meant. Options are pairwise different and each one's
    description fits its own candidate only. A single part that no attribute separates is "the other <kind>";
    two or more such parts get "(option k)" appended."""
    assert len(group) >= 2, "a question needs two or more candidates"
    combos: list[tuple[ft.Feature, ...] | None] = list(ft.shared_attribute(group, objects) or [])
    if not combos:
        combos = [ft.separating(o, group, objects) for o in group]
    options = [ft.describe(o, c or (), objects) for o, c in zip(group, combos)]
    if combos.count(None) == 1:  # told apart from the rest only by elimination
        k = combos.index(None)
        options[k] = options[k].replace("the ", f"the {OTHER} ", 1)
    counts = Counter(options)
    options = [f"{t} (option {k + 1})" if counts[t] > 1 else t for k, t in enumerate(options)]
    kinds = {o.kind for o in group}
    noun = ft.describe(group[0], (), objects).removeprefix("the ") if len(kinds) == 1 else "part"
    text = f"Which {noun} do you mean: {_join(options)}?"
    return Ask(text, tuple(options), tuple(o.name for o in group))


def _norm(text: str) -> str:
    return " ".join(w for w, _ in tokenize(text) if w not in ("the", "a", "an", "one", "i", "mean"))


def _constraints(text: str, group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]) -> list[list[ft.Feature] | Description]:
    """What a free-text answer says about the part: each entry is a description (its own kind, colour, size) or a
    list of alternative features (any one may hold, e.g. "next to the bin" when there are two bins)."""
    found, rest = lexemes(text)
    words = {s: w for w, (s, _) in rest}
    out: list[list[ft.Feature] | Description] = []
    used: set[int] = set()
    for p in noun_phrases(found):
        before = [w for s, w in sorted(words.items()) if s < p.span[0]]
        before = [w for w in before if w not in ("the", "a", "an", "to", "of")]
        marks = [o for o in objects if o.kind == p.desc.kind and p.desc.colour in (None, o.colour)]
        if p.first > 0 and found[p.first - 1].attribute == "relation":
            rel = found[p.first - 1].value
            out.append([ft.Feature("relation", rel, a.name) for a in marks])
            used.update(range(p.first - 1, p.last + 1))
        elif before and before[-1] in NEAR_WORDS:
            out.append([ft.Feature("near", "near", a.name) for a in marks])
            used.update(range(p.first, p.last + 1))
        else:
            out.append(p.desc)
            used.update(range(p.first, p.last + 1))
    for k, lex in enumerate(found):
        if k in used:
            continue
        if lex.attribute in ("colour", "size"):
            out.append([ft.Feature(lex.attribute, lex.value)])
        elif lex.attribute in ("direction", "relation"):  # "the left one"; a dangling "left of" reads as a side
            out.append([ft.Feature("side", lex.value.split()[0])])
    for w in words.values():
        if w in SIDE_WORDS:
            out.append([ft.Feature("side", SIDE_WORDS[w])])
        elif w in BIGGER or w in SMALLER:
            sizes = sorted({o.size for o in group if o.size in SIZE_ORDER}, key=SIZE_ORDER.__getitem__)
            if sizes:
                out.append([ft.Feature("size", sizes[-1] if w in BIGGER else sizes[0])])
    return out


def read_answer(answer: Answer, ask: Ask, objects: Sequence[ObjectSpec]) -> list[str]:
    """The candidates of `ask` an answer fits, in option order. `answer` is a 0-based option index or free text;
    text may be an option verbatim, a 1-based number or ordinal ("2", "the second", "last"), or a description.
    An empty list means "none of these" or a contradiction; all candidates means the answer told nothing."""
    names = list(ask.candidates)
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise InputError(f"an answer is an option index or text, got {type(answer).__name__}")
    if isinstance(answer, int):
        if not 0 <= answer < len(names):
            raise InputError(f"option index {answer} out of range 0..{len(names) - 1}")
        return [names[answer]]
    norm = _norm(answer)
    for option, name in zip(ask.options, names):
        if norm and norm == _norm(option):
            return [name]
    tokens = [w for w, _ in tokenize(answer)]
    others = [n for o, n in zip(ask.options, names) if f"the {OTHER} " in o]
    if len(others) == 1 and ("other" in tokens or "another" in tokens):
        return others
    for w in tokens:
        index = ORDINALS.get(w, len(names) - 1 if w == "last" else int(w) - 1 if w.isdigit() else None)
        if index is not None and 0 <= index < len(names):
            return [names[index]]
    by_name = {o.name: o for o in objects}
    group = [by_name[n] for n in names]
    constraints = _constraints(answer, group, objects)
    if not constraints:
        return [] if any(w in NEGATIVE or w == "no" for w in tokens) else names
    keep = []
    for obj in group:
        ok = True
        for c in constraints:
            if isinstance(c, Description):
                ok &= obj.kind == c.kind and c.colour in (None, obj.colour) and c.size in (None, obj.size)
            else:
                ok &= any(ft.holds(f, obj, group, objects, strict=False) for f in c)
        if ok:
            keep.append(obj.name)
    return keep


@dataclass
class Conversation:
    """One clarification exchange over `grounding`'s interpretations. `in_play` are the candidate names still
    possible (a calibrated prediction set, or all of them); `scores` the confidence of each candidate, used to act
    when asking stops without an answer that singles one out. `max_turns` bounds the questions asked (0: never)."""

    grounding: Grounding
    in_play: list[str]
    scores: Mapping[str, float]
    max_turns: int = 2
    turns: int = 0
    history: list[tuple[Ask, Answer]] = field(default_factory=list)
    decision: Act | Ask | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 0:
            raise InputError(f"max_turns must be >= 0, got {self.max_turns}")
        assert self.in_play and set(self.in_play) <= set(self.grounding.candidates), "in_play must be candidates"

    def _instruction(self, name: str) -> str:
        return next(i.instruction for i in self.grounding.interpretations if i.object == name)

    def _act(self, name: str, resolved: bool, reason: str) -> Act:
        self.decision = Act(self._instruction(name), name, resolved, reason)
        return self.decision

    def _give_up(self, reason: str) -> Act:
        best = max(self.in_play, key=lambda n: self.scores.get(n, 0.0))  # first of equals, in scene order
        return self._act(best, False, reason)

    def _ask(self) -> Ask:
        by_name = self.grounding.by_name()
        self.turns += 1
        self.decision = question([by_name[n] for n in self.in_play], self.grounding.objects)
        return self.decision

    def start(self, reason: str = "clear") -> Act | Ask:
        """The first decision: act if one candidate is in play, else ask (or act on the best if max_turns is 0)."""
        if len(self.in_play) == 1:
            return self._act(self.in_play[0], True, reason)
        return self._ask() if self.max_turns > 0 else self._give_up("max_turns")

    def reply(self, answer: Answer) -> Act | Ask:
        """Take the user's answer to the pending question; return the next decision."""
        if not isinstance(self.decision, Ask):
            raise InputError("there is no pending question to answer")
        ask = self.decision
        self.history.append((ask, answer))
        fits = read_answer(answer, ask, self.grounding.objects)
        if len(fits) == 1:
            return self._act(fits[0], True, "answered")
        if not fits or len(fits) == len(self.in_play):
            return self._give_up("unhelpful_answer")
        self.in_play = fits
        return self._ask() if self.turns < self.max_turns else self._give_up("max_turns")
