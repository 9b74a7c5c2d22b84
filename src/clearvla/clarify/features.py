"""Attributes that tell candidate parts apart, relative to the group still in play, and their English.

A `Feature` is one checkable property: a colour, a size, a side of the group as seen in the third-person camera
("on the left", "in the middle"), being the group member next to a landmark, or a simulator relation to a
landmark ("left of the tray"). Questions name features (ask.py), free-text answers are read back into features,
and the oracle describes the intended part with them, so all three agree on what "the one on the left" means.

Strict checks (for questions and the oracle) need a margin, so a feature is only offered when it is plainly
visible; lenient checks (for reading answers) take the extreme member of the group.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clearvla.scene import language as lang
from clearvla.scene.objects import ObjectSpec
from clearvla.scene.vocab import RELATIONS, SURFACE_FORMS

from clearvla.clarify.ground import landmarks, side_offset

SIDE_MARGIN = 0.03  # m along image-left between neighbours before "on the left" is offered
NEAR_MARGIN = 0.05  # m by which the nearest member must beat the others before "next to" is offered
ATTRIBUTES: tuple[str, ...] = ("colour", "size", "side", "near", "relation")


@dataclass(frozen=True)
class Feature:
    """`attribute` is one of ATTRIBUTES; `value` a canonical colour or size, "left" / "right" / "middle" (side),
    or "left of" / "right of" (relation); `anchor` names the landmark object of "near" and "relation"."""

    attribute: str
    value: str
    anchor: str | None = None


def _word(attribute: str, value: str) -> str:
    return SURFACE_FORMS[attribute][value][0]


def _side_holds(value: str, obj: ObjectSpec, group: Sequence[ObjectSpec], strict: bool) -> bool:
    others = [side_offset(o) for o in group if o.name != obj.name]
    if not others:
        return False
    me, margin = side_offset(obj), SIDE_MARGIN if strict else 0.0
    left_of = sum(me > x + margin for x in others)  # members this one is left of
    right_of = sum(me < x - margin for x in others)
    if value == "left":
        return left_of == len(others)
    if value == "right":
        return right_of == len(others)
    return len(group) == 3 and left_of == 1 and right_of == 1  # middle


def _distance(a: ObjectSpec, b: ObjectSpec) -> float:
    return float(np.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1]))


def holds(f: Feature, obj: ObjectSpec, group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec], *, strict: bool = True) -> bool:
    """Whether `obj`, a member of `group`, has feature `f` in the scene `objects`."""
    if f.attribute == "colour":
        return obj.colour == f.value
    if f.attribute == "size":
        return obj.size == f.value
    if f.attribute == "side":
        return _side_holds(f.value, obj, group, strict)
    anchor = next((o for o in objects if o.name == f.anchor), None)
    if anchor is None or anchor.name == obj.name:
        return False
    if f.attribute == "relation":
        return lang.relation_holds(f.value, obj, anchor)
    assert f.attribute == "near", f"unknown feature attribute {f.attribute!r}"
    mine = _distance(obj, anchor)
    margin = NEAR_MARGIN if strict else 0.0
    return all(mine + margin < _distance(o, anchor) for o in group if o.name != obj.name)


def features(obj: ObjectSpec, group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]) -> list[Feature]:
    """Every strict feature `obj` has, in preference order: colour, size, side, near, relation."""
    names = {o.name for o in group}
    marks = [m for m in landmarks(obj, objects) if m.name not in names]
    out = [Feature("colour", obj.colour), Feature("size", obj.size)]
    out += [Feature("side", s) for s in ("left", "right", "middle")]
    out += [Feature("near", "near", m.name) for m in marks]
    out += [Feature("relation", r, m.name) for m in marks for r in RELATIONS]
    return [f for f in out if holds(f, obj, group, objects)]


def excludes(
    combo: Sequence[Feature], obj: ObjectSpec, other: ObjectSpec, group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]
) -> bool:
    """Whether a description of `obj` by `combo` (and its kind) does not fit `other`."""
    return other.kind != obj.kind or not all(holds(f, other, group, objects) for f in combo)


def separating(
    obj: ObjectSpec, group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec], max_features: int = 3
) -> tuple[Feature, ...] | None:
    """The fewest features (preference order within a size) telling `obj` from every other member, or None."""
    own = features(obj, group, objects)
    others = [o for o in group if o.name != obj.name]
    for n in range(0, max_features + 1):
        for combo in itertools.combinations(own, n):
            if len({f.attribute for f in combo}) < n:  # "left of X and right of Y" reads badly; one of each
                continue
            if all(excludes(combo, obj, o, group, objects) for o in others):
                return combo
    return None


def shared_attribute(group: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]) -> list[tuple[Feature, ...]] | None:
    """One feature per member, all of the same attribute (colour, size or side), that separates the group; the
    question then contrasts like with like ("the red bolt, or the blue bolt?"). None if no attribute does."""
    for attribute in ("colour", "size", "side"):
        picks = []
        for obj in group:
            own = [f for f in features(obj, group, objects) if f.attribute == attribute]
            if not own or not all(excludes(own[:1], obj, o, group, objects) for o in group if o.name != obj.name):
                break
            picks.append((own[0],))
        else:
            return picks
    return None


def anchor_phrase(anchor: ObjectSpec, objects: Sequence[ObjectSpec]) -> str:
    """'the tray', or 'the grey tray' when the scene has two trays."""
    several = sum(o.kind == anchor.kind for o in objects) > 1
    colour = f"{_word('colour', anchor.colour)} " if several and anchor.colour in SURFACE_FORMS["colour"] else ""
    kind = _word("kind", anchor.kind) if anchor.kind in SURFACE_FORMS["kind"] else anchor.kind
    return f"the {colour}{kind}"


def describe(obj: ObjectSpec, combo: Sequence[Feature], objects: Sequence[ObjectSpec], *, noun: str | None = None) -> str:
    """English for `obj` by `combo`, e.g. "the small red bolt on the left", "the bolt next to the tray".
    `noun` replaces the kind word (the oracle says "the red one")."""
    by_name = {o.name: o for o in objects}
    adjectives = [_word("size", f.value) for f in combo if f.attribute == "size"]
    adjectives += [_word("colour", f.value) for f in combo if f.attribute == "colour" and f.value in SURFACE_FORMS["colour"]]
    adjectives += [f.value for f in combo if f.attribute == "colour" and f.value not in SURFACE_FORMS["colour"]]
    kind = noun or (_word("kind", obj.kind) if obj.kind in SURFACE_FORMS["kind"] else obj.kind)
    words = ["the", *adjectives, kind]
    for f in combo:
        if f.attribute == "side":
            words.append("in the middle" if f.value == "middle" else f"on the {f.value}")
        elif f.attribute == "near":
            words.append(f"next to {anchor_phrase(by_name[f.anchor], objects)}")  # type: ignore[index]
        elif f.attribute == "relation":
            words.append(f"{f.value} {anchor_phrase(by_name[f.anchor], objects)}")  # type: ignore[index]
    return " ".join(words)
