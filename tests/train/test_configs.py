"""The shipped training recipes in configs/ parse into a TrainConfig, and the file loader names bad fields."""

from pathlib import Path

import pytest

from clearvla.commands.train import load_config_file, parse_config
from clearvla.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recipe_parses(path):
    cfg, strategy = parse_config(["--config", str(path)])
    assert cfg.datasets and cfg.max_steps > 0 and strategy == "ddp"


def test_the_candidate_recipe_trains_chunks_from_scratch_with_the_patch_loss():
    cfg, _ = parse_config(["--config", str(CONFIGS[0].parent / "workcell_chunk.yaml"), "--max-steps", "10"])
    assert (cfg.init, cfg.action_chunk, cfg.patch_loss, cfg.max_steps) == ("tiny", 8, 1.0, 10)


def test_unknown_fields_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("init: tiny\npatch_los: 1.0\n")
    with pytest.raises(ConfigError, match="patch_los"):
        load_config_file(bad)
