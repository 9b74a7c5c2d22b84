"""Model-ready batches: OpenVLA's prompt, action tokens, label masking and right padding.

One training sequence is `prompt_ids(tokenizer, instruction) + action_token_ids + [eos_id]`; the labels are -100
everywhere except the last action_dim + 1 positions (the action tokens and `</s>`), so the loss is on the action
only. Batches are right-padded with `tokenizer.pad_token_id` (labels with -100) and carry an attention mask.
For chunk models (samples holding [K, A] action chunks) the sequence is the prompt alone, and `actions` [B, K, A]
are the regression targets.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from clearvla.actions.tokenizer import ActionTokenizer
from clearvla.data.augment import AugmentConfig, AugmentParams, Workspace, apply_255, crop_masks, sample_params
from clearvla.errors import ConfigError
from clearvla.models.tokenizer import base_vocab_size, prompt_ids

IGNORE_INDEX = -100
_PROMPT_CACHE = 4096  # instructions repeat across an episode's frames; tokenise each once
# Images are processed a few frames at a time: every temporary then stays small enough for malloc to recycle,
# where batch-sized float temporaries would be fresh mmaps whose page faults cost more than the arithmetic.
_CHUNK = 4


class Sample(NamedTuple):
    """One training frame. Images are already at the processor's size."""

    images: np.ndarray  # [C, S, S, 3] uint8 RGB, the model's cameras in order ([S, S, 3] for one camera)
    instruction: str
    action: np.ndarray  # [A] float, normalised with the dataset's NormStats ([K, A]: the chunk from this frame on)
    dataset_name: str
    proprio: np.ndarray | None = None  # [P] float, normalised with the dataset's proprio NormStats
    attention: np.ndarray | None = None  # [C, h, w] uint8 attention masks of the model's cameras (attention supervision)


