"""Instruction -> `Referent`: the task, the part it names (kind, colour, size, spatial relation to an anchor), the
target it goes to or the direction it is pushed.

The lexicon is the simulator's own (`clearvla.scene.vocab.SURFACE_FORMS`, train words and held-out synonyms), and the
prepositions that introduce a target are read off the simulator's templates, so nothing here duplicates a table.
The grammar is a longest-match scan rather than template matching, so it also reads instructions the simulator
never generates ("please grab the small red screw and put it into the tote"):

    noun phrase = (size | colour)* kind
    object      = first noun phrase naming a part, optionally followed by `relation the <noun phrase>` (the anchor)
    target      = the next noun phrase after the object, introduced by a target preposition ("in", "on top of", ...)
    direction   = a direction word after the object
    task        = push if a direction, place if the target is a container, stack if it is a part, else pick.

`Referent.to_dict()` has exactly the layout of the simulator's `info["instruction_parse"]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clearvla.errors import InputError
from clearvla.scene.vocab import (
    DISTRACTOR_COLOURS,
    DISTRACTOR_KINDS,
    HELDOUT_TEMPLATES,
    PART_KINDS,
    PHYSICAL_PART_KINDS,
    SURFACE_FORMS,
    TARGET_KINDS,
    TRAIN_TEMPLATES,
)

ALL_TEMPLATES: dict[str, tuple[str, ...]] = {t: TRAIN_TEMPLATES[t] + HELDOUT_TEMPLATES[t] for t in TRAIN_TEMPLATES}
PART_KIND_SET = frozenset(PART_KINDS + PHYSICAL_PART_KINDS)
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ARTICLES = frozenset({"the", "a", "an"})


class ParseError(InputError):
    """The instruction names no part the vocabulary knows."""


@dataclass(frozen=True)
class Anchor:
    """The object a spatial relation is measured from: a kind, plus a colour when the speaker gave one."""

    kind: str
    colour: str | None = None


@dataclass(frozen=True)
class Description:
    """A noun phrase: `kind` plus optional `colour`, `size` and `relation` ("left of" / "right of") to `anchor`."""

    kind: str
    colour: str | None = None
    size: str | None = None
    relation: str | None = None
    anchor: Anchor | None = None

    def to_dict(self) -> dict[str, Any]:
        anchor = None if self.anchor is None else {"kind": self.anchor.kind, "colour": self.anchor.colour}
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "relation": self.relation, "anchor": anchor}


@dataclass(frozen=True)
class Referent:
    """What an instruction asks for. `object_span` is the [start, end) character range of the object phrase in
    `instruction` (modifiers, kind and relation, without the article), so the phrase can be rewritten in place;
    `words` maps (attribute, canonical value) to the phrase the speaker used for it; `unknown` lists words that
    are neither vocabulary nor template words."""

    instruction: str
    task: str
    verb: str | None
    object: Description
    target: Description | None = None
    direction: str | None = None
    object_span: tuple[int, int] = (0, 0)
    words: dict[tuple[str, str], str] = field(default_factory=dict, compare=False)
    unknown: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The simulator's `instruction_parse` layout: {"task", "object", "target", "direction"}."""
        return {
            "task": self.task,
            "object": self.object.to_dict(),
            "target": None if self.target is None else self.target.to_dict(),
            "direction": self.direction,
        }


@dataclass(frozen=True)
class Lexeme:
    """A vocabulary phrase found in a text: tokens [start, end), character span, meaning."""

    start: int
    end: int
    span: tuple[int, int]
    attribute: str
    value: str
    text: str


def _lexicon() -> list[tuple[tuple[str, ...], str, str]]:
    """(tokens, attribute, canonical) for every surface form, longest first. Distractor kinds and colours have no
    synonyms in the simulator; they enter under their own names so a phrase naming one still chunks."""
    entries = {
        (tuple(form.split()), attr, value)
        for attr, table in SURFACE_FORMS.items()
        for value, forms in table.items()
        for form in forms
    }
    entries |= {((k,), "kind", k) for k in DISTRACTOR_KINDS}
    entries |= {(tuple(c.split()), "colour", c) for c in DISTRACTOR_COLOURS}
    return sorted(entries, key=lambda e: (-len(e[0]), e))


LEXICON = _lexicon()


