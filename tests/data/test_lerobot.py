"""LeRobot v3.0: write, read back, layout and field names, statistics, attention masks, camera names, atomic
finalisation, corrupt video."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from clearvla.data.formats import SkipLog
from clearvla.data.formats.lerobot import LeRobotSource, LeRobotWriter, read_lerobot
from clearvla.errors import ConfigError, DataError


def _write(root, episodes, **kwargs):
    with LeRobotWriter(root, fps=10, robot_type="workcell", **kwargs) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    return root


def _assert_same(a, b, max_pixel_error=4.0):
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.proprio, b.proprio)
    np.testing.assert_array_equal(a.is_terminal, b.is_terminal)
    assert a.instruction == b.instruction and a.cameras == b.cameras
    for name in a.cameras:
        assert a.images[name].shape == b.images[name].shape
        assert np.abs(a.images[name].astype(int) - b.images[name]).mean() < max_pixel_error


def test_round_trip(tmp_path, synth):
    episodes = [synth.make_episode(8 + k, seed=k, instruction=f"task {k % 2}") for k in range(3)]
    root = _write(tmp_path / "ds", episodes)
    back = list(read_lerobot(root))
    assert len(back) == 3
    for k, (a, b) in enumerate(zip(episodes, back)):
        _assert_same(a, b)
        assert b.metadata["seed"] == a.metadata["seed"] and b.metadata["episode_index"] == k
        assert b.dataset_name == "ds"


def test_video_is_faithful(tmp_path, synth):
    episode = synth.make_episode(10, seed=3, size=64)
    back = next(read_lerobot(_write(tmp_path / "ds", [episode])))
    error = back.images["image"].astype(float) - episode.images["image"]
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 35  # PSNR in dB


def test_v3_layout_and_field_names(tmp_path, synth):
    root = _write(tmp_path / "ds", [synth.make_episode(6, seed=k, instruction=f"task {k}") for k in range(2)])
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "workcell" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 12, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert features["observation.images.image"]["dtype"] == "video"
    assert features["observation.images.image"]["shape"] == [32, 32, 3]
    assert features["observation.images.image"]["names"] == ["height", "width", "channels"]
    assert features["observation.state"]["shape"] == [8] and features["action"]["shape"] == [7]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key]["shape"] == [1]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert {"observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(data.column_names)
    np.testing.assert_array_equal(data.column("index").to_numpy(), np.arange(12))
    np.testing.assert_allclose(data.column("timestamp").to_numpy()[:6], np.arange(6) / 10)
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["dataset_from_index"] for e in episodes] == [0, 6] and [e["dataset_to_index"] for e in episodes] == [6, 12]
    assert episodes[1]["videos/observation.images.image/from_timestamp"] == pytest.approx(0.6)
    assert episodes[1]["videos/observation.images.image/to_timestamp"] == pytest.approx(1.2)
    assert episodes[1]["tasks"] == ["task 1"] and episodes[1]["length"] == 6
    assert "stats/action/mean" in episodes[0]
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["task 0", "task 1"] and tasks.column("task_index").to_pylist() == [0, 1]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert np.array(stats["observation.images.image"]["mean"]).shape == (3, 1, 1)
    assert (root / "videos/observation.images.wrist_image/chunk-000/file-000.mp4").is_file()


def test_files_roll_over_and_still_read(tmp_path, synth):
    episodes = [synth.make_episode(5, seed=k) for k in range(3)]
    root = _write(tmp_path / "ds", episodes, data_files_size_in_mb=0, video_files_size_in_mb=0)
    assert len(list((root / "data").rglob("*.parquet"))) == 3
    assert len(list((root / "videos/observation.images.image").rglob("*.mp4"))) == 3
    for a, b in zip(episodes, read_lerobot(root)):
        _assert_same(a, b)


def test_existing_non_empty_directory_is_refused(tmp_path, synth):
    (tmp_path / "ds").mkdir()
    _write(tmp_path / "ds", [synth.make_episode(4)])  # an empty directory is fine
    with pytest.raises(DataError, match="already exists and is not empty"):
        LeRobotWriter(tmp_path / "ds", fps=10)


def test_failure_inside_the_block_leaves_nothing(tmp_path, synth):
    with pytest.raises(RuntimeError):
        with LeRobotWriter(tmp_path / "ds", fps=10) as writer:
            writer.add_episode(synth.make_episode(4))
            raise RuntimeError("simulator crashed")
    assert list(tmp_path.iterdir()) == []


def test_episodes_must_match_the_first(tmp_path, synth):
    with pytest.raises(DataError, match="episode 1 does not match"):
        with LeRobotWriter(tmp_path / "ds", fps=10) as writer:
            writer.add_episode(synth.make_episode(4))
            writer.add_episode(synth.make_episode(4, wrist=False))
    assert not (tmp_path / "ds").exists()


def test_odd_frame_size_is_refused(tmp_path, synth):
    with pytest.raises(DataError, match="even frame sizes"):
        with LeRobotWriter(tmp_path / "ds", fps=10) as writer:
            writer.add_episode(synth.make_episode(4, size=33))


def test_corrupt_video_names_file_and_episode(tmp_path, synth):
    root = _write(tmp_path / "ds", [synth.make_episode(6, seed=k) for k in range(3)], video_files_size_in_mb=0)
    video = root / "videos/observation.images.wrist_image/chunk-000/file-001.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    with pytest.raises(DataError, match=r"episode 1, camera observation.images.wrist_image.*file-001\.mp4"):
        list(read_lerobot(root))
    skips = SkipLog()
    assert len(list(read_lerobot(root, on_error="skip", skips=skips))) == 2
    assert len(skips) == 1 and "episode 1" in skips.messages[0]
    # actions stay readable without decoding video
    assert len(LeRobotSource(root).load(1, images=False)) == 6


def test_other_codebase_versions_are_refused(tmp_path, synth):
    root = _write(tmp_path / "ds", [synth.make_episode(4)])
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="'v2.1' is not supported"):
        LeRobotSource(root)


def _masked(synth, n: int = 2):
    """Episodes with random 8 x 16 attention masks for both cameras."""
    episodes = [synth.make_episode(6, seed=k) for k in range(n)]
    for k, episode in enumerate(episodes):
        rng = np.random.default_rng(k)
        episode.attention = {c: (rng.random((len(episode), 8, 16)) < 0.3).astype(np.uint8) for c in episode.images}
    return episodes


def test_attention_masks_are_declared_as_stored_and_read_back(tmp_path, synth):
    episodes = _masked(synth)
    root = _write(tmp_path / "ds", episodes)
    feature = json.loads((root / "meta/info.json").read_text())["features"]["observation.attention.image"]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    # what `datasets` casts the column to: a fixed-size list of shape[0] uint8 (a [h, w] shape made LeRobot fail)
    assert feature["shape"] == [128] and str(data.schema.field("observation.attention.image").type) == "fixed_size_list<element: uint8>[128]"
    assert feature["info"] == {"mask.height": 8, "mask.width": 16}
    for a, b in zip(episodes, read_lerobot(root)):
        np.testing.assert_array_equal(a.attention["wrist_image"], b.attention["wrist_image"])


def test_an_episode_read_for_some_cameras_reads_only_theirs(tmp_path, synth):
    """A training loader asks for the cameras the model reads: their frames and masks, the rest of the row as a whole
    read gives it, and nothing of the other cameras."""
    episodes = _masked(synth)
    source = LeRobotSource(_write(tmp_path / "ds", episodes))
    for i, want in enumerate(episodes):
        got = source.load(i, cameras=["wrist_image"])
        assert list(got.images) == ["wrist_image"] and list(got.attention) == ["wrist_image"]
        np.testing.assert_array_equal(got.attention["wrist_image"], want.attention["wrist_image"])
        np.testing.assert_array_equal(got.images["wrist_image"], source.load(i).images["wrist_image"])
        np.testing.assert_allclose(got.actions, want.actions, atol=1e-6)
        assert got.instruction == want.instruction


def test_recordings_declaring_masks_2d_still_read(tmp_path, synth):
    episodes = _masked(synth)
    root = _write(tmp_path / "ds", episodes)
    info = json.loads((root / "meta/info.json").read_text())
    for camera in ("image", "wrist_image"):  # the layout of recordings made before masks were declared flat
        info["features"][f"observation.attention.{camera}"] = {"dtype": "uint8", "shape": [8, 16], "names": ["height", "width"]}
    (root / "meta/info.json").write_text(json.dumps(info))
    for a, b in zip(episodes, read_lerobot(root)):
        np.testing.assert_array_equal(a.attention["image"], b.attention["image"])
    info["features"]["observation.attention.image"] = {"dtype": "uint8", "shape": [128], "names": None}
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"info.json: feature 'observation.attention.image' needs shape \[h\*w\]"):
        next(read_lerobot(root))


def test_statistics_in_lerobots_layout(tmp_path, synth):
    episodes = [synth.make_episode(6 + k, seed=k) for k in range(2)]
    root = _write(tmp_path / "ds", episodes)
    numeric = {"action", "observation.state", "timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"}
    keys = numeric | {"observation.images.image", "observation.images.wrist_image"}
    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == keys
    names = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert all(set(s) == names for s in stats.values())
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert {c for c in rows[1] if c.startswith("stats/")} == {f"stats/{k}/{n}" for k in keys for n in names}
    assert rows[1]["stats/index/min"] == [6.0] and rows[1]["stats/action/count"] == [7]
    assert np.array(rows[1]["stats/observation.images.image/q50"]).shape == (3, 1, 1)
    image = stats["observation.images.image"]
    assert image["count"] == [13] and np.array(image["mean"]).shape == (3, 1, 1)
    pixels = np.concatenate([e.images["image"] for e in episodes]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(np.array(image["mean"]).ravel(), pixels.mean(0), atol=0.02)  # video, so not exact
    np.testing.assert_allclose(stats["action"]["mean"], np.concatenate([e.actions for e in episodes]).mean(0), atol=1e-6)


def _cameras_as(synth, names: dict[str, str], n: int = 2) -> list:
    episodes = []
    for k in range(n):
        episode = synth.make_episode(6, seed=k)
        episode.images = {new: episode.images[old] for old, new in names.items()}
        episodes.append(episode)
    return episodes


def test_a_single_camera_dataset_feeds_the_models_only_camera(tmp_path, synth, tiny_tokenizer, processor):
    from clearvla.data.loader import make_dataloader
    from clearvla.data.mixture import Mixture

    root = _write(tmp_path / "so100", _cameras_as(synth, {"image": "front"}))
    assert LeRobotSource(root).cameras == ["front"]
    mixture = Mixture.build([root], val_fraction=0.0)
    batch = next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0)))
    assert batch["pixel_values"].shape[0] == 2
    with pytest.raises(ConfigError, match="dataset 'so100' has no camera 'image'; it has: front \\(the model reads image, wrist_image"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0,
                                  cameras=("image", "wrist_image"))))


def test_camera_mismatch_names_the_datasets_cameras(tmp_path, synth, tiny_tokenizer, processor):
    from clearvla.data.loader import make_dataloader
    from clearvla.data.mixture import Mixture

    root = _write(tmp_path / "aloha", _cameras_as(synth, {"image": "top", "wrist_image": "left_wrist"}))
    mixture = Mixture.build([root], val_fraction=0.0)
    with pytest.raises(ConfigError, match="dataset 'aloha' has no camera 'image'; it has: top, left_wrist"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0)))
