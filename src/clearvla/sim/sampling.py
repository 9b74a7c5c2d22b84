"""Samples one episode (scene, task, instruction, ground truth about ambiguity) from a suite's distribution.

Everything is drawn from one `numpy.random.Generator` seeded by the episode seed, so an `EpisodeSpec` always
yields the same `EpisodeSetup`. Suites differ only in the `SuiteConfig` flags below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clearvla.scene import language as lang
from clearvla.scene.objects import DISTRACTOR_DIMS, PART_DIMS, PHYSICAL_DIMS, TARGET_DIMS, ObjectSpec
from clearvla.sim.scene import Appearance, SceneSpec
from clearvla.sim.tasks import STEP_LIMITS, TaskSpec
from clearvla.scene.vocab import (
    DIRECTION_AXIS,
    DISTRACTOR_COLOURS,
    DISTRACTOR_KINDS,
    HELDOUT_PART_COLOURS,
    HELDOUT_TEMPLATES,
    TARGET_COLOURS,
    TRAIN_PART_COLOURS,
    TRAIN_TEMPLATES,
)

Box = tuple[tuple[float, float], tuple[float, float]]  # ((x_lo, x_hi), (y_lo, y_hi)) in metres
PART_REGION: Box = ((0.36, 0.58), (-0.20, 0.20))
TARGET_REGION: Box = ((0.38, 0.56), (-0.24, 0.24))
MOTION_REGION: Box = ((0.27, 0.67), (-0.30, 0.30))  # held-out positions: inside this box, outside PART_REGION
# Where the arm starts an episode: grip-site x, y, z (m) and yaw (rad). A random start keeps the grip position from
# telling a cloned policy where it is heading (from one fixed start, position along a straight path gives it away).
START_BOX = ((0.36, 0.58), (-0.22, 0.22), (0.16, 0.32), (-0.8, 0.8))
GAP = 0.035  # m between the footprint circles of any two objects
PART_YAW = 0.5  # rad, parts are placed with |yaw| below this
PUSH_ROOM = 0.14  # m the push lane must stay clear (and inside the table region) ahead of the part
STACK_TOPS = ("block", "nut")
STACK_BASES = ("block", "plate")
PHYSICAL_STACK_TOPS = ("block", "nut", "cylinder", "disc")
PHYSICAL_STACK_BASES = ("block", "plate", "disc")


@dataclass(frozen=True)
class SuiteConfig:
    """How a suite departs from the training distribution."""

    n_parts: tuple[int, int] = (2, 3)  # inclusive range, task parts included
    n_extra_targets: tuple[int, int] = (0, 1)  # targets beyond the one a place task needs
    n_distractors: tuple[int, int] = (0, 0)
    visual: bool = False  # random lighting, table colour and texture
    motion: bool = False  # the task's part (and place target) outside PART_REGION
    physical: bool = False  # the task's part has an unseen size or shape
    semantic: bool = False  # unseen colours for the task's part, held-out wording
    ambiguous: bool = False  # the instruction fits two or more parts
    same_kind: float = 0.5  # chance each other part shares the task part's kind
    overspecify: float = 0.25
    random_start: bool = True  # the arm starts at a pose drawn from START_BOX, else at home


@dataclass(frozen=True)
class EpisodeSpec:
    """One entry of a suite: which suite, its position in it, the seed its scene is drawn from, the task."""

    suite: str
    index: int
    seed: int
    task: str


@dataclass(frozen=True)
class EpisodeSetup:
    """A fully sampled episode. `parse` is the instruction's canonical structure:
    {"task", "object": {kind, colour, size, relation, anchor}, "target": {...} | None, "direction": str | None}."""

    spec: EpisodeSpec
    scene: SceneSpec
    task: TaskSpec
    instruction: str
    parse: dict[str, Any]
    intended_object: str
    candidates: tuple[str, ...]
    distinguishing_attributes: tuple[str, ...]
    unambiguous_instruction: str
    max_steps: int


class _Retry(Exception):
    """The draw hit a constraint; draw again from the same generator."""


def _uniform(rng: np.random.Generator, box: Box) -> tuple[float, float]:
    return float(rng.uniform(*box[0])), float(rng.uniform(*box[1]))


def _in_box(xy: tuple[float, float], box: Box, margin: float = 0.0) -> bool:
    return box[0][0] - margin <= xy[0] <= box[0][1] + margin and box[1][0] - margin <= xy[1] <= box[1][1] + margin


def _dims(table: dict[str, tuple[float, float, float]], size: str, rng: np.random.Generator) -> tuple[float, float, float]:
    scale = rng.uniform(0.97, 1.03)
    return tuple(round(float(d * scale), 4) for d in table[size])  # type: ignore[return-value]


class _Sampler:
    def __init__(self, cfg: SuiteConfig, spec: EpisodeSpec, rng: np.random.Generator) -> None:
        self.cfg, self.spec, self.rng = cfg, spec, rng
        self.objects: list[ObjectSpec] = []
        self.counts = {"part": 0, "target": 0, "distractor": 0}
        # Shuffled name numbers, so neither a name nor the scene order gives away which part the task is about.
        self.ids = {c: [int(i) for i in rng.permutation(8)] for c in self.counts}

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def new(self, category: str, kind: str, colour: str, size: str, dims: tuple[float, float, float]) -> ObjectSpec:
        name = f"{category}{self.ids[category][self.counts[category]]}"
        self.counts[category] += 1
        return ObjectSpec(name, category, kind, colour, size, dims, (0.0, 0.0), 0.0)

    def part(self, kinds: tuple[str, ...], colours: tuple[str, ...], physical: bool = False) -> ObjectSpec:
        table = PHYSICAL_DIMS if physical else PART_DIMS
        kind = self.choice([k for k in kinds if k in table])
        size = self.choice(sorted(table[kind]))
        return self.new("part", kind, self.choice(colours), size, _dims(table[kind], size, self.rng))

    def place(self, obj: ObjectSpec, region: Box, *, outside: Box | None = None, yaw: float = PART_YAW) -> ObjectSpec:
        """Put `obj` at a free spot in `region` (not inside `outside`), add it to the scene, return it placed."""
        for _ in range(60):
            xy = _uniform(self.rng, region)
            if outside is not None and _in_box(xy, outside, margin=0.02):
                continue
            placed = ObjectSpec(**{**obj.__dict__, "xy": xy, "yaw": float(self.rng.uniform(-yaw, yaw))})
            if all(self._clear(placed, o) for o in self.objects):
                self.objects.append(placed)
                return placed
        raise _Retry

    def _clear(self, a: ObjectSpec, b: ObjectSpec) -> bool:
        return float(np.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1])) >= a.footprint_radius + b.footprint_radius + GAP


def _colours(cfg: SuiteConfig) -> tuple[str, ...]:
    return HELDOUT_PART_COLOURS if cfg.semantic else TRAIN_PART_COLOURS


def _fits(part: ObjectSpec, target_kind: str) -> bool:
    inner = TARGET_DIMS[target_kind]
    return max(part.dims[0], part.dims[1]) + 0.03 <= min(inner[0], inner[1])


def _appearance(rng: np.random.Generator) -> Appearance:
    def rgb(lo: float, hi: float) -> tuple[float, float, float]:
        return tuple(float(v) for v in rng.uniform(lo, hi, 3))  # type: ignore[return-value]

    tilt, heading = rng.uniform(0.0, 0.8), rng.uniform(-np.pi, np.pi)
    return Appearance(
        table_rgb=rgb(0.15, 0.9),
        table_texture=str(rng.choice(["plain", "checker", "gradient"])),
        table_rgb2=rgb(0.1, 0.9),
        light_dir=(float(np.sin(tilt) * np.cos(heading)), float(np.sin(tilt) * np.sin(heading)), -float(np.cos(tilt))),
        light_diffuse=float(rng.uniform(0.35, 1.0)),
        light_rgb=rgb(0.75, 1.0),
        ambient=float(rng.uniform(0.15, 0.5)),
    )


def _push_lane_clear(s: _Sampler, obj: ObjectSpec, direction: str) -> bool:
    """The part can travel PUSH_ROOM ahead, and the gripper has room behind it, without meeting anything."""
    axis = DIRECTION_AXIS[direction][:2]
    start = np.array(obj.xy) - axis * (obj.footprint_radius + 0.06)
    end = np.array(obj.xy) + axis * PUSH_ROOM
    if abs(end[1]) > 0.32:
        return False
    for other in s.objects:
        if other.name == obj.name:
            continue
        rel = np.array(other.xy) - start
        along = float(rel @ axis)
        across = abs(float(rel @ np.array([axis[1], -axis[0]])))
        reach = other.footprint_radius + obj.footprint_radius + 0.01
        if -reach <= along <= float((end - start) @ axis) + reach and across <= reach:
            return False
    return True


def _focus_kinds(cfg: SuiteConfig, task: str) -> tuple[str, ...]:
    """The kinds the task's part is drawn from."""
    if task == "stack":
        return PHYSICAL_STACK_TOPS if cfg.physical else STACK_TOPS
    return tuple(PHYSICAL_DIMS) if cfg.physical else tuple(PART_DIMS)


