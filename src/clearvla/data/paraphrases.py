"""Paraphrase files: other instructions that mean the same as each episode's, for language augmentation in training.

A paraphrase file is JSON, written beside (never into) a dataset:

    {"format": "clearvla-paraphrases", "dataset": "workcell_train_3k",
     "episodes": {"0": ["lift the yellow block", "pick up the yellow block"], "1": [...]}}

Keys are the dataset's episode indices (0-based, in the dataset's own order); an episode without an entry trains on
its own instruction only. `clearvla sim paraphrase` writes one for a simulator recording; for robot data any
source of same-meaning instructions works (hand-written, or a language model's, checked by a person).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from clearvla.errors import ConfigError

FORMAT = "clearvla-paraphrases"


def save_paraphrases(path: str | Path, dataset: str, table: Mapping[int, Sequence[str]]) -> None:
    """Write `table` (episode index -> instructions) for the dataset named `dataset`, atomically."""
    path = Path(path)
    body = {"format": FORMAT, "dataset": dataset, "episodes": {str(i): list(v) for i, v in sorted(table.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)


def load_paraphrases(path: str | Path, dataset: str, episodes: int) -> dict[int, tuple[str, ...]]:
    """Episode index -> paraphrases (non-empty strings) from a paraphrase file made for the dataset named `dataset`,
    which has `episodes` episodes. Raises ConfigError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"paraphrase file {path} does not exist (write one with `clearvla sim paraphrase`)")
    try:
        body = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"paraphrase file {path} is not JSON: {e}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(body.get("episodes"), dict):
        raise ConfigError(f"paraphrase file {path}: expected an object with \"format\": {FORMAT!r} and an "
                          "\"episodes\" object (see clearvla.data.paraphrases)")
    if body.get("dataset") != dataset:
        raise ConfigError(f"paraphrase file {path} was made for dataset {body.get('dataset')!r}, not {dataset!r}")
    table = {}
    for key, texts in body["episodes"].items():
        if not key.isdigit() or int(key) >= episodes:
            raise ConfigError(f"paraphrase file {path}: episode key {key!r} is not an episode index of {dataset!r} "
                              f"(0..{episodes - 1})")
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ConfigError(f"paraphrase file {path}: episode {key} must map to a list of non-empty strings")
        if texts:
            table[int(key)] = tuple(texts)
    return table
