import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clearvla.errors import InputError, UnnormKeyError
from clearvla.models.tokenizer import prompt_ids


def _naive_greedy(vla, image, instruction, n):
    """Reference-style decoding: recompute the whole sequence each step, no cache, batch of one."""
    pv = vla.processor(image)
    ids = torch.tensor([prompt_ids(vla.tokenizer, instruction)])
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = vla(pv, ids, torch.ones_like(ids)).logits
            nxt = logits[0, -1].argmax()
            out.append(int(nxt))
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return out


def test_kv_cached_decoding_matches_full_recompute(tiny_vla, rgb_image):
    tokens = tiny_vla.predict_action_tokens(rgb_image, "stack the red block on the blue plate")
    assert tokens.shape == (7,) and tokens.dtype == np.int64
    assert tokens.tolist() == _naive_greedy(tiny_vla, rgb_image, "stack the red block on the blue plate", 7)


def test_matches_hf_generate_on_the_same_embeddings(tiny_vla, rgb_image):
    text = "pick up the small nut"
    ids = torch.tensor([prompt_ids(tiny_vla.tokenizer, text)])
    with torch.no_grad():
        emb = tiny_vla.embed(tiny_vla.processor(rgb_image), ids)
        gen = tiny_vla.language_model.generate(inputs_embeds=emb, max_new_tokens=7, do_sample=False, pad_token_id=0)
    assert gen[0, -7:].tolist() == tiny_vla.predict_action_tokens(rgb_image, text).tolist()


def test_batch_equals_one_at_a_time(tiny_vla, rgb_image):
    images = [rgb_image, rgb_image[::-1].copy(), rgb_image[:, ::-1].copy()]
    texts = ["pick up the red block", "put the large green bolt in the bin on the left", "push it"]
    batch = tiny_vla.predict_action_tokens(images, texts)
    assert batch.shape == (3, 7)
    for i in range(3):
        assert batch[i].tolist() == tiny_vla.predict_action_tokens(images[i], texts[i]).tolist()
    actions = tiny_vla.predict_action(images, texts)
    assert actions.shape == (3, 7) and actions.dtype == np.float64


def test_actions_are_unnormalised_with_the_key(tiny_vla, rgb_image):
    action = tiny_vla.predict_action(rgb_image, "pick up the red block", unnorm_key="workcell")
    assert np.all(np.abs(action[:3]) <= 0.02 + 1e-9)  # metres within the q01/q99 bounds
    with pytest.raises(UnnormKeyError, match="available: workcell"):
        tiny_vla.predict_action(rgb_image, "pick up the red block", unnorm_key="bridge_orig")


def test_loss_supervises_only_labelled_tokens(tiny_vla, rgb_image):
    ids = torch.tensor([prompt_ids(tiny_vla.tokenizer, "pick up the red block") + [900, 901, 2]])
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    pv = tiny_vla.processor(rgb_image)
    out = tiny_vla(pv, ids, torch.ones_like(ids), labels)
    n_patches = tiny_vla.vision_backbone.num_patches
    assert out.logits.shape[1] == ids.shape[1] + n_patches
    # Text position t sits at sequence position t + N (t >= 1); logits at p predict p + 1.
    pred = out.logits[0, [ids.shape[1] - 4 + n_patches + k for k in range(3)]]
    expected = F.cross_entropy(pred, ids[0, -3:])
    torch.testing.assert_close(out.loss, expected)


def test_mismatched_batch_is_an_error(tiny_vla, rgb_image):
    with pytest.raises(InputError, match="2 observations but 1 instructions"):
        tiny_vla.predict_action_tokens([rgb_image, rgb_image], ["a"])
    with pytest.raises(InputError, match="pixel_values must be"):
        tiny_vla(torch.zeros(1, 3, 224, 224), torch.ones(1, 4, dtype=torch.long))
