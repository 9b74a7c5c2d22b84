"""Referent x scene -> candidate interpretations, each an unambiguous instruction in the simulator's phrasing.

Scenes are lists of `clearvla.scene.objects.ObjectSpec` (attributes, bounding box, table position `xy` in metres,
world frame, and yaw). A `Detector` supplies them: `GroundTruthDetector` reads the env's `info["objects"]`; a
real-robot detector returns the same type from camera images. Matching and phrasing reuse the simulator's
`clearvla.scene.language` (`matches`, `relation_holds`, `phrase`), so "left of" means exactly what the simulator
means by it (as seen in the third-person camera, with its margin).

An interpretation's instruction is the original with only the object phrase rewritten: the spoken description
refined by the fewest attributes (colour, then size, then a relation to a landmark) that make it fit one part, in
the speaker's own words where they used a synonym. A clear instruction's interpretation is the instruction itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from clearvla.errors import InputError
from clearvla.scene import language as lang
from clearvla.scene.objects import ObjectSpec, SceneObject
from clearvla.scene.vocab import RELATIONS, SURFACE_FORMS

from clearvla.clarify.parse import Description, Referent


class Detector(Protocol):
    """Finds the objects in a scene. `observation` is the env observation ({"image": [H, W, 3] uint8, ...}),
    `info` the env info when there is one (simulation); returns every object with attributes and table pose."""

    def detect(self, observation: Mapping[str, Any] | None, info: Mapping[str, Any] | None) -> list[ObjectSpec]: ...


def to_spec(obj: SceneObject | ObjectSpec) -> ObjectSpec:
    """An env `SceneObject` (3-D pose) as an `ObjectSpec` (table xy and yaw); ObjectSpecs pass through."""
    if isinstance(obj, ObjectSpec):
        return obj
    w, x, y, z = obj.quaternion
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    xy = (float(obj.position[0]), float(obj.position[1]))
    return ObjectSpec(obj.name, obj.category, obj.kind, obj.colour, obj.size, tuple(obj.dims), xy, yaw)  # type: ignore[arg-type]


class GroundTruthDetector:
    """The simulator's ground truth: `info["objects"]` (SceneObject or ObjectSpec list). Ignores the image."""

    def detect(self, observation: Mapping[str, Any] | None, info: Mapping[str, Any] | None) -> list[ObjectSpec]:
        if info is None or "objects" not in info:
            raise InputError("GroundTruthDetector needs the env info with 'objects'; pass info=, or use a real Detector")
        return [to_spec(o) for o in info["objects"]]


@dataclass(frozen=True)
class Interpretation:
    """One reading of an instruction: the part `object` it means, an `instruction` naming only that part, the
    `reference` used to name it, the resolved `target` (place/stack) if it grounds to one object, and whether
    the instruction is `unique` (False only when no attributes at all can single the part out)."""

    object: str
    instruction: str
    reference: lang.Reference
    target: str | None = None
    unique: bool = True


@dataclass(frozen=True)
class Grounding:
    """The candidates for a referent in a scene. `exact` is False when nothing fitted the description and the
    candidates come from relaxing it (dropping the relation, then size, then colour, then the kind)."""

    referent: Referent
    objects: tuple[ObjectSpec, ...]
    interpretations: tuple[Interpretation, ...]
    target: str | None
    exact: bool

    @property
    def candidates(self) -> list[str]:
        return [i.object for i in self.interpretations]

    def by_name(self) -> dict[str, ObjectSpec]:
        return {o.name: o for o in self.objects}


def anchors_for(desc: Description, objects: Sequence[ObjectSpec]) -> list[ObjectSpec]:
    """Objects fitting a relation's anchor (kind, colour if given)."""
    assert desc.anchor is not None
    a = desc.anchor
    return [o for o in objects if o.kind == a.kind and (a.colour is None or o.colour == a.colour)]


def matching(desc: Description, objects: Sequence[ObjectSpec]) -> list[str]:
    """Names of the parts `desc` fits, in scene order (any fitting anchor will do)."""
    if desc.relation is None:
        return lang.candidates(lang.Reference(desc.kind, desc.colour, desc.size), objects)
    names = set()
    for anchor in anchors_for(desc, objects):
        names.update(lang.candidates(lang.Reference(desc.kind, desc.colour, desc.size, desc.relation, anchor.name), objects))
    return [o.name for o in objects if o.name in names]


def ground_target(referent: Referent, objects: Sequence[ObjectSpec]) -> str | None:
    """The one object the target description fits (a container for place, a part for stack), else None."""
    t = referent.target
    if t is None:
        return None
    category = "part" if referent.task == "stack" else "target"
    fits = [
        o.name
        for o in objects
        if o.category == category and o.kind == t.kind and t.colour in (None, o.colour) and t.size in (None, o.size)
    ]
    return fits[0] if len(fits) == 1 else None