def pad_batch(sequences: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists: input_ids [B, L] (pad_id), attention_mask [B, L] (1 = real), labels [B, L] (-100)."""
    length = max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    label_ids = np.full((len(sequences), length), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    for i, (seq, lab) in enumerate(zip(sequences, labels)):
        input_ids[i, : len(seq)] = seq
        label_ids[i, : len(lab)] = lab
        mask[i, : len(seq)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(label_ids),
    }


class _BufferPool:
    """Recycles pixel_values arrays the consumer has let go of. A batch's tensor keeps its numpy array alive, so an
    array referenced only by this pool belongs to nobody else; reusing it skips the kernel zeroing fresh pages."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.arrays: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...]) -> torch.Tensor:
        for array in self.arrays:
            # 3 references: the list, the loop variable and getrefcount's argument
            if array.shape == shape and sys.getrefcount(array) <= 3:
                return torch.from_numpy(array)
        # numpy asks the kernel for transparent huge pages on big arrays: ~300x fewer page faults than torch.empty
        array = np.empty(shape, np.float32)
        if len(self.arrays) < self.size:
            self.arrays.append(array)
        return torch.from_numpy(array)


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor; inside a DataLoader worker it is allocated in shared memory, so sending the batch to the
    main process costs no copy (what torch's default_collate does too)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = int(np.prod(shape))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


class VLACollator:
    """Samples -> {pixel_values [B, C*3*n_backbones, S, S], input_ids, attention_mask, labels, actions, dataset_name,
    proprio [B, P] and attention_target [B, C, h, w] uint8 (when the samples carry them)}. Each camera's frame is augmented independently.

    `augment` (an AugmentConfig, or None for evaluation) runs on the uint8 frames before the processor's
    normalisation. `action_vocab_size` defaults to the tokenizer's base vocabulary (32000 for Llama-2).
    """

    def __init__(
        self,
        tokenizer,
        processor,
        *,
        augment: AugmentConfig | None = None,
        n_bins: int = 256,
        action_vocab_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer needs a pad token and an eos token to build training batches")
        self.tokenizer = tokenizer
        self.processor = processor
        self.augment = augment
        self.action_tokenizer = ActionTokenizer(action_vocab_size or base_vocab_size(tokenizer), n_bins)
        self.generator = torch.Generator().manual_seed(seed)
        self._prompts: dict[str, list[int]] = {}
        self._workspace = Workspace()
        scale, offset = processor.uint8_affine()
        self._affine = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
        self._outputs = _BufferPool()

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def prompt(self, instruction: str) -> list[int]:
        ids = self._prompts.get(instruction)
        if ids is None:
            if len(self._prompts) >= _PROMPT_CACHE:
                self._prompts.pop(next(iter(self._prompts)))
            ids = self._prompts[instruction] = prompt_ids(self.tokenizer, instruction)
        return ids

    def tokens(self, instructions: Sequence[str], actions: np.ndarray) -> dict[str, torch.Tensor]:
        """Instructions [B] and normalised actions [B, A] -> padded input_ids / attention_mask / labels."""
        action_ids = self.action_tokenizer.encode(actions).tolist()
        eos = self.tokenizer.eos_token_id
        sequences, labels = [], []
        for instruction, ids in zip(instructions, action_ids):
            prompt = self.prompt(instruction)
            sequences.append(prompt + ids + [eos])
            labels.append([IGNORE_INDEX] * len(prompt) + ids + [eos])
        return pad_batch(sequences, labels, self.tokenizer.pad_token_id)

    def prompts(self, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Instructions [B] -> padded prompt input_ids / attention_mask and all -100 labels (chunk models)."""
        sequences = [self.prompt(instruction) for instruction in instructions]
        return pad_batch(sequences, [[IGNORE_INDEX] * len(s) for s in sequences], self.tokenizer.pad_token_id)

    def augment_frames(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, AugmentParams | None]:
        """B images [S, S, 3] uint8 -> uint8 [B, 3, S, S]: augmented when configured, then truncated back to uint8
        as OpenVLA's pipeline does (`tf.cast(image * 255, tf.uint8)`) before its processor sees the images; and the
        augmentation's random draws (None without augmentation)."""
        b = len(images)
        h, w, _ = images[0].shape
        out = _batch_tensor((b, 3, h, w), torch.uint8)
        if self.augment is None:
            out.copy_(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))
            return out, None
        params = sample_params(b, h, w, self.augment, self.generator)
        frames = [torch.from_numpy(image) for image in images]  # crops are cut from these views: no stacking copy
        for start in range(0, b, _CHUNK):
            part = slice(start, start + _CHUNK)
            out[part] = apply_255(frames[part], params[part], self._workspace)
        return out, params

    def pixel_values(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, S, S] -> pixel_values [B, 3 * n_backbones, S, S] with the processor's normalisation."""
        b, _, h, w = frames.shape
        scale, offset = self._affine
        out = self._outputs.get((b, len(scale), h, w))
        # numpy ufuncs, not torch ops: they never wake the consuming process's OpenMP threads, whose spinning after
        # each parallel region took the CPU the loader workers needed (5x slower loading with 2 torch threads).
        src, dst = frames.numpy(), out.numpy()
        for start in range(0, b, _CHUNK):
            part = slice(start, start + _CHUNK)
            for c in range(0, len(scale), 3):
                block = dst[part, c : c + 3]
                np.multiply(src[part], scale[c : c + 3], out=block)
                np.add(block, offset[c : c + 3], out=block)
        return out

    def prepare(self, samples: Sequence[Sample]) -> dict:
        """Stage 1 (in DataLoader workers): augmented uint8 `frames` [B, C, 3, S, S], tokens, actions, dataset_name
        and proprio."""
        actions = np.stack([s.action for s in samples]).astype(np.float32)
        images = [s.images[None] if s.images.ndim == 3 else s.images for s in samples]
        cameras = {len(i) for i in images}
        if len(cameras) != 1:
            raise ConfigError(f"samples of one batch must have the same number of cameras, got {sorted(cameras)}")
        frames, params = self.augment_frames([frame for sample in images for frame in sample])
        batch = {"frames": frames.view(len(samples), cameras.pop(), *frames.shape[1:])}
        instructions = [s.instruction for s in samples]
        batch.update(self.prompts(instructions) if actions.ndim == 3 else self.tokens(instructions, actions))
        batch["actions"] = torch.from_numpy(actions)
        batch["dataset_name"] = [s.dataset_name for s in samples]
        if samples[0].proprio is not None:
            batch["proprio"] = torch.from_numpy(np.stack([s.proprio for s in samples]).astype(np.float32))
        if samples[0].attention is not None:  # masks follow their camera's crop
            masks = torch.from_numpy(np.stack([s.attention for s in samples]))
            if params is not None:
                b, c, r, _ = masks.shape
                masks = crop_masks(masks.reshape(b * c, r, r), params, frames.shape[-1]).view(b, c, r, r)
            batch["attention_target"] = masks
        return batch

    def finish(self, batch: dict) -> dict:
        """Stage 2 (in the consuming process): `frames` -> `pixel_values`. Splitting here sends 8x fewer bytes
        from the workers (uint8 RGB instead of float32 for two backbones)."""
        b, c, _, h, w = batch["frames"].shape
        pixel_values = self.pixel_values(batch["frames"].reshape(b * c, 3, h, w))
        out = {"pixel_values": pixel_values.reshape(b, -1, h, w)}
        out.update((k, v) for k, v in batch.items() if k != "frames")
        return out

    def __call__(self, samples: Sequence[Sample]) -> dict:
        """Samples -> the model-ready batch (both stages)."""
        return self.finish(self.prepare(samples))
