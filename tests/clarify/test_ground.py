"""Grounding finds exactly the simulator's candidates and rewrites each into an instruction naming one part."""

from __future__ import annotations

import math

import pytest

from clearvla.clarify.ground import GroundTruthDetector, ground, to_spec
from clearvla.clarify.parse import parse
from clearvla.errors import InputError
from clearvla.sim import suites
from clearvla.sim.env import WorkcellEnv
from clearvla.scene.objects import SceneObject


def test_ambiguous_candidates_equal_the_simulator_candidates(ambiguous) -> None:
    for s in ambiguous:
        g = ground(parse(s.instruction), s.scene.objects)
        assert g.exact and g.candidates == list(s.candidates), s.instruction
        assert s.intended_object in g.candidates and len(g.candidates) >= 2
        if s.task.task == "stack":  # a part cannot be stacked on itself
            assert s.task.target not in g.candidates


@pytest.mark.parametrize("suite", [s for s in suites.SUITES if s != "ambiguous"])
def test_clear_instructions_have_one_candidate_and_stay_as_they_are(setups, suite: str) -> None:
    for s in setups[suite]:
        g = ground(parse(s.instruction), s.scene.objects)
        assert g.candidates == [s.intended_object], s.instruction
        assert g.interpretations[0].instruction == s.instruction
        if s.task.target is not None and s.task.task in ("place", "stack"):
            assert g.target == s.task.target


def test_interpretations_name_one_part_in_the_simulator_phrasing(ambiguous) -> None:
    for s in ambiguous:
        g = ground(parse(s.instruction), s.scene.objects)
        parse_of = parse(s.instruction).to_dict()
        for interp in g.interpretations:
            again = ground(parse(interp.instruction), s.scene.objects)
            if interp.object == s.intended_object:  # the simulator guarantees the intended part can be told apart
                assert interp.unique and again.candidates == [interp.object], interp.instruction
            elif interp.unique:
                assert again.candidates == [interp.object], interp.instruction
            new = parse(interp.instruction).to_dict()
            assert (new["task"], new["target"], new["direction"]) == (parse_of["task"], parse_of["target"], parse_of["direction"])
        assert ground(parse(s.unambiguous_instruction), s.scene.objects).candidates == [s.intended_object]


def test_rewrites_keep_the_speakers_synonyms() -> None:
    s = next(x for x in (suites.setup(e) for e in suites.episodes("semantic")[:40]) if x.task.task == "pick")
    g = ground(parse(s.instruction), s.scene.objects)
    assert g.interpretations[0].instruction == s.instruction  # held-out words survive the rewrite


def test_nothing_fits_relaxes_the_description(ambiguous) -> None:
    s = ambiguous[0]
    parts = [o for o in s.scene.objects if o.category == "part"]
    kind = parts[0].kind
    g = ground(parse(f"lift the cyan {kind}"), s.scene.objects)  # the ambiguous suite has no cyan parts
    assert not g.exact and g.candidates == [o.name for o in parts if o.kind == kind]
    g = ground(parse("lift the disc"), s.scene.objects)  # no discs at all: every part
    assert not g.exact and g.candidates == [o.name for o in parts]


def test_ground_truth_detector_reads_env_info() -> None:
    env = WorkcellEnv("ambiguous", images=False)
    try:
        for index in range(3):
            _, info = env.reset(options={"index": index})
            objects = GroundTruthDetector().detect(None, info)
            assert all(isinstance(o, SceneObject) for o in info["objects"])
            g = ground(parse(info["instruction"]), objects)
            setup = suites.setup(suites.episode("ambiguous", index))
            assert g.candidates == list(setup.candidates)
    finally:
        env.close()
    with pytest.raises(InputError, match="objects"):
        GroundTruthDetector().detect(None, {})


def test_scene_object_to_spec_recovers_yaw() -> None:
    yaw = 0.3
    obj = SceneObject("part0", "part", "bolt", "red", "small", (0.04, 0.04, 0.06), (0.5, -0.1, 0.03), (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)))
    spec = to_spec(obj)
    assert spec.xy == (0.5, -0.1) and spec.yaw == pytest.approx(yaw) and to_spec(spec) is spec