def _place_targets(s: _Sampler, focus: ObjectSpec, task: str, outside: Box | None) -> ObjectSpec | None:
    """Place the targets (a place task's goal, then the extra ones); the goal, or None for other tasks."""
    cfg = s.cfg
    n_targets = int(s.rng.integers(cfg.n_extra_targets[0], cfg.n_extra_targets[1] + 1))
    goal = None
    if task == "place":
        fitting = [k for k in TARGET_DIMS if _fits(focus, k)]
        if not fitting:
            raise _Retry
        kind = s.choice(fitting)
        goal = s.new("target", kind, s.choice(tuple(TARGET_COLOURS)), "medium", TARGET_DIMS[kind])
        goal = s.place(goal, MOTION_REGION if cfg.motion else TARGET_REGION, outside=outside, yaw=0.15)
    used = {goal.kind} if goal else set()
    for _ in range(n_targets):
        kind = s.choice([k for k in TARGET_DIMS if k not in used])
        used.add(kind)
        s.place(s.new("target", kind, s.choice(tuple(TARGET_COLOURS)), "medium", TARGET_DIMS[kind]), TARGET_REGION, yaw=0.15)
    return goal


def _place_stack_base(s: _Sampler, focus: ObjectSpec, colours: tuple[str, ...]) -> ObjectSpec:
    """Place the part a stack task puts `focus` on; retries when `focus` would overhang it by much."""
    base = s.part(PHYSICAL_STACK_BASES if s.cfg.physical else STACK_BASES, colours)
    if min(base.dims[:2]) < 0.85 * max(focus.dims[:2]):
        raise _Retry  # a part overhanging its base by much topples
    return s.place(base, PART_REGION)