def landmarks(obj: ObjectSpec, objects: Sequence[ObjectSpec]) -> list[ObjectSpec]:
    """Objects a relation may be measured from, as the simulator chooses them: targets, and parts whose kind
    alone names them; never `obj` itself."""
    out = [o for o in objects if o.category == "target"]
    out += [o for o in objects if o.category == "part" and o.name != obj.name and sum(p.kind == o.kind for p in objects) == 1]
    return out


def _spoken(desc: Description, obj: ObjectSpec, objects: Sequence[ObjectSpec]) -> lang.Reference:
    """The spoken description as a simulator Reference for `obj` (picking the anchor `obj` is related to)."""
    anchor = None
    if desc.relation is not None:
        fitting = [a.name for a in anchors_for(desc, objects) if a.name != obj.name and lang.relation_holds(desc.relation, obj, a)]
        anchor = fitting[0] if fitting else None
        if anchor is None:
            return lang.Reference(desc.kind, desc.colour, desc.size)
    return lang.Reference(desc.kind, desc.colour, desc.size, desc.relation, anchor)


def refine(obj: ObjectSpec, spoken: lang.Reference, objects: Sequence[ObjectSpec]) -> tuple[lang.Reference, bool]:
    """The spoken reference plus the fewest attributes that make it fit `obj` alone; (reference, unique)."""
    base = lang.Reference(obj.kind, spoken.colour, spoken.size, spoken.relation, spoken.anchor)
    relations = [(r, a.name) for a in landmarks(obj, objects) for r in RELATIONS if lang.relation_holds(r, obj, a)]
    extras: list[dict[str, Any]] = []
    if base.colour is None:
        extras.append({"colour": obj.colour})
    if base.size is None:
        extras.append({"size": obj.size})
    if base.relation is None:
        extras += [{"relation": r, "anchor": a} for r, a in relations]
    for n in range(len(extras) + 1):
        for combo in itertools.combinations(extras, n):
            fields = {k: v for extra in combo for k, v in extra.items()}
            if "relation" in fields and sum("relation" in e for e in combo) > 1:
                continue
            ref = lang.Reference(**{**base.__dict__, **fields})
            if lang.candidates(ref, objects) == [obj.name]:
                return ref, True
    return lang.Reference(obj.kind, obj.colour, obj.size, base.relation, base.anchor), False


def wording_of(referent: Referent) -> lang.Wording:
    """The speaker's word for each value they used; the simulator's train word for the rest."""

    def word(attribute: str, value: str) -> str:
        return referent.words.get((attribute, value), SURFACE_FORMS[attribute][value][0])

    return word


def rewrite(referent: Referent, ref: lang.Reference, objects: Sequence[ObjectSpec]) -> str:
    """The instruction with its object phrase replaced by `ref` in the speaker's wording."""
    start, end = referent.object_span
    text = referent.instruction
    return text[:start] + lang.phrase(ref, objects, wording_of(referent)) + text[end:]


def _relaxed(desc: Description) -> list[Description]:
    return [
        Description(desc.kind, desc.colour, desc.size),
        Description(desc.kind, desc.colour),
        Description(desc.kind),
    ]


def ground(referent: Referent, objects: Sequence[ObjectSpec | SceneObject]) -> Grounding:
    """Candidate interpretations of `referent` in a scene. The stack base is never a candidate for the part
    stacked on it. With no exact fit, the description is relaxed step by step, ending with every part."""
    scene = tuple(to_spec(o) for o in objects)
    by_name = {o.name: o for o in scene}
    target = ground_target(referent, scene)
    desc = referent.object

    def fits(d: Description) -> list[str]:
        return [n for n in matching(d, scene) if n != target]

    names, exact = fits(desc), True
    for relaxed in _relaxed(desc):
        if names:
            break
        names, exact = fits(relaxed), False
    if not names:
        names = [o.name for o in scene if o.category == "part" and o.name != target]
    interpretations = []
    for name in names:
        obj = by_name[name]
        spoken = _spoken(desc, obj, scene) if exact else lang.Reference(obj.kind)
        ref, unique = refine(obj, spoken, scene)
        interpretations.append(Interpretation(name, rewrite(referent, ref, scene), ref, target, unique))
    return Grounding(referent, scene, tuple(interpretations), target, exact)


def side_offset(obj: ObjectSpec) -> float:
    """Position (m) along image-left (world -y): larger is further left in the third-person camera."""
    return float(np.asarray(obj.xy) @ lang.LEFT_AXIS[:2])
