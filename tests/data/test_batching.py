"""The collator: OpenVLA's prompt + action tokens + </s>, labels only on the action, right padding."""

from __future__ import annotations

import numpy as np
import torch

from clearvla.actions.tokenizer import ActionTokenizer
from clearvla.data.augment import AugmentConfig
from clearvla.data.batching import IGNORE_INDEX, Sample, VLACollator, pad_batch
from clearvla.models.tokenizer import prompt_ids


def _samples(synth, n=3):
    rng = np.random.default_rng(0)
    images = synth.frames(n, seed=1)
    texts = ["pick up the red block", "Stack the GREEN cube on the blue plate please", "push it"]
    return [Sample(images[i], texts[i % 3], rng.uniform(-1, 1, 7).astype(np.float32), f"set{i % 2}") for i in range(n)]


def test_sequence_labels_and_padding(synth, tiny_tokenizer, processor):
    samples = _samples(synth)
    batch = VLACollator(tiny_tokenizer, processor)(samples)
    assert list(batch) == ["pixel_values", "input_ids", "attention_mask", "labels", "actions", "dataset_name"]
    tokens = ActionTokenizer(tiny_tokenizer.vocab_size, 256)
    lengths = batch["attention_mask"].sum(1).tolist()
    for i, s in enumerate(samples):
        prompt = prompt_ids(tiny_tokenizer, s.instruction)
        expected = prompt + tokens.encode(s.action).tolist() + [tiny_tokenizer.eos_token_id]
        n = len(expected)
        assert lengths[i] == n
        assert batch["input_ids"][i, :n].tolist() == expected
        assert (batch["input_ids"][i, n:] == tiny_tokenizer.pad_token_id).all()  # right padding
        labels = batch["labels"][i]
        assert (labels[: n - 8] == IGNORE_INDEX).all() and (labels[n:] == IGNORE_INDEX).all()
        assert labels[n - 8 : n].tolist() == expected[-8:]  # the 7 action tokens and </s>
    torch.testing.assert_close(batch["actions"], torch.tensor(np.stack([s.action for s in samples])))
    assert batch["dataset_name"] == ["set0", "set1", "set0"]


def test_pixel_values_match_the_processor(synth, tiny_tokenizer, processor):
    samples = _samples(synth, 5)
    batch = VLACollator(tiny_tokenizer, processor)(samples)
    expected = processor([s.images for s in samples])
    assert batch["pixel_values"].shape == (5, 6, 32, 32)
    # the collator applies the processor's normalisation as one fused multiply-add: equal up to float rounding
    torch.testing.assert_close(batch["pixel_values"], expected, atol=1e-6, rtol=0)


def test_augmentation_is_seeded_and_before_normalisation(synth, tiny_tokenizer, processor):
    samples = _samples(synth, 5)
    a = VLACollator(tiny_tokenizer, processor, augment=AugmentConfig(), seed=7)(samples)
    b = VLACollator(tiny_tokenizer, processor, augment=AugmentConfig(), seed=7)(samples)
    plain = processor([s.images for s in samples])
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and not torch.equal(a["pixel_values"], plain)
    # still the processor's normalisation of an image in [0, 1]: invert the SigLIP half (mean = std = 0.5)
    unit = a["pixel_values"][:, 3:] * 0.5 + 0.5
    assert unit.min() >= -1e-6 and unit.max() <= 1 + 1e-6


def test_pad_batch():
    out = pad_batch([[5, 6, 7], [8]], [[-100, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_output_buffers_are_reused_only_once_released():
    from clearvla.data.batching import _BufferPool

    pool = _BufferPool()
    first = pool.get((2, 3))
    held = first.data_ptr()
    assert pool.get((2, 3)).data_ptr() != held  # still referenced by `first`
    view = first[0]
    del first
    assert pool.get((2, 3)).data_ptr() != held  # a view keeps the array alive too
    del view
    assert pool.get((2, 3)).data_ptr() == held


def test_cameras_in_order_and_proprio(synth, tiny_tokenizer, processor):
    """[C, S, S, 3] samples -> pixel_values [B, C * 6, S, S], camera c's channels at c*6..c*6+5; proprio [B, P]."""
    frames = synth.frames(6, seed=2)
    rng = np.random.default_rng(1)
    samples = [
        Sample(np.stack([frames[i], frames[i + 3]]), "push it", rng.uniform(-1, 1, 7).astype(np.float32), "set0",
               proprio=np.full(13, i, np.float32))
        for i in range(3)
    ]
    batch = VLACollator(tiny_tokenizer, processor)(samples)
    assert batch["pixel_values"].shape == (3, 12, 32, 32)
    torch.testing.assert_close(batch["pixel_values"][:, :6], processor([frames[i] for i in range(3)]), atol=1e-6, rtol=0)
    torch.testing.assert_close(batch["pixel_values"][:, 6:], processor([frames[i + 3] for i in range(3)]), atol=1e-6, rtol=0)
    assert batch["proprio"].shape == (3, 13) and batch["proprio"][:, 0].tolist() == [0.0, 1.0, 2.0]
