"""docs/reference/train_config.md is what scripts/gen_train_config_doc.py generates from TrainConfig's docstrings."""

from __future__ import annotations

import importlib.util
from dataclasses import fields
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_train_config_doc.py"


def _script():
    spec = importlib.util.spec_from_file_location("gen_train_config_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_train_config_reference_is_up_to_date():
    gen = _script()
    expected = gen.render(gen.SOURCE.read_text())
    on_disk = gen.TARGET.read_text() if gen.TARGET.is_file() else ""
    assert on_disk == expected, f"{gen.TARGET.name} is stale (TrainConfig's fields or docstrings changed): run {gen.COMMAND}"


def test_the_reference_documents_every_field_in_its_group():
    from clearvla.train.config import GROUPS

    documented = {group: [row[0] for row in rows] for group, _, rows in _script().groups(_script().SOURCE.read_text())}
    assert documented == {group: [f.name for f in fields(cls)] for group, cls in GROUPS.items()}