def _push_direction(s: _Sampler, focus: ObjectSpec) -> str:
    """A direction whose push lane is clear of the objects placed so far."""
    options = [d for d in ("left", "right") if _push_lane_clear(s, focus, d)]
    if not options:
        raise _Retry
    return s.choice(options)


def _place_other_parts(s: _Sampler, focus: ObjectSpec, task: str, colours: tuple[str, ...]) -> None:
    """Place the parts besides the task's (and a stack's base); in ambiguous suites the first shares its kind."""
    cfg, rng = s.cfg, s.rng
    n_parts = int(rng.integers(cfg.n_parts[0], cfg.n_parts[1] + 1)) - (2 if task == "stack" else 1)
    if cfg.ambiguous:
        n_parts = max(n_parts, 1)
    for i in range(n_parts):
        share = (cfg.ambiguous and i == 0) or rng.random() < cfg.same_kind
        other_kinds = (focus.kind,) if share and focus.kind in PART_DIMS else tuple(PART_DIMS)
        other_colours = colours + TRAIN_PART_COLOURS if cfg.semantic else colours
        other = s.part(other_kinds, other_colours)
        if cfg.ambiguous and i == 0 and rng.random() < 0.5:
            other = ObjectSpec(**{**other.__dict__, "colour": focus.colour})
        s.place(other, PART_REGION)


def _place_distractors(s: _Sampler) -> None:
    """Place the suite's distractors (anywhere in MOTION_REGION, any yaw)."""
    for _ in range(int(s.rng.integers(s.cfg.n_distractors[0], s.cfg.n_distractors[1] + 1))):
        kind = s.choice(DISTRACTOR_KINDS)
        d = s.new("distractor", kind, s.choice(tuple(DISTRACTOR_COLOURS)), "medium", DISTRACTOR_DIMS[kind])
        s.place(d, MOTION_REGION, yaw=np.pi)


def _layout(s: _Sampler, task: str) -> tuple[ObjectSpec, ObjectSpec | None, str | None]:
    """Place every object of the scene; (the task's part, its goal or None, a push's direction or None)."""
    cfg = s.cfg
    colours = _colours(cfg)
    focus = s.part(_focus_kinds(cfg, task), colours, physical=cfg.physical)
    outside = PART_REGION if cfg.motion else None
    goal = _place_targets(s, focus, task, outside)  # targets first: they are the largest and hardest to fit
    focus = s.place(focus, MOTION_REGION if cfg.motion else PART_REGION, outside=outside)
    if task == "stack":
        goal = _place_stack_base(s, focus, colours)
    direction = _push_direction(s, focus) if task == "push" else None
    _place_other_parts(s, focus, task, colours)
    _place_distractors(s)
    if direction is not None and not _push_lane_clear(s, focus, direction):
        raise _Retry
    return focus, goal, direction


