"""The fast decoder (static KV cache) against the reference loop and transformers' generate."""

import pytest
import torch

import clearvla.models.decoding as decoding
from clearvla.models.decoding import greedy_decode


def _case(seed, batch, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randn(batch, 196, 128, generator=g).to(dtype)
    prompts = [torch.randint(3, 1000, (int(n),), generator=g) for n in torch.randint(3, 20, (batch,), generator=g)]
    for p in prompts:
        p[0] = 1  # BOS
    return prefix, prompts


def _logits_of(monkeypatch, *args, **kwargs):
    """Tokens and every step's logits (as the argmax sees them)."""
    seen = []
    real = decoding._argmax

    def spy(logits, action_ids):
        seen.append(logits.float().clone())
        return real(logits, action_ids)

    monkeypatch.setattr(decoding, "_argmax", spy)
    tokens = greedy_decode(*args, **kwargs)
    monkeypatch.setattr(decoding, "_argmax", real)
    return tokens, seen


@pytest.fixture(scope="module")
def bf16_lm():
    from clearvla.models.vla import VLA

    return VLA.from_config("tiny", seed=0).eval().to(torch.bfloat16).language_model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_path_logits_are_bit_identical_to_the_reference_loop(tiny_vla, bf16_lm, monkeypatch, dtype, batch):
    lm = tiny_vla.language_model if dtype == torch.float32 else bf16_lm
    prefix, prompts = _case(batch, batch, dtype)  # batch 3: prompts of different lengths, left padding
    ref, ref_logits = _logits_of(monkeypatch, lm, prefix, prompts, 7, method="reference")
    fast, fast_logits = _logits_of(monkeypatch, lm, prefix, prompts, 7, method="fast")
    assert fast.shape == (batch, 7) and torch.equal(fast, ref)
    assert len(fast_logits) == 7 and all(torch.equal(a, b) for a, b in zip(ref_logits, fast_logits))


def test_batch_of_different_prompts_equals_row_by_row(tiny_vla):
    prefix, prompts = _case(7, 4)
    batch = greedy_decode(tiny_vla.language_model, prefix, prompts, 7)
    for i in range(4):
        assert torch.equal(batch[i], greedy_decode(tiny_vla.language_model, prefix[i : i + 1], prompts[i : i + 1], 7)[0])


def test_generate_baseline_gives_the_same_tokens(tiny_vla):
    for seed, batch in ((3, 1), (4, 3)):
        prefix, prompts = _case(seed, batch)
        expected = greedy_decode(tiny_vla.language_model, prefix, prompts, 7, method="fast")
        assert torch.equal(greedy_decode(tiny_vla.language_model, prefix, prompts, 7, method="generate"), expected)


def test_action_only_argmax_stays_in_the_action_bins(tiny_vla):
    first, end = tiny_vla.action_tokenizer.first_token_id, tiny_vla.action_tokenizer.vocab_size
    prefix, prompts = _case(5, 3)
    fast = greedy_decode(tiny_vla.language_model, prefix, prompts, 7, action_ids=(first, end))
    ref = greedy_decode(tiny_vla.language_model, prefix, prompts, 7, method="reference", action_ids=(first, end))
    assert torch.equal(fast, ref)
    assert bool(((fast >= first) & (fast < end)).all())
    # Random weights put text tokens first on some steps: restricting the argmax changes those.
    assert not torch.equal(fast, greedy_decode(tiny_vla.language_model, prefix, prompts, 7))


def test_vla_predict_uses_the_fast_path_by_default_with_identical_tokens(tiny_vla, rgb_image):
    images = [rgb_image, rgb_image[::-1].copy()]
    texts = ["pick up the red block", "put the large green bolt in the bin on the left"]
    fast = tiny_vla.predict_action_tokens(images, texts)
    assert fast.tolist() == tiny_vla.predict_action_tokens(images, texts, decode="reference").tolist()
    only = tiny_vla.predict_action_tokens(images, texts, action_tokens_only=True)
    assert tiny_vla.action_tokenizer.is_action_token(only).all()


def test_unknown_method_is_an_error(tiny_vla):
    prefix, prompts = _case(0, 1)
    with pytest.raises(ValueError, match="fast, reference, generate"):
        greedy_decode(tiny_vla.language_model, prefix, prompts, 7, method="beam")
