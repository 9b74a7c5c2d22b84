"""A torch DataLoader that keeps a VLA trainer fed: mixture sampling, per-worker episode buffers, batched augmentation.

Each worker owns a disjoint shard of every dataset's episodes. Per dataset it keeps a buffer of `buffer_episodes`
decoded episodes (video decoded sequentially, once per episode; frames resized to the processor's size) and draws
frames without replacement from the whole buffer; an emptied episode is replaced by the next one of a reshuffled
order. Each batch slot picks its dataset with the mixture probabilities, so frame proportions follow OpenVLA's
weights. Workers build whole batches (tokens, labels, augmentation vectorised over the batch) and send the augmented
frames as uint8; the consuming process turns them into float pixel_values (8x fewer bytes cross processes than
two backbones' float32). RAM is bounded: workers x datasets x buffer_episodes x episode frames x S*S*3 bytes.
Unreadable episodes fail the run, or with on_error="skip" are logged (file and episode) and replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clearvla.actions.normalize import NormStats
from clearvla.data.augment import AugmentConfig
from clearvla.data.batching import Sample, VLACollator
from clearvla.data.episode import Episode
from clearvla.data.formats import SkipLog, check_on_error
from clearvla.data.mixture import Mixture, MixtureMember
from clearvla.errors import ConfigError, DataError

# Decoded episodes per dataset and worker that frames are drawn from: what every training recipe uses
# (TrainConfig.shuffle_buffer); a handful gives batches of near-duplicate frames.
BUFFER_EPISODES = 64


@dataclass(eq=False)  # identity, not array comparison, when removed from a buffer
class _Loaded:
    """One decoded episode in a buffer: frames [K, C, S, S, 3] uint8 (C cameras in order), normalised actions
    [K, A], proprio [K, P] and attention masks [K, C, h, w] (or None), a shuffled order."""

    frames: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray | None
    instruction: str
    order: np.ndarray
    cursor: int = 0
    attention: np.ndarray | None = None

    def sample(self, t: int, dataset_name: str, chunk: int = 0) -> Sample:
        """Frame `t`; with `chunk` K > 0 its action is the chunk [K, A] from t on, the last action repeated past
        the episode's end (OpenVLA-OFT's padding)."""
        proprio = None if self.proprio is None else self.proprio[t]
        if chunk:
            action = self.actions[np.minimum(np.arange(t, t + chunk), len(self.actions) - 1)]
        else:
            action = self.actions[t]
        attention = None if self.attention is None else self.attention[t]
        return Sample(self.frames[t], self.instruction, action, dataset_name, proprio, attention)

    @property
    def remaining(self) -> int:
        return len(self.order) - self.cursor


def gripper_changes(gripper: np.ndarray, span: float) -> np.ndarray:
    """Gripper commands of one episode [T] (the last action dimension, raw) -> bool [T]: True where the command moved
    by more than half of `span` (the dataset's q01-q99 range of it) since the frame before: a grasp or a release."""
    moved = np.abs(np.diff(gripper.astype(np.float64), prepend=gripper[:1])) > 0.5 * span
    return moved & (span > 0)


def camera_map(dataset: str, have: Sequence[str], want: Sequence[str]) -> dict[str, str]:
    """Model camera -> dataset camera. Cameras match by name; a single-camera dataset feeds a single-camera model
    whatever the two names (a LeRobot dataset's `front` as the model's `image`). Anything else is a ConfigError naming
    the cameras the dataset has."""
    if all(c in have for c in want):
        return {c: c for c in want}
    if len(have) == 1 and len(want) == 1:
        return {want[0]: have[0]}
    missing = next(c for c in want if c not in have)
    raise ConfigError(f"dataset {dataset!r} has no camera {missing!r}; it has: {', '.join(have) or 'none'} (the model "
                      f"reads {', '.join(want)}; cameras match by name, and a single-camera dataset feeds a "
                      "single-camera model)")


class _EpisodeReader:
    """Loads kept episodes of one dataset as model-sized frames of every camera, normalised actions and proprio
    (`proprio_stats` None: the model reads no robot state) and, with `attention`, every camera's attention masks.
    With a random order (training), frames whose gripper command changes are in it `gripper_change_repeats` times."""

    def __init__(
        self, member: MixtureMember, stats: NormStats, proprio_stats: NormStats | None, cameras: tuple[str, ...],
        processor, on_error: str, skips: SkipLog, attention: bool = False, gripper_change_repeats: int = 1,
    ) -> None:
        self.member, self.stats, self.proprio_stats, self.cameras = member, stats, proprio_stats, cameras
        self.attention, self.gripper_change_repeats = attention, gripper_change_repeats
        self.size, self.processor = int(processor.image_size), processor
        self.on_error, self.skips = on_error, skips
        self._names: dict[str, str] | None = None  # model camera -> dataset camera, once known (camera_map)

    def _episode(self, index: int) -> tuple[Episode, dict[str, str]]:
        """Episode `index` of the dataset with the cameras the model reads decoded, and the camera map. A source that
        does not list its cameras (`source.cameras`) shows them by loading an episode whole, once, on a mismatch."""
        source = self.member.source
        if self._names is None and getattr(source, "cameras", None) is not None:
            self._names = camera_map(self.member.name, source.cameras, self.cameras)
        names = self._names or {c: c for c in self.cameras}
        episode = source.load(index, images=True, cameras=list(names.values()))
        if self._names is None:
            if any(c not in episode.images for c in names.values()):
                episode = source.load(index, images=True)
            self._names = names = camera_map(self.member.name, episode.cameras, self.cameras)
        missing = [c for c in names.values() if c not in episode.images]
        if missing:
            raise DataError(f"dataset {self.member.name!r}, episode {index}: no frames of camera {missing[0]!r}; it has: "
                            f"{', '.join(episode.cameras) or 'none'}")
        return episode, names

    def load(self, position: int, rng: np.random.Generator | None) -> _Loaded | None:
        entry = self.member.index.episodes[position]
        kept = entry.steps
        try:
            episode, names = self._episode(entry.index)
            if self.proprio_stats is not None and episode.proprio is None:
                raise ConfigError(f"dataset {self.member.name!r} has no proprio (robot state) stream, which the model reads")
            if self.attention and any(names[c] not in (episode.attention or {}) for c in self.cameras):
                raise ConfigError(f"dataset {self.member.name!r} has no attention masks for cameras {list(self.cameras)} "
                                  "(attention supervision needs them: record with `clearvla sim record --image-size` "
                                  "a multiple of 32)")
            everything = len(kept) == len(episode) and kept[-1] == len(episode) - 1
            frames = [episode.images[names[c]] if everything else episode.images[names[c]][kept] for c in self.cameras]
        except DataError as e:
            if self.on_error == "fail":
                raise
            self.skips.record(e)
            return None
        frames = [self._resized(f) for f in frames]
        stacked = frames[0][:, None] if len(frames) == 1 else np.stack(frames, axis=1)
        actions = self.stats.normalize(entry.actions).astype(np.float32)
        proprio = None
        if self.proprio_stats is not None:
            assert episode.proprio is not None
            proprio = self.proprio_stats.normalize(episode.proprio[kept]).astype(np.float32)
        attention = None
        if self.attention:
            assert episode.attention is not None
            attention = np.stack([episode.attention[names[c]][kept] for c in self.cameras], axis=1)
        if rng is None:
            order = np.arange(len(stacked))
        else:
            changes = gripper_changes(entry.actions[:, -1], float(self.stats.q99[-1] - self.stats.q01[-1]))
            order = rng.permutation(np.repeat(np.arange(len(stacked)), np.where(changes, self.gripper_change_repeats, 1)))
        return _Loaded(stacked, actions, proprio, entry.instruction, order, attention=attention)

    def _resized(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[1:3] == (self.size, self.size):
            return frames
        return np.stack([np.asarray(self.processor.resize(f)) for f in frames])


class VLABatches(IterableDataset):
    """Iterable of collated batches for one split. "train" is endless (mixture-weighted, shuffled, augmented by
    the collator's config); "val" is one deterministic pass over the validation episodes."""

    def __init__(
        self,
        mixture: Mixture,
        collator: VLACollator,
        *,
        split: str = "train",
        batch_size: int = 32,
        seed: int = 0,
        cameras: tuple[str, ...] = ("image",),
        proprio: bool = False,
        action_chunk: int = 0,
        buffer_episodes: int = BUFFER_EPISODES,
        on_error: str = "fail",
        attention: bool = False,
        gripper_change_repeats: int = 1,
    ) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size < 1 or buffer_episodes < 1:
            raise ConfigError(f"batch_size and buffer_episodes must be >= 1, got {batch_size} and {buffer_episodes}")
        self.mixture, self.collator, self.split = mixture, collator, split
        if not cameras:
            raise ConfigError("need at least one camera")
        self.batch_size, self.seed, self.cameras, self.proprio = batch_size, seed, tuple(cameras), proprio
        if action_chunk < 0:
            raise ConfigError(f"action_chunk must be >= 0, got {action_chunk}")
        self.action_chunk = action_chunk
        self.buffer_episodes, self.on_error = buffer_episodes, check_on_error(on_error)
        self.attention = attention
        if gripper_change_repeats < 1:
            raise ConfigError(f"gripper_change_repeats must be >= 1, got {gripper_change_repeats}")
        self.gripper_change_repeats = gripper_change_repeats

    def _readers(self, skips: SkipLog) -> list[_EpisodeReader]:
        return [
            _EpisodeReader(
                m, self.mixture.action_stats[m.name], self.mixture.proprio_stats(m.name) if self.proprio else None,
                self.cameras, self.collator.processor, self.on_error, skips, self.attention, self.gripper_change_repeats,
            )
            for m in self.mixture.members
        ]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self.collator.reseed(self.seed * 10_007 + worker)
        rng = np.random.default_rng([self.seed, worker])
        skips = SkipLog()
        readers = self._readers(skips)
        if self.split == "train":
            return self._train(readers, rng, worker, workers)
        return self._val(readers, worker, workers)

    def _shard(self, positions: np.ndarray, worker: int, workers: int) -> np.ndarray:
        shard = positions[worker::workers]
        # Fewer episodes than workers: share them rather than leave a worker with nothing (training only).
        return shard if len(shard) or self.split == "val" else positions

    def _train(self, readers: list[_EpisodeReader], rng: np.random.Generator, worker: int, workers: int) -> Iterator[dict]:
        members = self.mixture.members
        probabilities = np.array([m.probability for m in members])
        shards = [self._shard(m.train, worker, workers) for m in members]
        for member, shard in zip(members, shards):
            if len(shard) == 0:
                raise DataError(f"dataset {member.name!r} has no training episodes")
        orders: list[list[int]] = [[] for _ in members]
        buffers: list[list[_Loaded]] = [[] for _ in members]

        def next_episode(d: int) -> _Loaded:
            for _ in range(len(shards[d]) + 1):
                if not orders[d]:
                    orders[d] = rng.permutation(shards[d]).tolist()
                loaded = readers[d].load(orders[d].pop(), rng)
                if loaded is not None and loaded.remaining:
                    return loaded
            raise DataError(f"dataset {members[d].name!r}: no readable training episode in a full pass (worker {worker})")

        while True:
            samples = []
            for d in rng.choice(len(members), size=self.batch_size, p=probabilities):
                buffer = buffers[d]
                while len(buffer) < self.buffer_episodes:
                    buffer.append(next_episode(d))
                # a frame uniformly from everything left in the buffer: pick its episode by remaining count
                draw = int(rng.integers(sum(e.remaining for e in buffer)))
                for episode in buffer:
                    if draw < episode.remaining:
                        break
                    draw -= episode.remaining
                t = episode.order[episode.cursor]
                episode.cursor += 1
                samples.append(episode.sample(t, members[d].name, self.action_chunk))
                if episode.remaining == 0:
                    buffer.remove(episode)
            yield self.collator.prepare(samples)

    def _val(self, readers: list[_EpisodeReader], worker: int, workers: int) -> Iterator[dict]:
        samples: list[Sample] = []
        for member, reader in zip(self.mixture.members, readers):
            for position in self._shard(member.val, worker, workers):
                loaded = reader.load(int(position), None)
                if loaded is None:
                    continue
                for t in range(len(loaded.frames)):
                    samples.append(loaded.sample(t, member.name, self.action_chunk))
                    if len(samples) == self.batch_size:
                        yield self.collator.prepare(samples)
                        samples = []
        if samples:
            yield self.collator.prepare(samples)


def _as_is(batch: dict) -> dict:
    """Batches leave the workers as built (they are tensors already; torch's default_convert would walk them)."""
    return batch


class VLADataLoader(DataLoader):
    """A DataLoader whose workers send compact uint8 batches; iteration finishes them into model-ready batches
    (`VLACollator.finish`) in the consuming process."""

    def __init__(self, dataset: VLABatches, **kwargs) -> None:
        super().__init__(dataset, batch_size=None, collate_fn=_as_is, **kwargs)

    def __iter__(self) -> Iterator[dict]:
        finish = self.dataset.collator.finish
        for batch in super().__iter__():
            yield finish(batch)


def make_dataloader(
    mixture: Mixture,
    tokenizer,
    processor,
    *,
    split: str = "train",
    batch_size: int = 32,
    num_workers: int = 2,
    seed: int = 0,
    augment: AugmentConfig | bool = True,
    cameras: tuple[str, ...] = ("image",),
    proprio: bool = False,
    action_chunk: int = 0,
    buffer_episodes: int = BUFFER_EPISODES,
    on_error: str = "fail",
    prefetch_factor: int = 2,
    action_vocab_size: int | None = None,
    attention: bool = False,
    gripper_change_repeats: int = 1,
) -> DataLoader:
    """DataLoader of model-ready batches {pixel_values, input_ids, attention_mask, labels, actions, dataset_name,
    proprio (with proprio=True), attention_target (with attention=True)}. `cameras` are the model's, in its order (`VLAConfig.cameras`). With `action_chunk`
    K > 0 (chunk models) `actions` is [B, K, A] and the tokens are the prompt alone.

    `augment=True` uses OpenVLA's augmentation on "train" (never on "val"). Training batches never end; stop
    after the steps you need. `seed` fixes sampling and augmentation for a given num_workers.
    `gripper_change_repeats` > 1 draws "train" frames whose gripper command changes (grasps and releases, about one
    frame in thirty) that many times per pass over an episode.
    """
    config = (AugmentConfig() if augment is True else augment or None) if split == "train" else None
    collator = VLACollator(tokenizer, processor, augment=config, action_vocab_size=action_vocab_size, seed=seed)
    dataset = VLABatches(
        mixture, collator, split=split, batch_size=batch_size, seed=seed, cameras=cameras, proprio=proprio,
        action_chunk=action_chunk, buffer_episodes=buffer_episodes, on_error=on_error, attention=attention,
        gripper_change_repeats=gripper_change_repeats,
    )
    return VLADataLoader(
        dataset,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=num_workers > 0 and split == "train",
        generator=torch.Generator().manual_seed(seed),
    )
