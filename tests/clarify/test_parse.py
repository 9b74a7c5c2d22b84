"""The parser reads the simulator's vocabulary, synonyms and spatial relations, and agrees with its ground truth."""

from __future__ import annotations

import pytest

from clearvla.clarify.parse import Anchor, Description, ParseError, parse
from clearvla.errors import InputError
from clearvla.scene import vocab
from clearvla.sim import suites


@pytest.mark.parametrize("suite", suites.SUITES)
def test_parse_agrees_with_the_simulator_ground_truth(setups, suite: str) -> None:
    for s in setups[suite]:
        assert parse(s.instruction).to_dict() == s.parse, s.instruction


def test_every_synonym_reads_as_its_canonical_value() -> None:
    for kind in vocab.PART_KINDS:
        for form in vocab.SURFACE_FORMS["kind"][kind]:
            for colour, colour_forms in vocab.SURFACE_FORMS["colour"].items():
                r = parse(f"pick up the {colour_forms[-1]} {form}")
                assert (r.object.kind, r.object.colour) == (kind, colour)
    for size, forms in vocab.SURFACE_FORMS["size"].items():
        for form in forms:
            assert parse(f"lift the {form} bolt").object == Description("bolt", size=size)
    for direction, forms in vocab.SURFACE_FORMS["direction"].items():
        for form in forms:
            r = parse(f"slide the nut {form}")
            assert (r.task, r.direction) == ("push", direction)


@pytest.mark.parametrize(
    ("text", "relation", "anchor"),
    [
        ("pick up the bolt left of the tray", "left of", Anchor("tray")),
        ("hoist the hexagon to the right of the threaded rod", "right of", Anchor("bolt")),
        ("lift the small red block on the left of the black bin", "left of", Anchor("bin", "black")),
    ],
)
def test_spatial_relations_and_anchors(text: str, relation: str, anchor: Anchor) -> None:
    r = parse(text)
    assert (r.task, r.object.relation, r.object.anchor, r.target) == ("pick", relation, anchor, None)


def test_targets_tasks_and_spans() -> None:
    r = parse("put the nut right of the plate on top of the plate")
    assert (r.task, r.object.relation, r.target) == ("stack", "right of", Description("plate"))
    assert r.instruction[slice(*r.object_span)] == "nut right of the plate"
    r = parse("Drop the big brick into the grey pan.")
    assert (r.task, r.verb, r.object, r.target) == ("place", "drop", Description("block", size="large"), Description("tray", "grey"))
    assert r.instruction[slice(*r.object_span)] == "big brick" and r.words[("kind", "block")] == "brick"
    assert parse("push the bolt to the left").direction == "left"
    assert parse("pile the orange ring on the cube").task == "stack"


def test_free_form_instructions() -> None:
    r = parse("please grab the small red screw and put it into the tote")
    assert (r.task, r.object, r.target) == ("place", Description("bolt", "red", "small"), Description("tray"))
    assert r.verb is None and "please" in r.unknown
    # a noun phrase without a target preposition is not a target
    r = parse("pick up the red bolt near the tray")
    assert (r.task, r.target, r.unknown) == ("pick", None, ("near",))


@pytest.mark.parametrize("text", ["", "   ", "do the thing", "put the tray in the bin"])
def test_no_part_named_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="part|non-empty") as e:
        parse(text)
    assert isinstance(e.value, InputError)
