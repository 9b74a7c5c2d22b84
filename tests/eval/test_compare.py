"""`clearvla compare`: two eval reports of the same episodes -> paired won / lost and exact McNemar p."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearvla.cli import main
from clearvla.errors import InputError
from clearvla.eval.compare import compare, load_outcomes
from clearvla.eval.report import EpisodeResult, SuiteReport, write_reports
from clearvla.eval.stats import exact_mcnemar


def _report(out: Path, suite: str, outcomes: dict[int, bool]) -> Path:
    episodes = [EpisodeResult(suite, i, "lift", "lift the bolt", ok, 10, failure=None if ok else "no_grasp")
                for i, ok in outcomes.items()]
    write_reports([SuiteReport("ck", suite, episodes)], out)
    return out


def test_pairs_by_episode_across_files(tmp_path: Path) -> None:
    # Baseline: episodes 0-9 in two files; new: 0-11 in one (10 and 11 have no partner and are left out).
    base = [_report(tmp_path / "a", "train", {i: i < 3 for i in range(5)}),
            _report(tmp_path / "b", "train", {i: i in (5, 6) for i in range(5, 10)})]
    new = _report(tmp_path / "new", "train", {i: i in (0, 4, 5, 7, 8, 9, 10) for i in range(12)})
    result = compare(load_outcomes(base), load_outcomes([new]))
    train = result["suites"]["train"]
    assert (train["episodes"], train["first"], train["last"]) == (10, 0, 9)
    assert (train["baseline"]["successes"], train["new"]["successes"]) == (5, 6)
    assert (train["won"], train["lost"]) == (4, 3)  # won 4, 7, 8, 9; lost 1, 2, 6
    assert train["mcnemar_p"] == pytest.approx(exact_mcnemar(4, 3))
    assert train["baseline"]["failure_modes"] == {"no_grasp": 5}
    assert result["unpaired"] == {"baseline": 0, "new": 2}


def test_cli_prints_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _report(tmp_path / "base", "train", {i: False for i in range(20)})
    new = _report(tmp_path / "new", "train", {i: True for i in range(20)})
    assert main(["compare", "--baseline", str(base), "--new", str(new / "report.json"), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| train (0–19) | 20 | 0 (0.0%" in out and "| 20 / 0 |" in out
    assert json.loads((tmp_path / "c.json").read_text())["suites"]["train"]["mcnemar_p"] < 1e-5


def test_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _report(tmp_path / "a", "train", {0: True, 1: False})
    b = _report(tmp_path / "b", "train", {5: True})
    with pytest.raises(InputError, match="share no episode"):
        compare(load_outcomes([a]), load_outcomes([b]))
    c = _report(tmp_path / "c", "train", {1: True})  # episode 1 again, with another outcome
    with pytest.raises(InputError, match="episode 1 is listed with two different outcomes"):
        load_outcomes([a, c])
    (tmp_path / "bad.json").write_text('{"episodes": []}')
    with pytest.raises(InputError, match="bad.json: not a `clearvla eval` report"):
        load_outcomes([tmp_path / "bad.json"])
    assert main(["compare", "--baseline", str(tmp_path / "missing"), "--new", str(a)]) == 2
    assert "missing: no such report" in capsys.readouterr().err