def _template_words() -> tuple[frozenset[str], frozenset[str], dict[str, frozenset[str]]]:
    """Filler words of every template, the prepositions between {obj} and {target}, and verb -> tasks."""
    words: set[str] = set()
    preps: set[str] = set()
    verbs: dict[str, set[str]] = {}
    for task, templates in ALL_TEMPLATES.items():
        for t in templates:
            words.update(_WORD.findall(re.sub(r"\{\w+\}", " ", t)))
            verbs.setdefault(t.split()[0], set()).add(task)
            if "{target}" in t:
                between = t.split("{obj}")[1].split("{target}")[0].split()
                preps.add(" ".join(w for w in between if w not in _ARTICLES))
    return frozenset(words), frozenset(preps), {v: frozenset(ts) for v, ts in verbs.items()}


TEMPLATE_WORDS, TARGET_PREPOSITIONS, VERB_TASKS = _template_words()


def tokenize(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Lower-cased words with their character spans in `text`."""
    return [(m.group(), m.span()) for m in _WORD.finditer(text.lower())]


def lexemes(text: str) -> tuple[list[Lexeme], list[tuple[str, tuple[int, int]]]]:
    """Longest-match vocabulary phrases in `text`, and the words that matched none (with spans)."""
    tokens = tokenize(text)
    words = [w for w, _ in tokens]
    found: list[Lexeme] = []
    rest: list[tuple[str, tuple[int, int]]] = []
    i = 0
    while i < len(tokens):
        for form, attr, value in LEXICON:
            if tuple(words[i : i + len(form)]) == form:
                j = i + len(form)
                span = (tokens[i][1][0], tokens[j - 1][1][1])
                found.append(Lexeme(i, j, span, attr, value, text[span[0] : span[1]]))
                i = j
                break
        else:
            rest.append(tokens[i])
            i += 1
    return found, rest


@dataclass(frozen=True)
class _Phrase:
    desc: Description
    first: int  # index of its first lexeme
    last: int  # index of its kind lexeme
    span: tuple[int, int]


def noun_phrases(found: list[Lexeme]) -> list[_Phrase]:
    """Chunk lexemes into noun phrases: contiguous sizes and colours followed by a kind."""
    out = []
    for k, lex in enumerate(found):
        if lex.attribute != "kind":
            continue
        first, colour, size = k, None, None
        while first > 0 and found[first - 1].attribute in ("colour", "size") and found[first - 1].end == found[first].start:
            first -= 1
            mod = found[first]
            colour = colour or (mod.value if mod.attribute == "colour" else None)
            size = size or (mod.value if mod.attribute == "size" else None)
        out.append(_Phrase(Description(lex.value, colour, size), first, k, (found[first].span[0], lex.span[1])))
    return out


def parse(instruction: str) -> Referent:
    """Parse an instruction; raises ParseError when it names no known part kind."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ParseError(f"instruction must be a non-empty string, got {instruction!r}")
    found, rest = lexemes(instruction)
    phrases = noun_phrases(found)
    objs = [p for p in phrases if p.desc.kind in PART_KIND_SET]
    if not objs:
        kinds = ", ".join(sorted(PART_KIND_SET))
        raise ParseError(f"no part named in {instruction!r}; part kinds: {kinds} (and their synonyms)")
    obj = objs[0]
    desc, end_lex, span = obj.desc, obj.last, obj.span
    following = [p for p in phrases if p.first > obj.last]
    if obj.last + 1 < len(found) and found[obj.last + 1].attribute == "relation" and following and following[0].first == obj.last + 2:
        anchor = following.pop(0)
        rel = found[obj.last + 1].value
        desc = Description(desc.kind, desc.colour, desc.size, rel, Anchor(anchor.desc.kind, anchor.desc.colour))
        end_lex, span = anchor.last, (span[0], anchor.span[1])
    target = None
    for p in following:
        between = [w for w, (s, _) in rest if span[1] <= s < p.span[0] and w not in _ARTICLES]
        if " ".join(between) in TARGET_PREPOSITIONS or (between and between[-1] in TARGET_PREPOSITIONS):
            target = p.desc
            break
    direction = next((lex.value for lex in found[end_lex + 1 :] if lex.attribute == "direction"), None)
    if direction is not None:
        task = "push"
    elif target is not None:
        task = "place" if target.kind in TARGET_KINDS else "stack"
    else:
        task = "pick"
    tokens = tokenize(instruction)
    verb = tokens[0][0] if tokens and tokens[0][0] in VERB_TASKS else None
    used = {(lex.attribute, lex.value): lex.text for lex in found}
    unknown = tuple(w for w, _ in rest if w not in TEMPLATE_WORDS and w not in _ARTICLES)
    return Referent(instruction, task, verb, desc, target, direction, span, used, unknown)
