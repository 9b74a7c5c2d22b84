"""Suites are fixed, balanced and depart from training along the axis they claim; instructions are structured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clearvla.errors import ConfigError
from clearvla.scene import language as lang
from clearvla.scene import vocab
from clearvla.sim import suites
from clearvla.scene.objects import PART_DIMS, PHYSICAL_DIMS
from clearvla.sim.arm import HOME_QPOS, ArmLimits
from clearvla.sim.geometry import mat_to_rpy
from clearvla.sim.sampling import PART_REGION, START_BOX, sample_setup
from clearvla.sim.scene import SceneSpec
from clearvla.sim.world import Workcell


def setups(suite: str, n: int = 40):
    return [suites.setup(spec) for spec in suites.episodes(suite)[:n]]


def test_episode_lists_are_fixed_and_balanced() -> None:
    a, b = suites.episodes("train"), suites.episodes("train")
    assert a == b and len(a) == suites.SUITE_SIZES["train"]
    assert [s.task for s in a[:8]] == ["pick", "place", "stack", "push"] * 2
    assert suites.setup(a[3]) == suites.setup(a[3])
    assert len({s.seed for s in suites.episodes("visual")}) == suites.SUITE_SIZES["visual"]
    with pytest.raises(ConfigError, match="valid suites"):
        suites.episode("nope", 0)


def test_a_task_filter_picks_that_tasks_episodes_in_order() -> None:
    """`sim record --tasks` and `eval --tasks` hold a task out of training, or play only it."""
    assert suites.indices("train", 4000, 4010, ["stack"]) == [4002, 4006]
    assert suites.indices("semantic", 0, 6) == list(range(6))
    assert all(suites.episode("train", i).task != "stack" for i in suites.indices("train", 0, 400, ["pick", "place", "push"]))
    with pytest.raises(ConfigError, match=r"unknown task\(s\) 'lift'; tasks: pick, place, stack, push"):
        suites.indices("train", tasks=["pick", "lift"])


@pytest.mark.parametrize("suite", suites.SUITES)
def test_instructions_name_the_intended_part(suite: str) -> None:
    for s in setups(suite, 12):
        objects = s.scene.objects
        by_name = {o.name: o for o in objects}
        focus = by_name[s.intended_object]
        assert s.task.obj == s.intended_object and focus.category == "part"
        parse = s.parse["object"]
        assert parse["kind"] == focus.kind
        assert parse["colour"] in (None, focus.colour) and parse["size"] in (None, focus.size)
        assert 2 <= len(objects) <= 9 and s.instruction
        if suite == "ambiguous":
            assert len(s.candidates) >= 2 and s.distinguishing_attributes
        else:
            assert list(s.candidates) == [s.intended_object]
            assert s.unambiguous_instruction == s.instruction


def test_train_scenes_are_small() -> None:
    for s in setups("train"):
        assert 2 <= sum(o.category == "part" for o in s.scene.objects) <= 3
        assert all(o.category != "distractor" for o in s.scene.objects)


def test_motion_puts_the_part_outside_the_training_region() -> None:
    for s in setups("motion"):
        xy = next(o.xy for o in s.scene.objects if o.name == s.intended_object)
        (x0, x1), (y0, y1) = PART_REGION
        assert not (x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1)


def test_physical_uses_unseen_sizes_and_shapes() -> None:
    seen = {dims for table in PART_DIMS.values() for dims in table.values()}
    for s in setups("physical"):
        focus = next(o for o in s.scene.objects if o.name == s.intended_object)
        nominal = PHYSICAL_DIMS[focus.kind][focus.size]
        assert nominal not in seen
        assert np.allclose(focus.dims, nominal, rtol=0.04)


def test_semantic_uses_unseen_colours_and_words() -> None:
    for s in setups("semantic"):
        focus = next(o for o in s.scene.objects if o.name == s.intended_object)
        assert focus.colour in vocab.HELDOUT_PART_COLOURS
        verb = s.instruction.split()[0]
        assert verb in {t.split()[0] for t in sum(vocab.HELDOUT_TEMPLATES.values(), ())}
        if vocab.heldout_forms("kind", focus.kind):
            assert not any(f" {w} " in f" {s.instruction} " for w in [vocab.train_form("kind", focus.kind)])


def test_visual_varies_appearance_and_adds_distractors() -> None:
    looks = [s.scene.appearance for s in setups("visual", 10)]
    assert len({a.table_rgb for a in looks}) == 10
    assert all(any(o.category == "distractor" for o in s.scene.objects) for s in setups("visual", 10))


def test_vocab_canonical_and_relations() -> None:
    assert vocab.canonical("cube") == [("kind", "block")]
    assert vocab.canonical("Crimson") == [("colour", "red")]
    assert ("size", "small") in vocab.canonical("tiny")
    s = suites.setup(suites.episode("train", 0))
    objects = s.scene.objects
    for o in objects:
        if o.category == "part":
            ref = lang.describe(o, objects, np.random.default_rng(0))
            assert ref is None or lang.candidates(ref, objects) == [o.name]


def test_vocab_tables_agree_with_the_object_tables() -> None:
    from clearvla.scene.objects import DISTRACTOR_DIMS, TARGET_DIMS

    assert vocab.PART_KINDS == tuple(PART_DIMS)
    assert set(vocab.PHYSICAL_PART_KINDS) == set(PHYSICAL_DIMS) - set(PART_DIMS)
    assert vocab.TARGET_KINDS == tuple(TARGET_DIMS) and vocab.DISTRACTOR_KINDS == tuple(DISTRACTOR_DIMS)
    for kind in (*vocab.PART_KINDS, *vocab.PHYSICAL_PART_KINDS, *vocab.TARGET_KINDS):
        assert vocab.SURFACE_FORMS["kind"][kind][0] == kind
    for colour in (*vocab.PART_COLOURS, *vocab.TARGET_COLOURS):
        assert vocab.SURFACE_FORMS["colour"][colour][0] == colour
    assert set(vocab.SURFACE_FORMS["size"]) == set(vocab.SIZES)
    assert set(vocab.SURFACE_FORMS["relation"]) == set(vocab.RELATIONS)
    assert set(vocab.SURFACE_FORMS["direction"]) == set(vocab.DIRECTIONS)


def test_arm_starts_each_episode_at_its_own_pose_in_the_start_box() -> None:
    starts = np.array([s.scene.arm_start for s in setups("train")])
    low, high = np.array(START_BOX).T
    assert np.all((starts >= low) & (starts <= high))
    assert len({tuple(s) for s in starts}) == len(starts)  # no shared start pose for a position to give away
    spec = suites.episode("train", 5)
    world = Workcell(suites.setup(spec).scene, image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())
    pos, mat = world.arm.ee_pose(world.data)
    np.testing.assert_allclose(pos, starts[5][:3], atol=2e-3)
    np.testing.assert_allclose(mat_to_rpy(mat), [0.0, 0.0, starts[5][3]], atol=2e-2)
    assert world.arm.gripper_opening(world.data) == 1.0


def test_random_start_changes_nothing_else_and_can_be_turned_off() -> None:
    spec = suites.episode("semantic", 3)  # held-out wording draws from the same generator
    cfg = suites.SUITE_CONFIGS["semantic"]
    random, home = sample_setup(cfg, spec), sample_setup(replace(cfg, random_start=False), spec)
    assert home.scene.arm_start is None and random.scene.arm_start is not None
    assert replace(random, scene=replace(random.scene, arm_start=None)) == home
    world = Workcell(home.scene, image_size=64, physics_dt=0.002, control_dt=0.1, limits=ArmLimits())
    np.testing.assert_allclose(world.arm.joints(world.data), HOME_QPOS, atol=1e-9)


def test_an_unreachable_start_pose_is_refused() -> None:
    with pytest.raises(ConfigError, match="arm_start .* out of the arm's reach"):
        Workcell(SceneSpec((), arm_start=(1.5, 0.0, 0.2, 0.0)), image_size=64, physics_dt=0.002, control_dt=0.1,
                 limits=ArmLimits())
