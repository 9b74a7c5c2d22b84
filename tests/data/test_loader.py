"""The DataLoader: model-ready batches from workers, mixture proportions, validation pass, bad data."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clearvla.data.formats.lerobot import LeRobotWriter
from clearvla.data.loader import gripper_changes, make_dataloader
from clearvla.data.mixture import DatasetSpec, Mixture
from clearvla.errors import ConfigError, DataError


@pytest.fixture
def dataset(synth):
    """Factory: n episodes of `length` frames at `size` px as a new LeRobot dataset at `root`."""

    def build(root, n, seed0, size=32, length=12):
        with LeRobotWriter(root, fps=10) as writer:
            for k in range(n):
                instruction = f"{root.name} task {k % 2}"
                writer.add_episode(synth.make_episode(length, seed=seed0 + k, instruction=instruction, size=size))
        return root

    return build


def test_two_workers_mixture_proportions(tmp_path, dataset, tiny_tokenizer, processor):
    a, b = dataset(tmp_path / "alpha", 4, 0), dataset(tmp_path / "beta", 4, 10)
    mixture = Mixture.build([DatasetSpec(a, 3.0), DatasetSpec(b, 1.0)], balance_weights=False, val_fraction=0.0)
    loader = make_dataloader(mixture, tiny_tokenizer, processor, batch_size=32, num_workers=2, seed=0)
    names = []
    for i, batch in zip(range(16), loader):
        assert batch["pixel_values"].shape == (32, 6, 32, 32) and batch["pixel_values"].dtype == torch.float32
        assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
        assert batch["actions"].shape == (32, 7)
        names += batch["dataset_name"]
    share = names.count("alpha") / len(names)
    assert abs(share - 0.75) < 0.06, share  # 512 draws: 3.5 standard deviations


def test_val_pass_covers_each_val_frame_once(tmp_path, dataset, tiny_tokenizer, processor):
    root = dataset(tmp_path / "alpha", 6, 0)
    mixture = Mixture.build([root], val_fraction=0.5, seed=1)
    member = mixture.members[0]
    val_frames = sum(len(member.index.episodes[p].steps) for p in member.val)
    loader = make_dataloader(mixture, tiny_tokenizer, processor, split="val", batch_size=7, num_workers=0)
    batches = list(loader)
    assert sum(len(b["actions"]) for b in batches) == val_frames
    expected = np.concatenate([mixture.action_stats["alpha"].normalize(member.index.episodes[p].actions) for p in member.val])
    np.testing.assert_allclose(torch.cat([b["actions"] for b in batches]).numpy(), expected, atol=1e-6)
    assert len(list(loader)) == len(batches)  # a fresh pass each time


def test_frames_are_resized_to_the_processor(tmp_path, dataset, tiny_tokenizer, processor):
    root = dataset(tmp_path / "big", 2, 0, size=48)
    mixture = Mixture.build([root], val_fraction=0.0)
    batch = next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=4, num_workers=0, augment=False)))
    assert batch["pixel_values"].shape == (4, 6, 32, 32)


def test_same_seed_same_batches(tmp_path, dataset, tiny_tokenizer, processor):
    mixture = Mixture.build([dataset(tmp_path / "alpha", 3, 0)], val_fraction=0.0)
    first = [next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=8, num_workers=0, seed=5))) for _ in range(2)]
    assert torch.equal(first[0]["pixel_values"], first[1]["pixel_values"])
    assert torch.equal(first[0]["input_ids"], first[1]["input_ids"])


def test_corrupt_video_fails_or_is_skipped_with_a_warning(tmp_path, dataset, tiny_tokenizer, processor, caplog):
    root = dataset(tmp_path / "alpha", 3, 0)
    mixture = Mixture.build([root], val_fraction=0.0)  # the scan reads actions only: video damage shows later
    for video in root.glob("videos/observation.images.image/chunk-000/*.mp4"):
        video.write_bytes(video.read_bytes()[:300])
    with pytest.raises(DataError, match=r"episode \d, camera observation.images.image"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=4, num_workers=0)))
    with caplog.at_level(logging.WARNING), pytest.raises(DataError, match="no readable training episode"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=4, num_workers=0, on_error="skip")))
    assert "skipped" in caplog.text and "episode" in caplog.text


def test_unknown_camera_is_a_config_error(tmp_path, dataset, tiny_tokenizer, processor):
    mixture = Mixture.build([dataset(tmp_path / "alpha", 2, 0)], val_fraction=0.0)
    with pytest.raises(ConfigError, match="no camera 'top'"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0, cameras=("top",))))


def test_every_camera_and_the_proprio_stream(tmp_path, dataset, tiny_tokenizer, processor):
    """cameras=("image", "wrist_image") stacks both views in that order; proprio comes normalised by its own stats."""
    mixture = Mixture.build([dataset(tmp_path / "alpha", 2, 0)], val_fraction=0.5)
    member = mixture.members[0]
    entry = member.index.episodes[int(member.val[0])]
    episode = member.source.load(entry.index, images=True)
    loader = make_dataloader(mixture, tiny_tokenizer, processor, split="val", batch_size=64, num_workers=0,
                             cameras=("image", "wrist_image"), proprio=True)
    (batch,) = list(loader)  # the validation pass: the kept frames of the one val episode, in order
    kept = entry.steps
    assert batch["pixel_values"].shape == (len(kept), 12, 32, 32)
    expected = mixture.proprio_stats("alpha").normalize(episode.proprio[kept])
    np.testing.assert_allclose(batch["proprio"].numpy(), expected, atol=1e-6)
    for i, t in enumerate(kept[:3]):
        torch.testing.assert_close(batch["pixel_values"][i, :6], processor(episode.images["image"][t])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch["pixel_values"][i, 6:], processor(episode.images["wrist_image"][t])[0], atol=1e-5, rtol=0)


def test_proprio_needs_a_state_stream(tmp_path, synth, tiny_tokenizer, processor):
    root = tmp_path / "stateless"
    with LeRobotWriter(root, fps=10) as writer:
        episode = synth.make_episode(12, seed=0, instruction="push it")
        episode.proprio = None
        writer.add_episode(episode)
    mixture = Mixture.build([root], val_fraction=0.0)
    with pytest.raises(ConfigError, match="no proprio"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0, proprio=True)))


def _with_attention(episode, seed: int):
    """`episode` with random 8 x 8 attention masks for both cameras."""
    rng = np.random.default_rng(seed)
    episode.attention = {c: (rng.random((len(episode), 8, 8)) < 0.2).astype(np.uint8) for c in episode.images}
    return episode


def test_attention_masks_round_trip_and_reach_the_batch_per_camera(tmp_path, synth, tiny_tokenizer, processor):
    root = tmp_path / "masked"
    episodes = [_with_attention(synth.make_episode(12, seed=k), k) for k in range(2)]
    with LeRobotWriter(root, fps=10) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    mixture = Mixture.build([root], val_fraction=0.5)
    member = mixture.members[0]
    entry = member.index.episodes[int(member.val[0])]
    stored = member.source.load(entry.index, images=False)
    for camera in ("image", "wrist_image"):
        np.testing.assert_array_equal(stored.attention[camera], episodes[entry.index].attention[camera])
    loader = make_dataloader(mixture, tiny_tokenizer, processor, split="val", batch_size=64, num_workers=0,
                             cameras=("wrist_image", "image"), action_chunk=2, attention=True)
    (batch,) = list(loader)
    kept = entry.steps
    assert batch["attention_target"].shape == (len(kept), 2, 8, 8) and batch["attention_target"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["attention_target"][:, 0].numpy(), stored.attention["wrist_image"][kept])
    np.testing.assert_array_equal(batch["attention_target"][:, 1].numpy(), stored.attention["image"][kept])
    plain = make_dataloader(mixture, tiny_tokenizer, processor, split="val", batch_size=64, num_workers=0, action_chunk=2)
    assert "attention_target" not in next(iter(plain))


def test_attention_supervision_needs_masks(tmp_path, dataset, tiny_tokenizer, processor):
    mixture = Mixture.build([dataset(tmp_path / "unmasked", 2, 0)], val_fraction=0.0)
    with pytest.raises(ConfigError, match="no attention masks"):
        next(iter(make_dataloader(mixture, tiny_tokenizer, processor, batch_size=2, num_workers=0, attention=True)))


def test_episodes_refuse_masks_of_the_wrong_length(synth):
    episode = synth.make_episode(12, seed=0)
    with pytest.raises(DataError, match="attention masks of camera 'image' must be"):
        type(episode)(episode.images, episode.actions, "x", attention={"image": np.zeros((11, 8, 8), np.uint8)})


def test_gripper_changes_mark_grasps_and_releases_only():
    commands = np.array([1.0, 1.0, 0.0, 0.0, 0.02, 1.0, 1.0])
    assert gripper_changes(commands, 1.0).tolist() == [False, False, True, False, False, True, False]
    assert not gripper_changes(np.zeros(4), 0.0).any()  # a gripper that never moves has no changes


def test_training_draws_gripper_change_frames_repeatedly_and_validation_once(tmp_path, dataset, tiny_tokenizer, processor):
    root = dataset(tmp_path / "alpha", 1, 0, length=12)  # gripper open for frames 0-5, closed from frame 6
    mixture = Mixture.build([root], val_fraction=0.0)
    expected = mixture.action_stats["alpha"].normalize(mixture.members[0].index.episodes[0].actions)
    loader = make_dataloader(mixture, tiny_tokenizer, processor, batch_size=16, num_workers=0, buffer_episodes=1,
                             augment=False, gripper_change_repeats=5)
    drawn = next(iter(loader))["actions"].numpy()  # one pass over the episode: 11 frames once, frame 6 five times
    counts = [int(np.isclose(drawn, frame, atol=1e-6).all(axis=1).sum()) for frame in expected]
    assert counts == [1] * 6 + [5] + [1] * 5
    val = Mixture.build([dataset(tmp_path / "beta", 2, 0, length=12)], val_fraction=0.5)  # one validation episode
    batches = list(make_dataloader(val, tiny_tokenizer, processor, split="val", batch_size=16, num_workers=0,
                                   gripper_change_repeats=5))
    assert sum(len(b["actions"]) for b in batches) == 12
    with pytest.raises(ConfigError, match="gripper_change_repeats must be >= 1"):
        make_dataloader(mixture, tiny_tokenizer, processor, gripper_change_repeats=0)
