"""Paraphrase files: a round trip, and files that do not fit their dataset refused with the file named."""

from __future__ import annotations

import json

import pytest

from clearvla.data.paraphrases import FORMAT, load_paraphrases, save_paraphrases
from clearvla.errors import ConfigError


def test_round_trip_keeps_every_episode_and_drops_empty_lists(tmp_path):
    path = tmp_path / "p.json"
    save_paraphrases(path, "demos", {3: ["lift the bolt", "pick up the bolt"], 0: ["push the nut left"], 1: []})
    loaded = load_paraphrases(path, "demos", episodes=4)
    assert loaded == {0: ("push the nut left",), 3: ("lift the bolt", "pick up the bolt")}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"format": FORMAT, "dataset": "other", "episodes": {}}, "made for dataset 'other', not 'demos'"),
        ({"format": FORMAT, "dataset": "demos", "episodes": {"4": ["x"]}}, r"episode key '4' .*\(0\.\.3\)"),
        ({"format": FORMAT, "dataset": "demos", "episodes": {"a": ["x"]}}, "episode key 'a'"),
        ({"format": FORMAT, "dataset": "demos", "episodes": {"0": "lift the bolt"}}, "episode 0 must map to a list"),
        ({"format": FORMAT, "dataset": "demos", "episodes": {"0": [""]}}, "non-empty strings"),
        ({"dataset": "demos", "episodes": {}}, "expected an object with \"format\""),
    ],
)
def test_a_file_that_does_not_fit_is_refused_naming_it(tmp_path, body, match):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError, match=match) as info:
        load_paraphrases(path, "demos", episodes=4)
    assert str(path) in str(info.value)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_paraphrases(tmp_path / "none.json", "demos", 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_paraphrases(tmp_path / "bad.json", "demos", 4)
