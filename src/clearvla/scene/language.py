"""Referring expressions and instructions, generated from structured descriptions so a clarifier can check its
parse against ground truth.

A `Reference` names an object by kind plus optional colour, size and a spatial relation to an anchor object
("the small red block", "the bolt left of the tray"). `describe` finds the shortest reference that singles out
one part; `distinguishing_attributes` says what separates an intended part from the other candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clearvla.scene.objects import ObjectSpec
from clearvla.scene.vocab import LEFT_AXIS, SURFACE_FORMS, TRAIN_FORMS

RELATION_MARGIN = 0.04  # m along the left axis before "left of" holds

# (attribute, canonical value) -> surface phrase
Wording = Callable[[str, str], str]


@dataclass(frozen=True)
class Reference:
    """A description of one object: `kind` and optionally `colour`, `size`, and `relation` ("left of" /
    "right of") to the object named `anchor` (which is itself described by its kind, plus colour when needed)."""

    kind: str
    colour: str | None = None
    size: str | None = None
    relation: str | None = None
    anchor: str | None = None

    def to_dict(self, objects: Sequence[ObjectSpec]) -> dict[str, Any]:
        """Canonical attributes as a plain dict; the anchor as {"kind", "colour"}."""
        anchor = None
        if self.anchor is not None:
            a = _by_name(objects)[self.anchor]
            anchor = {"kind": a.kind, "colour": a.colour if _anchor_needs_colour(a, objects) else None}
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "relation": self.relation, "anchor": anchor}


def _by_name(objects: Sequence[ObjectSpec]) -> dict[str, ObjectSpec]:
    return {o.name: o for o in objects}


def _anchor_needs_colour(anchor: ObjectSpec, objects: Sequence[ObjectSpec]) -> bool:
    return sum(o.kind == anchor.kind for o in objects) > 1


def relation_holds(relation: str, obj: ObjectSpec, anchor: ObjectSpec) -> bool:
    """Whether `obj` is `relation` ("left of" / "right of") `anchor`, as seen in the front camera."""
    offset = float(np.subtract(obj.xy, anchor.xy) @ LEFT_AXIS[:2])
    return offset > RELATION_MARGIN if relation == "left of" else offset < -RELATION_MARGIN


def matches(ref: Reference, obj: ObjectSpec, objects: Sequence[ObjectSpec]) -> bool:
    """Whether part `obj` fits the description `ref`."""
    if obj.category != "part" or obj.kind != ref.kind:
        return False
    if ref.colour is not None and obj.colour != ref.colour:
        return False
    if ref.size is not None and obj.size != ref.size:
        return False
    if ref.relation is not None:
        assert ref.anchor is not None
        return obj.name != ref.anchor and relation_holds(ref.relation, obj, _by_name(objects)[ref.anchor])
    return True


def candidates(ref: Reference, objects: Sequence[ObjectSpec]) -> list[str]:
    """Names of the parts `ref` fits, in scene order."""
    return [o.name for o in objects if matches(ref, o, objects)]


def _anchors(obj: ObjectSpec, objects: Sequence[ObjectSpec]) -> list[ObjectSpec]:
    """Objects usable as anchors: targets, or parts whose kind alone names them; never `obj` itself."""
    out = [o for o in objects if o.category == "target"]
    out += [o for o in objects if o.category == "part" and o.name != obj.name and sum(p.kind == o.kind for p in objects) == 1]
    return out


def _options(obj: ObjectSpec, objects: Sequence[ObjectSpec], allow_relation: bool) -> list[list[Reference]]:
    """Candidate references for `obj`, grouped by length (number of attributes beyond the kind)."""
    k = obj.kind
    levels = [
        [Reference(k)],
        [Reference(k, colour=obj.colour), Reference(k, size=obj.size)],
        [Reference(k, colour=obj.colour, size=obj.size)],
    ]
    if allow_relation:
        rel = []
        for anchor in _anchors(obj, objects):
            for relation in ("left of", "right of"):
                if relation_holds(relation, obj, anchor):
                    rel.append(Reference(k, relation=relation, anchor=anchor.name))
        levels[1] += rel
        levels.append([Reference(k, colour=obj.colour, relation=r.relation, anchor=r.anchor) for r in rel])
    return levels


def _unique_levels(obj: ObjectSpec, objects: Sequence[ObjectSpec], allow_relation: bool) -> list[list[Reference]]:
    """`_options` kept to the references that fit `obj` and no other part, still grouped by length."""
    levels = _options(obj, objects, allow_relation)
    return [[r for r in level if candidates(r, objects) == [obj.name]] for level in levels]


def describe(
    obj: ObjectSpec,
    objects: Sequence[ObjectSpec],
    rng: np.random.Generator,
    *,
    allow_relation: bool = True,
    overspecify: float = 0.0,
) -> Reference | None:
    """A shortest reference that fits `obj` and no other part (random among equals), or None if none exists.
    With probability `overspecify` a colour is added to a reference that does not need it."""
    for unique in _unique_levels(obj, objects, allow_relation):
        if unique:
            ref = unique[int(rng.integers(len(unique)))]
            if ref.colour is None and ref.relation is None and rng.random() < overspecify:
                ref = Reference(ref.kind, colour=obj.colour, size=ref.size)
            return ref
    return None


def distinguishing_attributes(intended: ObjectSpec, others: Sequence[ObjectSpec], objects: Sequence[ObjectSpec]) -> list[str]:
    """Which of "colour", "size", "position" on their own tell `intended` apart from every part in `others`."""
    out = []
    if all(o.colour != intended.colour for o in others):
        out.append("colour")
    if all(o.size != intended.size for o in others):
        out.append("size")
    for anchor in _anchors(intended, objects):
        if anchor.name in {o.name for o in others}:
            continue
        for relation in ("left of", "right of"):
            if relation_holds(relation, intended, anchor) and not any(relation_holds(relation, o, anchor) for o in others):
                out.append("position")
                break
        if "position" in out:
            break
    return out


def train_wording(attribute: str, value: str) -> str:
    """The plain train-suite word."""
    return SURFACE_FORMS[attribute][value][0]


def heldout_wording(rng: np.random.Generator) -> Wording:
    """A wording that prefers held-out synonyms (falling back to the train word where there is none). Each value
    keeps the synonym first drawn for it, so two phrasings of one episode use the same words."""
    chosen: dict[tuple[str, str], str] = {}

    def word(attribute: str, value: str) -> str:
        if (attribute, value) not in chosen:
            forms = SURFACE_FORMS[attribute][value]
            pool = forms[TRAIN_FORMS:] or forms
            chosen[attribute, value] = pool[int(rng.integers(len(pool)))]
        return chosen[attribute, value]

    return word


def phrase(ref: Reference, objects: Sequence[ObjectSpec], wording: Wording) -> str:
    """English for a reference, e.g. "the small red block left of the tray"."""
    words = [wording("size", ref.size) if ref.size else "", wording("colour", ref.colour) if ref.colour else ""]
    words.append(wording("kind", ref.kind))
    text = " ".join(w for w in words if w)
    if ref.relation is not None:
        assert ref.anchor is not None
        anchor = _by_name(objects)[ref.anchor]
        colour = f"{wording('colour', anchor.colour)} " if _anchor_needs_colour(anchor, objects) else ""
        text += f" {wording('relation', ref.relation)} the {colour}{wording('kind', anchor.kind)}"
    return text


def instruction(
    template: str,
    obj: str,
    *,
    target: str | None = None,
    direction: str | None = None,
) -> str:
    """Fill an instruction template with already-worded phrases."""
    return template.format(obj=obj, target=target or "", direction=direction or "")
