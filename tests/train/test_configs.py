"""The example configs in configs/ parse and train, and the file loader names bad fields."""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from clearvla.cli import main
from clearvla.commands.train import load_config_file, parse_config
from clearvla.errors import ConfigError
from clearvla.train.config import TrainConfig

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


def test_a_grouped_config_reads_as_the_flat_one_and_misplaced_fields_are_named(tmp_path):
    (tmp_path / "flat.yaml").write_text("init: tiny\nlr: 0.001\ndatasets: [a]\npatch_loss: 1.0\n")
    (tmp_path / "grouped.yaml").write_text("model: {init: tiny}\noptim: {lr: 0.001}\ndata:\n  datasets: [a]\n"
                                           "objectives: {patch_loss: 1.0}\n")
    flat, _ = parse_config(["--config", str(tmp_path / "flat.yaml")])
    grouped, _ = parse_config(["--config", str(tmp_path / "grouped.yaml"), "--max-steps", "7"])
    assert replace(grouped, max_steps=1000) == flat and grouped.optim.max_steps == 7 and grouped.optim.lr == 0.001
    (tmp_path / "bad.yaml").write_text("optim: {init: tiny}\n")
    with pytest.raises(ConfigError, match="init belongs in model, not optim"):
        load_config_file(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("model: tiny\n")
    with pytest.raises(ConfigError, match=r"model is a group of fields \(init, "):
        load_config_file(tmp_path / "bad.yaml")


def test_removed_options_are_refused_with_what_they_measured(tmp_path):
    for line, measured in (("widen: 2", "529 vs stage 11's 545"), ("paraphrases: [p.json]", "510 vs its control's 506"),
                           ("slot_embeddings: true", "attention_loss > 0")):
        (tmp_path / "old.yaml").write_text(f"init: tiny\n{line}\n")
        with pytest.raises(ConfigError, match=f"{line.split(':')[0]} was removed: .*{measured}.*delete it"):
            load_config_file(tmp_path / "old.yaml")


def test_a_run_directory_of_an_older_version_still_reads(tmp_path):
    from clearvla.train.merge import load_run_config

    old = {"run_dir": "runs/x", "init": "tiny", "widen": 1, "slot_embeddings": True, "attention_loss": 1.0,
           "action_chunk": 8, "paraphrases": [], "paraphrase_prob": 0.5, "mode": "lora", "lr": 0.0002,
           "datasets": ["a"], "some_future_field": 3}
    (tmp_path / "train_config.json").write_text(json.dumps(old))
    cfg = load_run_config(tmp_path)
    assert (cfg.model.mode, cfg.optim.lr, cfg.data.datasets, cfg.slot_embeddings) == ("lora", 0.0002, ("a",), True)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what runs save now reads back the same
    (tmp_path / "train_config.json").write_text(json.dumps({**old, "widen": 2}))
    with pytest.raises(ConfigError, match="the run used widen=2, which was removed"):
        load_run_config(tmp_path)


def test_defaults_are_what_the_recipes_use():
    from clearvla.data.loader import BUFFER_EPISODES

    recipe = load_config_file(CONFIGS[0].parent / "workcell_chunk.yaml")
    assert TrainConfig().outlier_k == recipe["outlier_k"] == 10.0
    assert TrainConfig().shuffle_buffer == recipe["shuffle_buffer"] == BUFFER_EPISODES == 64
