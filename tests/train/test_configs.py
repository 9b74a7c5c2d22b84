"""The example configs in configs/ parse and train, and the file loader names bad fields."""

import json
import os
from pathlib import Path

import pytest

from clearvla.cli import main
from clearvla.commands.train import load_config_file, parse_config
from clearvla.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def workcell_episode(tmp_path_factory):
    """One simulator demonstration at 32 px: both cameras, the 13-wide robot state and attention masks."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = tmp_path_factory.mktemp("sim") / "workcell"
    assert main(["sim", "record", "--episodes", "1", "--out", str(out), "--image-size", "32"]) == 0
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_trains(path, workcell_episode, tmp_path):
    cfg, strategy = parse_config(["--config", str(path)])
    assert cfg.datasets and cfg.max_steps > 0 and strategy == "ddp"
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--datasets", str(workcell_episode), "--run-dir", str(run),
                 "--image-size", "32", "--max-steps", "2", "--batch-size", "2", "--num-workers", "0",
                 "--save-every", "2", "--eval-every", "0", "--val-fraction", "0", "--shuffle-buffer", "1"]) == 0
    assert json.loads((run / "checkpoints" / "final.json").read_text()) == {"step": 2, "checkpoint": "step-00000002"}


def test_the_candidate_recipe_trains_chunks_from_scratch_with_the_patch_loss():
    cfg, _ = parse_config(["--config", str(CONFIGS[0].parent / "workcell_chunk.yaml"), "--max-steps", "10"])
    assert (cfg.init, cfg.action_chunk, cfg.patch_loss, cfg.max_steps) == ("tiny", 8, 1.0, 10)


def test_unknown_fields_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("init: tiny\npatch_los: 1.0\n")
    with pytest.raises(ConfigError, match="patch_los"):
        load_config_file(bad)
    bad.write_text("- init: tiny\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping of TrainConfig fields, got a list"):
        load_config_file(bad)


def test_a_base_config_is_loaded_first_and_its_fields_replaced_whole(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "root.yaml").write_text("init: tiny\nlr: 0.001\ndatasets: [a, b]\nmax_steps: 10\n")
    (tmp_path / "middle.yaml").write_text("base: common/root.yaml\nlr: 0.0002\n")
    (tmp_path / "leaf.yaml").write_text("base: middle.yaml\ndatasets: [c]\n")
    assert load_config_file(tmp_path / "leaf.yaml") == {"init": "tiny", "lr": 0.0002, "datasets": ("c",), "max_steps": 10}
    cfg, _ = parse_config(["--config", str(tmp_path / "leaf.yaml"), "--lr", "0.5"])
    assert (cfg.lr, cfg.datasets, cfg.max_steps) == (0.5, ("c",), 10)


def test_a_missing_base_or_a_cycle_of_bases_is_named(tmp_path):
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\nlr: 0.1\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml does not exist \(the base of .*orphan\.yaml\)"):
        load_config_file(tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config_file(tmp_path / "a.yaml")
