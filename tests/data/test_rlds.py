"""RLDS shards in the OpenX layout, read without TensorFlow and standardised to OpenVLA's conventions."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.data.formats import SkipLog, iter_source, open_source
from clearvla.data.formats.rlds import RLDSSource, parse_features
from clearvla.errors import DataError


def _bridge(synth, tmp_path, n_episodes=2, image_format="png"):
    episodes = []
    for k in range(n_episodes):
        t = 6
        action = np.zeros((t, 7), np.float32)
        action[1:, :6] = 0.5  # raw commanded deltas: replaced by achieved motion
        action[:, 6] = [0.0, 1.0, 0.98, 0.5, 0.02, 0.0]
        state = np.cumsum(np.full((t, 7), 0.01 * (k + 1), np.float32), axis=0)
        state[:, 6] = np.linspace(1, 0, t)
        steps = synth.rlds_steps(t, k, instruction=f"put the carrot in the pot {k}", action=action, state=state,
                                 cameras=("image_0", "image_1"))
        episodes.append({"steps": steps, "file_path": f"/raw/bridge_{k}.pkl"})
    return synth.write_rlds(tmp_path, "bridge_orig", episodes, image_format=image_format), episodes


def test_features_json_is_flattened(synth, tmp_path):
    directory, _ = _bridge(synth, tmp_path, 1)
    import json

    specs = parse_features(json.loads((directory / "features.json").read_text()))
    assert specs["steps/observation/image_0"].kind == "image" and specs["steps/observation/image_0"].step
    assert specs["steps/action"].shape == (7,) and specs["steps/action"].dtype == "float32"
    assert specs["steps/language_instruction"].kind == "text"
    assert specs["episode_metadata/file_path"].kind == "text" and not specs["episode_metadata/file_path"].step


def test_bridge_orig_standardisation(synth, tmp_path):
    directory, raw = _bridge(synth, tmp_path)
    source = open_source(directory)
    assert isinstance(source, RLDSSource) and source.name == "bridge_orig" and len(source) == 2
    episode = source.load(1)
    state = raw[1]["steps"]["observation/state"]
    # first (all-zero) step dropped, then xyz/rpy relabelled as state[t+1] - state[t], last step dropped
    np.testing.assert_allclose(episode.actions[:, :6], state[2:, :6] - state[1:-1, :6], atol=1e-6)
    # raw gripper 1.0, 0.98, 0.5, 0.02 (0.0 cut) -> binarised with look-ahead: 1, 1, 0, 0
    np.testing.assert_array_equal(episode.actions[:, 6], [1, 1, 0, 0])
    np.testing.assert_array_equal(episode.images["image"], raw[1]["steps"]["observation/image_0"][1:5])
    assert episode.cameras == ["image", "secondary_image"]
    assert episode.proprio.shape == (4, 8)
    np.testing.assert_allclose(episode.proprio[:, :6], state[1:5, :6])
    assert (episode.proprio[:, 6] == 0).all()  # OpenVLA's <PAD> dimension
    assert episode.instruction == "put the carrot in the pot 1"
    assert episode.metadata["episode_metadata/file_path"] == "/raw/bridge_1.pkl"
    assert episode.metadata["dropped_leading_zero_steps"] == 1


def test_jpeg_images_decode(synth, tmp_path):
    directory, raw = _bridge(synth, tmp_path, 1, image_format="jpeg")
    episode = RLDSSource(directory).load(0)
    error = np.abs(episode.images["image"].astype(int) - raw[0]["steps"]["observation/image_0"][1:5]).mean()
    assert error < 6


def test_fractal_relative_gripper_becomes_absolute(synth, tmp_path):
    t = 7
    rng = np.random.default_rng(0)
    action = {
        "world_vector": rng.normal(size=(t, 3)).astype(np.float32),
        "rotation_delta": rng.normal(size=(t, 3)).astype(np.float32),
        "gripper_closedness_action": np.array([[0], [0], [1], [0], [0], [-1], [0]], np.float32),  # +1 close, -1 open
    }
    steps = synth.rlds_steps(t, 0, instruction="pick coke can", action=action, state=None, cameras=("image",),
                             instruction_key="observation/natural_language_instruction")
    steps["observation/base_pose_tool_reached"] = rng.normal(size=(t, 7)).astype(np.float32)
    steps["observation/gripper_closed"] = np.zeros((t, 1), np.float32)
    directory = synth.write_rlds(tmp_path, "fractal20220817_data", [{"steps": steps}])
    episode = open_source(directory).load(0)
    np.testing.assert_array_equal(episode.actions[:, 6], [1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(episode.actions[:, :3], action["world_vector"])
    np.testing.assert_allclose(episode.actions[:, 3:6], action["rotation_delta"])
    assert episode.proprio.shape == (t, 8)
    assert episode.instruction == "pick coke can"
    assert episode.is_terminal[-1] and not episode.is_terminal[0]


def test_libero_signed_gripper_is_inverted(synth, tmp_path):
    t = 5
    action = np.zeros((t, 7), np.float32)
    action[:, :6] = 0.1
    action[:, 6] = [-1, -1, 1, 1, -1]  # robosuite: -1 open, +1 close
    state = np.arange(t * 8, dtype=np.float32).reshape(t, 8)
    steps = synth.rlds_steps(t, 3, instruction="open the top drawer", action=action, state=state, cameras=("image", "wrist_image"))
    directory = synth.write_rlds(tmp_path, "libero_spatial_no_noops", [{"steps": steps}])
    source = open_source(directory)
    assert source.standardization == "libero"
    episode = source.load(0)
    np.testing.assert_array_equal(episode.actions[:, 6], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(episode.proprio, state)
    assert episode.cameras == ["image", "wrist_image"]
    np.testing.assert_array_equal(episode.images["wrist_image"], steps["observation/wrist_image"])
    only = source.load(0, cameras=["wrist_image"])
    assert only.cameras == ["wrist_image"]
    assert source.load(0, images=False).images == {}


def test_unknown_dataset_keeps_raw_actions(synth, tmp_path, caplog):
    action = np.random.default_rng(1).normal(size=(4, 7)).astype(np.float32)
    steps = synth.rlds_steps(4, 0, instruction="wave", action=action, state=None, cameras=("image",))
    directory = synth.write_rlds(tmp_path, "my_robot_data", [{"steps": steps}])
    episode = open_source(directory).load(0)
    np.testing.assert_allclose(episode.actions, action)
    assert "no standardisation known" in caplog.text


def test_corrupt_record_fails_or_is_skipped_and_counted(synth, tmp_path):
    directory, _ = _bridge(synth, tmp_path, n_episodes=3)
    shard = next(directory.glob("*.tfrecord*"))
    data = bytearray(shard.read_bytes())
    spans = RLDSSource(directory).spans
    data[spans[1].offset + spans[1].length // 2] ^= 0x55
    shard.write_bytes(bytes(data))
    source = RLDSSource(directory)
    with pytest.raises(DataError, match=rf"{shard.name}: record 1: corrupt record"):
        list(iter_source(source))
    skips = SkipLog()
    kept = [i for i, _ in iter_source(source, on_error="skip", skips=skips)]
    assert kept == [0, 2]
    assert len(skips) == 1 and f"{shard.name}: record 1" in skips.messages[0]


def test_missing_shard_is_reported(synth, tmp_path):
    _, raw = _bridge(synth, tmp_path / "a", n_episodes=1)
    directory = synth.write_rlds(tmp_path / "b", "bridge_orig", [{"steps": raw[0]["steps"]}] * 2, shards=2)
    next(directory.glob("*-00001-of-00002")).unlink()
    with pytest.raises(DataError, match="lists 2 train shards but 1 are present"):
        RLDSSource(directory)
