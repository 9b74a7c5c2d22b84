"""LIBERO / robomimic HDF5: written in LIBERO's layout, read back with LIBERO's gripper convention."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from clearvla.data.formats import SkipLog, iter_source, open_source
from clearvla.data.formats.hdf5 import HDF5Source, write_hdf5
from clearvla.errors import DataError


def _libero_raw(episode):
    """The same episode with LIBERO's raw gripper: -1 = open, +1 = close."""
    raw = episode.actions.copy()
    raw[:, 6] = 1.0 - 2.0 * raw[:, 6]
    episode.actions = raw
    return episode


def test_libero_layout_round_trip(tmp_path, synth):
    episodes = [synth.make_episode(6 + k, seed=k, instruction="put the bowl on the plate") for k in range(3)]
    expected = [e.actions.copy() for e in episodes]
    path = tmp_path / "KITCHEN_SCENE1_put_the_bowl_on_the_plate_demo.hdf5"
    write_hdf5(path, [_libero_raw(e) for e in episodes])
    with h5py.File(path) as f:
        assert json.loads(f["data"].attrs["problem_info"])["language_instruction"] == "put the bowl on the plate"
        assert f["data/demo_0/obs/agentview_rgb"].shape == (6, 32, 32, 3)
        assert f["data/demo_2/obs/eye_in_hand_rgb"].shape == (8, 32, 32, 3)
        assert set(f["data/demo_0/obs"]) >= {"ee_pos", "ee_ori", "gripper_states"}
    source = open_source(path)
    assert isinstance(source, HDF5Source) and len(source) == 3
    for k, episode in iter_source(source):
        np.testing.assert_allclose(episode.actions, expected[k])  # -1/+1 -> 1/0
        np.testing.assert_array_equal(episode.images["image"], episodes[k].images["image"])
        np.testing.assert_array_equal(episode.images["wrist_image"], episodes[k].images["wrist_image"])
        np.testing.assert_allclose(episode.proprio, episodes[k].proprio)
        assert episode.instruction == "put the bowl on the plate" and episode.is_terminal[-1]


def test_rotate_180_and_directory_of_files(tmp_path, synth):
    (tmp_path / "suite").mkdir()
    episode = synth.make_episode(4)
    write_hdf5(tmp_path / "suite" / "a.hdf5", [episode])
    write_hdf5(tmp_path / "suite" / "b.hdf5", [episode, episode])
    source = HDF5Source(tmp_path / "suite", rotate_180=True)
    assert len(source) == 3 and source.name == "suite"
    np.testing.assert_array_equal(source.load(2).images["image"], episode.images["image"][:, ::-1, ::-1])


def test_missing_dataset_names_the_demo(tmp_path, synth):
    path = tmp_path / "broken.hdf5"
    write_hdf5(path, [synth.make_episode(4), synth.make_episode(4)])
    with h5py.File(path, "a") as f:
        del f["data/demo_1/actions"]
    source = HDF5Source(path)
    with pytest.raises(DataError, match=r"broken\.hdf5: data/demo_1"):
        list(iter_source(source))
    skips = SkipLog()
    assert [i for i, _ in iter_source(source, on_error="skip", skips=skips)] == [0] and len(skips) == 1


def test_not_a_libero_file(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("foo", data=[1])
    with pytest.raises(DataError, match="no 'data' group"):
        HDF5Source(tmp_path / "x.h5")
