"""Questions separate the candidates; answers (index or free text) resolve to the candidate they describe."""

from __future__ import annotations

import itertools

import pytest

from clearvla.clarify import features as ft
from clearvla.clarify.ask import Act, Ask, Conversation, question, read_answer
from clearvla.clarify.ground import ground
from clearvla.clarify.parse import parse
from clearvla.errors import InputError
from clearvla.scene.objects import ObjectSpec


def _group(s):
    g = ground(parse(s.instruction), s.scene.objects)
    by_name = g.by_name()
    return g, [by_name[n] for n in g.candidates]


def test_options_are_pairwise_distinguishable_and_each_answer_resolves(ambiguous) -> None:
    for s in ambiguous:
        g, group = _group(s)
        ask = question(group, g.objects)
        assert ask.candidates == tuple(g.candidates) and len(ask.options) == len(group)
        assert len(set(ask.options)) == len(ask.options), ask
        for i, (option, name) in enumerate(zip(ask.options, ask.candidates)):
            assert option in ask.question
            assert read_answer(i, ask, g.objects) == [name]
            assert read_answer(option, ask, g.objects) == [name]
            # the description itself, not the verbatim match, must single it out
            paraphrase = "it is the other one" if " other " in option else f"it is {option}"
            if "(option" not in option:
                assert read_answer(paraphrase, ask, g.objects) == [name], (ask, option)


def test_the_intended_part_always_has_a_separating_description(ambiguous) -> None:
    for s in ambiguous:
        g, group = _group(s)
        intended = g.by_name()[s.intended_object]
        combo = ft.separating(intended, group, g.objects)
        assert combo is not None, s.instruction
        others = [o for o in group if o.name != intended.name]
        assert all(ft.excludes(combo, intended, o, group, g.objects) for o in others)


def _part(name: str, colour: str, size: str, y: float, kind: str = "bolt", x: float = 0.45) -> ObjectSpec:
    return ObjectSpec(name, "part", kind, colour, size, (0.05, 0.05, 0.07), (x, y), 0.0)


TRAY = ObjectSpec("target0", "target", "tray", "grey", "medium", (0.19, 0.14, 0.022), (0.45, 0.22), 0.0)
# three red bolts, left to right in the camera (image-left is world -y); sizes tell two apart
SCENE = [_part("part0", "red", "small", -0.15), _part("part1", "red", "small", 0.0), _part("part2", "red", "large", 0.12), TRAY]


def test_questions_name_colour_size_side_and_landmarks() -> None:
    two = [_part("a", "red", "small", -0.1), _part("b", "blue", "small", 0.1)]
    assert question(two, two).question == "Which bolt do you mean: the red bolt, or the blue bolt?"
    two = [_part("a", "red", "small", -0.1), _part("b", "red", "large", 0.1)]
    assert question(two, two).options == ("the small bolt", "the large bolt")
    two = [_part("a", "red", "small", -0.1), _part("b", "red", "small", 0.1)]
    assert question(two, two).options == ("the bolt on the left", "the bolt on the right")
    ask = question(SCENE[:3], SCENE)
    assert ask.options == ("the bolt on the left", "the bolt in the middle", "the bolt on the right")
    twins = [_part("a", "red", "small", 0.0, x=0.40), _part("b", "red", "small", 0.0, x=0.55)]
    assert question(twins, twins).options == ("the bolt (option 1)", "the bolt (option 2)")
    mixed = [_part("a", "red", "small", -0.1), _part("b", "red", "small", 0.1, kind="nut")]
    assert question(mixed, mixed).question.startswith("Which part do you mean")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("the large one", ["part2"]),
        ("the bigger one", ["part2"]),
        ("the small one", ["part0", "part1"]),
        ("the leftmost", ["part0"]),
        ("on the left", ["part0"]),
        ("the one next to the tray", ["part2"]),
        ("the one closest to the tray", ["part2"]),
        ("the small bolt in the middle", ["part1"]),
        ("the one left of the tray", ["part0", "part1", "part2"]),
        ("2", ["part1"]),
        ("option 3", ["part2"]),
        ("the second", ["part1"]),
        ("the last one", ["part2"]),
        ("the blue one", []),
        ("none of those", []),
        ("no idea", []),
        ("hmm", ["part0", "part1", "part2"]),
    ],
)
def test_free_text_answers(answer: str, expected: list[str]) -> None:
    ask = question(SCENE[:3], SCENE)
    assert read_answer(answer, ask, SCENE) == expected


def test_bad_answers_raise() -> None:
    ask = question(SCENE[:3], SCENE)
    for bad in (3, -1, True, 1.5, None):
        with pytest.raises(InputError):
            read_answer(bad, ask, SCENE)  # type: ignore[arg-type]


def _conversation(max_turns: int = 2) -> Conversation:
    g = ground(parse("put the bolt in the tray"), SCENE)
    return Conversation(g, g.candidates, {"part0": 0.2, "part1": 0.5, "part2": 0.3}, max_turns)


def test_conversation_narrows_then_resolves() -> None:
    c = _conversation()
    first = c.start()
    assert isinstance(first, Ask) and len(first.options) == 3
    second = c.reply("a small one")  # narrows to two: ask again about those only
    assert isinstance(second, Ask) and second.candidates == ("part0", "part1")
    assert second.options == ("the bolt on the left", "the bolt on the right")
    act = c.reply("the right one")
    assert act == Act(c._instruction("part1"), "part1", True, "answered")
    assert c.turns == 2 and len(c.history) == 2
    # part0 and part1 are twins (small, red, both left of the tray): the simulator's grammar cannot single part1
    # out, so its instruction stays the closest wording and the interpretation says so
    assert act.instruction == "put the small red bolt in the tray" and not c.grounding.interpretations[1].unique
    with pytest.raises(InputError, match="no pending question"):
        c.reply(0)


def test_conversation_stops_after_an_answer_that_resolves_nothing() -> None:
    for useless in ("hmm", "none of those", "the blue one"):
        c = _conversation()
        c.start()
        act = c.reply(useless)
        assert act == Act(c._instruction("part1"), "part1", False, "unhelpful_answer")  # the top-scored candidate


def test_conversation_turn_limits() -> None:
    c = _conversation(max_turns=1)
    c.start()
    act = c.reply("the small one")  # narrowed to two, but no turns left: act on the best of those
    assert isinstance(act, Act) and (act.object, act.resolved, act.reason) == ("part1", False, "max_turns")
    c = _conversation(max_turns=0)
    act = c.start()
    assert isinstance(act, Act) and (act.object, act.reason) == ("part1", "max_turns") and c.turns == 0
    with pytest.raises(InputError, match="max_turns"):
        _conversation(max_turns=-1)


def test_json_forms() -> None:
    ask = question(SCENE[:2], SCENE)
    assert ask.to_json() == {"type": "ask", "question": ask.question, "options": list(ask.options)}
    assert Act("lift the red bolt", "part0").to_json() == {"type": "act", "instruction": "lift the red bolt"}


def test_features_are_strict_only_with_a_clear_margin() -> None:
    close = [_part("a", "red", "small", 0.0), _part("b", "red", "small", 0.01)]
    assert not any(f.attribute == "side" for f in ft.features(close[0], close, close))
    assert ft.holds(ft.Feature("side", "right"), close[1], close, close, strict=False)
    for a, b in itertools.permutations(SCENE[:3], 2):
        assert ft.excludes((ft.Feature("size", a.size),), a, b, SCENE[:3], SCENE) == (a.size != b.size)