def _references(s: _Sampler, focus: ObjectSpec, goal: ObjectSpec | None,
                objects: list[ObjectSpec]) -> tuple[lang.Reference, lang.Reference, list[str], list[str]]:
    """(a reference singling out `focus`, the one the instruction speaks (vague in ambiguous suites), the parts
    it fits, the attributes that tell `focus` from them)."""
    cfg, rng = s.cfg, s.rng
    ref = lang.describe(focus, objects, rng, overspecify=cfg.overspecify)
    if ref is None:
        raise _Retry
    spoken = ref
    if cfg.ambiguous:
        spoken = lang.Reference(focus.kind)
        if rng.random() < 0.5 and len(lang.candidates(lang.Reference(focus.kind, colour=focus.colour), objects)) > 1:
            spoken = lang.Reference(focus.kind, colour=focus.colour)
    names = lang.candidates(spoken, objects)
    if s.spec.task == "stack":  # a part cannot be stacked on itself: the base is never a candidate
        assert goal is not None
        names = [n for n in names if n != goal.name]
    if focus.name not in names or (cfg.ambiguous and len(names) < 2):
        raise _Retry
    by_name = {o.name: o for o in objects}
    others = [by_name[n] for n in names if n != focus.name]
    distinguishing = lang.distinguishing_attributes(focus, others, objects) if others else []
    if cfg.ambiguous and not distinguishing:
        raise _Retry
    return ref, spoken, names, distinguishing


def _target_reference(s: _Sampler, focus: ObjectSpec, goal: ObjectSpec | None,
                      objects: list[ObjectSpec]) -> lang.Reference | None:
    """How the instruction names a place or stack task's goal (None for pick and push)."""
    if s.spec.task == "place":
        assert goal is not None
        return lang.Reference(goal.kind, colour=goal.colour if sum(o.kind == goal.kind for o in objects) > 1 else None)
    if s.spec.task == "stack":
        assert goal is not None
        target_ref = lang.describe(goal, [o for o in objects if o.name != focus.name], s.rng, allow_relation=False)
        if target_ref is None or lang.matches(target_ref, focus, objects):
            raise _Retry
        return target_ref
    return None


def _draw(cfg: SuiteConfig, spec: EpisodeSpec, rng: np.random.Generator) -> EpisodeSetup:
    """One attempt at `spec`'s episode; raises _Retry when a constraint fails. The order of the draws from `rng`
    pins every suite's episode list: keep it when changing the helpers."""
    s = _Sampler(cfg, spec, rng)
    task = spec.task
    focus, goal, direction = _layout(s, task)
    objects = sorted(s.objects, key=lambda o: (o.category, o.name))
    ref, spoken, names, distinguishing = _references(s, focus, goal, objects)
    target_ref = _target_reference(s, focus, goal, objects)

    wording = lang.heldout_wording(rng) if cfg.semantic else lang.train_wording
    template = s.choice((HELDOUT_TEMPLATES if cfg.semantic else TRAIN_TEMPLATES)[task])

    def say(obj_ref: lang.Reference) -> str:
        return lang.instruction(
            template,
            lang.phrase(obj_ref, objects, wording),
            target=lang.phrase(target_ref, objects, wording) if target_ref else None,
            direction=wording("direction", direction) if direction else None,
        )

    # Before the phrases: held-out wordings draw their synonyms from `rng` as they are first spoken.
    appearance = _appearance(rng) if cfg.visual else Appearance()
    instruction, unambiguous = say(spoken), say(ref)
    # Drawn last, so the rest of the episode is the same with or without a random start.
    start = tuple(float(rng.uniform(lo, hi)) for lo, hi in START_BOX) if cfg.random_start else None
    return EpisodeSetup(
        spec=spec,
        scene=SceneSpec(tuple(objects), appearance, arm_start=start),  # type: ignore[arg-type]
        task=TaskSpec(task, focus.name, goal.name if goal else None, direction),
        instruction=instruction,
        parse={
            "task": task,
            "object": spoken.to_dict(objects),
            "target": target_ref.to_dict(objects) if target_ref else None,
            "direction": direction,
        },
        intended_object=focus.name,
        candidates=tuple(names),
        distinguishing_attributes=tuple(distinguishing),
        unambiguous_instruction=unambiguous,
        max_steps=STEP_LIMITS[task],
    )


def sample_setup(cfg: SuiteConfig, spec: EpisodeSpec) -> EpisodeSetup:
    """Draw the episode `spec` under `cfg`; deterministic in `spec.seed`."""
    rng = np.random.default_rng(spec.seed)
    for _ in range(500):
        try:
            return _draw(cfg, spec, rng)
        except _Retry:
            continue
    raise RuntimeError(f"could not sample a scene for {spec} in 500 draws")
