"""The oracle answers from ground truth, in index or free-text form, with a seeded rate of wrong answers."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.clarify.ask import Ask, question, read_answer
from clearvla.clarify.ground import ground
from clearvla.clarify.oracle import NONE_ANSWER, OracleUser
from clearvla.clarify.parse import parse
from clearvla.errors import ConfigError, InputError


def _ask(s) -> tuple[Ask, list]:
    g = ground(parse(s.instruction), s.scene.objects)
    by_name = g.by_name()
    return question([by_name[n] for n in g.candidates], g.objects), list(g.objects)


@pytest.mark.parametrize("style", ["choice", "text", "mixed"])
def test_truthful_answers_pick_the_intended_part(ambiguous, style: str) -> None:
    for s in ambiguous:
        ask, objects = _ask(s)
        oracle = OracleUser(s.intended_object, s.scene.objects, style=style, seed=s.spec.index)
        answer = oracle(ask)
        if style == "choice":
            assert isinstance(answer, int)
        elif style == "text":
            assert isinstance(answer, str)
        assert read_answer(answer, ask, objects) == [s.intended_object], (ask, answer)
        assert oracle.wrong_answers == 0


def test_wrong_answers_are_valid_other_options_at_the_set_rate(ambiguous) -> None:
    s = ambiguous[0]
    ask, objects = _ask(s)
    always = OracleUser(s.intended_object, s.scene.objects, wrong_rate=1.0, style="text", seed=0)
    for _ in range(20):
        picked = read_answer(always(ask), ask, objects)
        assert len(picked) == 1 and picked[0] in ask.candidates and picked[0] != s.intended_object
    oracle = OracleUser(s.intended_object, s.scene.objects, wrong_rate=0.3, seed=7)
    answers = [oracle(ask) for _ in range(2000)]
    wrong = np.mean([ask.candidates[a] != s.intended_object for a in answers])
    assert abs(wrong - 0.3) < 0.04 and oracle.wrong_answers == round(wrong * 2000)


def test_seeded_and_reproducible(ambiguous) -> None:
    s = ambiguous[3]
    ask, _ = _ask(s)
    a = OracleUser(s.intended_object, s.scene.objects, wrong_rate=0.5, style="mixed", seed=3)
    b = OracleUser(s.intended_object, s.scene.objects, wrong_rate=0.5, style="mixed", seed=3)
    assert [a(ask) for _ in range(30)] == [b(ask) for _ in range(30)]


def test_from_info_and_the_part_not_offered(ambiguous) -> None:
    s = ambiguous[0]
    info = {"intended_object": s.intended_object, "objects": list(s.scene.objects)}
    ask, objects = _ask(s)
    oracle = OracleUser.from_info(info, style="text")
    others = tuple(c for c in ask.candidates if c != s.intended_object)
    narrowed = Ask("Which?", tuple(f"option {k}" for k in range(len(others))), others)
    assert oracle(narrowed) == NONE_ANSWER
    assert read_answer(NONE_ANSWER, narrowed, objects) == []


def test_bad_arguments(ambiguous) -> None:
    s = ambiguous[0]
    with pytest.raises(ConfigError, match="wrong_rate"):
        OracleUser(s.intended_object, s.scene.objects, wrong_rate=1.5)
    with pytest.raises(ConfigError, match="valid styles"):
        OracleUser(s.intended_object, s.scene.objects, style="shout")
    with pytest.raises(InputError, match="not in the scene"):
        OracleUser("part99", s.scene.objects)
