"""The model a run starts from (train/build.py): a chunk checkpoint turned back into action tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clearvla.config import TrainConfig
from clearvla.data.stats import compute_statistics
from clearvla.errors import ConfigError
from clearvla.models.vla import VLA
from clearvla.train.build import build_model


@pytest.fixture(scope="module")
def norm_stats():
    rng = np.random.default_rng(0)
    return {"cell": compute_statistics(rng.normal(0, 0.01, (64, 7)), rng.normal(0, 1, (64, 7)), 4)}


@pytest.fixture(scope="module")
def chunk_checkpoint(tmp_path_factory, norm_stats):
    chunk = VLA.from_config("tiny", image_size=32, proprio_dim=7, action_chunk=2, prefix_attention="bidirectional",
                            slot_embeddings=True, focus_head=True, norm_stats=norm_stats, seed=3)
    path = tmp_path_factory.mktemp("chunk") / "model"
    chunk.save_pretrained(path)
    return path, chunk


def test_action_tokens_drop_the_chunk_modules_and_keep_every_other_weight(chunk_checkpoint, norm_stats):
    path, chunk = chunk_checkpoint
    tokens = build_model(TrainConfig(init=str(path), proprio=True, action_tokens=True), norm_stats)
    assert tokens.config.action_chunk == 0 and tokens.config.prefix_attention == "causal"
    assert tokens.action_head is None and tokens.action_slots is None and tokens.focus_head is None
    trained = chunk.state_dict()
    kept = tokens.state_dict()
    assert not any(k.split(".")[0] in ("action_head", "action_slots", "focus_head") for k in kept)
    for name in kept:
        torch.testing.assert_close(kept[name], trained[name], msg=name)
    action = tokens.eval().predict_action(np.zeros((32, 32, 3), np.uint8), "push it", proprio=np.zeros(7))
    assert action.shape == (7,)


def test_action_tokens_need_a_chunk_checkpoint(chunk_checkpoint, norm_stats, tmp_path):
    with pytest.raises(ConfigError, match="already a token model"):
        build_model(TrainConfig(init="tiny", action_tokens=True), norm_stats)
    token_model = VLA.from_config("tiny", image_size=32, norm_stats=norm_stats)
    token_model.save_pretrained(tmp_path / "tokens")
    with pytest.raises(ConfigError, match="already decodes action tokens"):
        build_model(TrainConfig(init=str(tmp_path / "tokens"), action_tokens=True), norm_stats)
    with pytest.raises(ConfigError, match="set one"):
        TrainConfig(init=str(chunk_checkpoint[0]), action_tokens=True, action_chunk=8)
