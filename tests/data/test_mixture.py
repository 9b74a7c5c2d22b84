"""Mixtures: OpenVLA's weight semantics, the train/val split by episode, norm_stats of every member."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.data.mixture import DatasetSpec, Mixture, sampling_probabilities, split_episodes
from clearvla.errors import ConfigError


def test_balanced_weights_multiply_by_dataset_size():
    np.testing.assert_allclose(sampling_probabilities([1, 1], [300, 100], balance=True), [0.75, 0.25])
    np.testing.assert_allclose(sampling_probabilities([1, 3], [300, 100], balance=True), [0.5, 0.5])
    np.testing.assert_allclose(sampling_probabilities([1, 3], [300, 100], balance=False), [0.25, 0.75])
    with pytest.raises(ConfigError, match="weights"):
        sampling_probabilities([0, 0], [1, 1], balance=True)
    with pytest.raises(ConfigError, match="weights"):
        sampling_probabilities([1, -1], [1, 1], balance=False)


def test_split_is_by_episode_seeded_and_disjoint():
    train, val = split_episodes(40, 0.1, seed=0, name="a")
    assert len(val) == 4 and len(train) == 36
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(40))
    again, val_again = split_episodes(40, 0.1, seed=0, name="a")
    assert np.array_equal(val, val_again)
    assert not np.array_equal(val, split_episodes(40, 0.1, seed=1, name="a")[1])
    assert len(split_episodes(1, 0.5, seed=0, name="a")[0]) == 1  # train keeps at least one episode
    with pytest.raises(ConfigError):
        split_episodes(10, 1.0, seed=0, name="a")


def test_build_from_paths_and_weights(lerobot_dataset, tmp_path):
    a, b = lerobot_dataset(4, name="alpha"), lerobot_dataset(2, name="beta")
    mixture = Mixture.build({str(a): 1.0, str(b): 2.0}, val_fraction=0.25, seed=0, cache_dir=tmp_path / "cache")
    assert [m.name for m in mixture.members] == ["alpha", "beta"]
    assert set(mixture.norm_stats) == {"alpha", "beta"}
    sizes = [m.index.num_transitions for m in mixture.members]
    assert sizes == [46, 21]
    expected = np.array([1.0 * 46, 2.0 * 21]) / (46 + 42)
    np.testing.assert_allclose(list(mixture.probabilities.values()), expected)
    assert len(mixture.members[0].val) == 1 and len(mixture.members[0].train) == 3
    path = mixture.save_norm_stats(tmp_path / "dataset_statistics.json")
    assert path.is_file()


def test_duplicate_names_are_refused(lerobot_dataset):
    a = lerobot_dataset(2, name="alpha")
    with pytest.raises(ConfigError, match="unique"):
        Mixture.build([DatasetSpec(a), DatasetSpec(a)])
    renamed = Mixture.build([DatasetSpec(a), DatasetSpec(a, name="alpha_again")])
    assert list(renamed.probabilities) == ["alpha", "alpha_again"]


def test_a_dataset_can_be_normalised_with_anothers_statistics(lerobot_dataset, tmp_path):
    a, b = lerobot_dataset(4, name="alpha"), lerobot_dataset(2, name="beta")
    mixture = Mixture.build([DatasetSpec(a), DatasetSpec(b, normalize_like="alpha")], cache_dir=tmp_path / "cache")
    assert set(mixture.norm_stats) == {"alpha"}  # one key in the checkpoint
    np.testing.assert_array_equal(mixture.action_stats["beta"].q01, mixture.action_stats["alpha"].q01)
    own = Mixture.build([DatasetSpec(a), DatasetSpec(b)], cache_dir=tmp_path / "cache")
    assert not np.array_equal(own.action_stats["beta"].q01, own.action_stats["alpha"].q01)
    with pytest.raises(ConfigError, match="normalize_like 'gamma'"):
        Mixture.build([DatasetSpec(a), DatasetSpec(b, normalize_like="gamma")], cache_dir=tmp_path / "cache")
