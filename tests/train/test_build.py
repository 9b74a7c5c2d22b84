"""The model a run starts from (train/build.py): a chunk checkpoint turned back into action tokens, or moved to a new
image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clearvla.train.config import TrainConfig
from clearvla.errors import ConfigError
from clearvla.models.vit import resample_position_table
from clearvla.models.vla import VLA
from clearvla.train.build import build_model


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


def test_a_checkpoint_given_a_new_image_size_resamples_its_position_tables_and_keeps_every_other_weight(
        chunk_checkpoint, norm_stats, tmp_path):
    path, chunk = chunk_checkpoint
    cfg = TrainConfig(init=str(path), proprio=True, action_chunk=2, prefix_attention="bidirectional", focus_loss=1.0,
                      image_size=48)
    bigger = build_model(cfg, norm_stats)
    assert bigger.config.image_sizes == (48, 48) and bigger.processor.image_size == 48
    trained, moved = chunk.state_dict(), bigger.state_dict()
    assert moved.keys() == trained.keys()
    for name in moved:
        if name.endswith("pos_embed"):
            assert moved[name].shape == (1, 9, trained[name].shape[2])  # 48 / 16 = a 3 x 3 grid (was 2 x 2)
        else:
            torch.testing.assert_close(moved[name], trained[name], msg=name)
    action = bigger.eval().predict_action(np.zeros((48, 48, 3), np.uint8), "push it", proprio=np.zeros(7))
    assert action.shape == (7,) and np.isfinite(action).all()
    bigger.save_pretrained(tmp_path / "bigger")
    assert VLA.from_pretrained(tmp_path / "bigger").config.image_sizes == (48, 48)
    same = build_model(TrainConfig(init=str(path), proprio=True, action_chunk=2, prefix_attention="bidirectional",
                                   focus_loss=1.0, image_size=32), norm_stats)
    torch.testing.assert_close(same.state_dict(), trained)
    with pytest.raises(ConfigError, match="not a multiple of the patch size"):
        build_model(TrainConfig(init=str(path), proprio=True, action_chunk=2, prefix_attention="bidirectional",
                                focus_loss=1.0, image_size=40), norm_stats)


def test_position_tables_resample_smoothly_and_exactly_at_the_same_grid():
    rows = torch.arange(4.0).repeat_interleave(4)  # a table that codes the row linearly, one channel
    table = torch.stack([rows, torch.ones(16)], dim=1)[None]
    torch.testing.assert_close(resample_position_table(table, 4), table)
    finer = resample_position_table(table, 8).reshape(8, 8, 2)
    torch.testing.assert_close(finer[..., 1], torch.ones(8, 8))  # a constant stays constant
    assert (finer[1:, :, 0] >= finer[:-1, :, 0]).all() and (finer[:, 1:, 0] == finer[:, :1, 0]).all()
    with pytest.raises(ValueError, match="not a square grid"):
        resample_position_table(torch.zeros(1, 6, 2), 4)


def test_execute_actions_is_written_into_the_run_and_kept_from_a_checkpoint(chunk_checkpoint, norm_stats, tmp_path):
    """A run's `execute_actions` goes into its model config (so its checkpoints are played that way), every weight
    unchanged; 0 keeps the init checkpoint's; more than the chunk is refused."""
    path, chunk = chunk_checkpoint
    replans = build_model(TrainConfig(init=str(path), proprio=True, execute_actions=1), norm_stats)
    assert replans.config.execute_actions == 1
    for name, weight in chunk.state_dict().items():
        torch.testing.assert_close(replans.state_dict()[name], weight, msg=name)
    replans.save_pretrained(tmp_path / "replans")
    kept = build_model(TrainConfig(init=str(tmp_path / "replans"), proprio=True), norm_stats)
    assert kept.config.execute_actions == 1
    fresh = build_model(TrainConfig(init="tiny", image_size=32, action_chunk=4, execute_actions=2), norm_stats)
    assert fresh.config.execute_actions == 2
    with pytest.raises(ConfigError, match="execute_actions must be an integer from 0 .* chunk length 2, got 3"):
        build_model(TrainConfig(init=str(path), proprio=True, execute_actions=3), norm_stats)
    with pytest.raises(ConfigError, match="execute_actions must be >= 0"):
        TrainConfig(execute_actions=-1)
