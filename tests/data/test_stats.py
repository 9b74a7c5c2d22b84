"""Statistics in OpenVLA's dataset_statistics.json format, equal to numpy's quantiles, cached by content hash."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clearvla.actions.normalize import NormStats
from clearvla.data.cleaning import CleaningConfig
from clearvla.data.formats import open_source
from clearvla.data.formats.lerobot import LeRobotSource, read_lerobot
from clearvla.data.index import scan_dataset
from clearvla.data.stats import compute_statistics, load_dataset_statistics, save_dataset_statistics
from clearvla.errors import DataError


def test_block_format_and_numpy_quantiles():
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(501, 7)).astype(np.float32)
    proprio = rng.normal(size=(501, 8)).astype(np.float32)
    block = compute_statistics(actions, proprio, num_trajectories=9)
    assert set(block) == {"action", "proprio", "num_transitions", "num_trajectories"}
    assert set(block["action"]) == {"mean", "std", "max", "min", "q01", "q99", "mask"}
    assert block["action"]["q01"] == np.quantile(actions, 0.01, axis=0).tolist()
    assert block["action"]["q99"] == np.quantile(actions, 0.99, axis=0).tolist()
    assert block["proprio"]["q99"] == np.quantile(proprio, 0.99, axis=0).tolist()
    assert block["action"]["mask"] == [True] * 6 + [False]
    np.testing.assert_allclose(block["action"]["std"], actions.astype(np.float64).std(0))
    assert (block["num_transitions"], block["num_trajectories"]) == (501, 9)
    stats = NormStats.from_dict(block["action"])  # the consumer
    normalised = stats.normalize(actions)
    assert normalised[:, :6].min() >= -1 and normalised[:, :6].max() <= 1
    np.testing.assert_array_equal(normalised[:, 6], actions[:, 6])  # gripper untouched


def test_without_proprio_gets_zero_proprio_of_action_width():
    block = compute_statistics(np.ones((3, 7), np.float32), None, 1)
    assert block["proprio"]["mean"] == [0.0] * 7


def test_scan_statistics_equal_numpy_over_cleaned_steps(lerobot_dataset):
    root = lerobot_dataset(4)
    index = scan_dataset(open_source(root), CleaningConfig(drop_outliers=False))
    actions = np.concatenate([e.actions for e in read_lerobot(root)])
    assert index.statistics["action"]["q01"] == np.quantile(actions, 0.01, axis=0).tolist()
    assert index.statistics["action"]["q99"] == np.quantile(actions, 0.99, axis=0).tolist()
    assert index.num_transitions == len(actions) == 46 and index.num_trajectories == 4


def test_save_and_load_round_trip(tmp_path):
    stats = {"toy": compute_statistics(np.random.default_rng(1).normal(size=(50, 7)).astype(np.float32), None, 2)}
    path = save_dataset_statistics(tmp_path / "dataset_statistics.json", stats)
    assert load_dataset_statistics(path) == json.loads(json.dumps(stats))
    path.write_text(json.dumps({"toy": {"proprio": {}}}))
    with pytest.raises(DataError, match="no 'action' statistics"):
        load_dataset_statistics(path)


def test_cache_hit_skips_the_scan_and_content_change_misses(lerobot_dataset, tmp_path, monkeypatch):
    root = lerobot_dataset(3)
    cache = tmp_path / "cache"
    first = scan_dataset(LeRobotSource(root), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("episodes were read despite a cache hit")

    monkeypatch.setattr(LeRobotSource, "load", no_reading)
    second = scan_dataset(LeRobotSource(root), cache_dir=cache)
    assert second.statistics == first.statistics and second.key == first.key
    np.testing.assert_array_equal(second.episodes[2].actions, first.episodes[2].actions)
    monkeypatch.undo()
    other_rules = scan_dataset(LeRobotSource(root), CleaningConfig(min_steps=5), cache_dir=cache)
    assert other_rules.key != first.key
    data = next((root / "data").rglob("*.parquet"))
    data.write_bytes(data.read_bytes())  # same bytes: same key
    assert scan_dataset(LeRobotSource(root), cache_dir=cache).key == first.key
    tasks = root / "meta/tasks.parquet"
    pq.write_table(pa.table({"task_index": [0, 1], "task": ["new task 0", "new task 1"]}), tasks)
    changed = scan_dataset(LeRobotSource(root), cache_dir=cache)
    assert changed.key != first.key and changed.episodes[0].instruction == "new task 0"


def test_nothing_left_after_cleaning_is_an_error(tmp_path, synth):
    from clearvla.data.formats.lerobot import LeRobotWriter

    with LeRobotWriter(tmp_path / "ds", fps=10) as writer:
        writer.add_episode(synth.make_episode(4, instruction=""))
    with pytest.raises(DataError, match="no usable episodes"):
        scan_dataset(open_source(tmp_path / "ds"))
