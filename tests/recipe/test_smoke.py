"""`clearvla recipe run recipes/default_model.yaml --smoke`: the whole shipped chain, every stage two steps on
one-episode recordings (17-26 s on 2 shared cores), so a broken init, a missing dataset or a stage that cannot start from
the one before fails here rather than hours into `make default-model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clearvla.cli import main
from clearvla.models.vla import VLA
from clearvla.train.vision_pretrain import read_vision

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "default_model.yaml"


def test_the_default_model_recipe_runs_end_to_end_then_skips(tmp_path: Path, capsys) -> None:
    args = ["recipe", "run", str(RECIPE), "--smoke", "--run-root", str(tmp_path)]
    assert main(args) == 0
    assert "stage11 trained in" in capsys.readouterr().out
    runs = tmp_path / "default_model"
    manifest = json.loads((runs / "stage11" / "manifest.json").read_text())
    assert manifest["steps"] == 2 and manifest["init"] == str(runs / "stage10" / "checkpoints" / "step-00000002" / "model")
    assert len(manifest["datasets"]) == 6 and manifest["git_commit"]
    assert json.loads((runs / "stage11" / "checkpoints" / "final.json").read_text())["checkpoint"] == "step-00000002"
    assert main(args) == 0
    assert "stage1 skipped" in (out := capsys.readouterr().out) and "trained" not in out


@pytest.mark.parametrize("edit, message", [
    (("init: stage4\n", "init: stage_4\n"), "stage stage5: init 'stage_4' is neither an earlier stage"),
    (("init: stage4\n", "init: stage6\n"), "stage stage5: init 'stage6' is a later stage"),
    (("workcell_handover2_1500]", "workcell_handover2_150]"),
     "stage stage6: datasets names 'workcell_handover2_150', which `datasets:` does not define"),
])
def test_a_broken_init_or_a_missing_dataset_stops_the_smoke_run_before_it_starts(tmp_path: Path, capsys, edit, message):
    text = RECIPE.read_text()
    assert edit[0] in text
    broken = tmp_path / "default_model.yaml"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    assert main(["recipe", "run", str(broken), "--smoke", "--run-root", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_recipe_with_a_pretrained_backbone_pretrains_it_then_trains_from_it(tmp_path: Path, capsys) -> None:
    recipe = RECIPE.parent / "vision_init.yaml"
    assert main(["recipe", "run", str(recipe), "--smoke", "--run-root", str(tmp_path)]) == 0
    assert "frozen trained, slow trained, scratch trained" in capsys.readouterr().out
    backbone = tmp_path / "vision" / "objects"
    assert json.loads((backbone / "vision.json").read_text())["settings"]["image_size"] == 32
    manifest = json.loads((tmp_path / "vision_init" / "slow" / "manifest.json").read_text())
    assert manifest["config"]["vision_init"] == str(backbone) and set(manifest["vision"]) == {"objects"}
    assert json.loads((tmp_path / "vision_init" / "scratch" / "manifest.json").read_text())["vision"] == {}
    pretrained = read_vision(backbone)
    for stage, kept in (("frozen", True), ("slow", False)):
        final = tmp_path / "vision_init" / stage / "checkpoints" / "step-00000002" / "model"
        trained = VLA.from_pretrained(final).vision_backbone.state_dict()
        same = all(torch.equal(trained[name].float(), tensor.float()) for name, tensor in pretrained.items())
        assert same == kept, f"{stage}: the backbone was {'changed' if kept else 'kept'} by VLA training"
