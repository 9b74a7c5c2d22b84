"""OpenVLA-OFT parallel decoding: slot attention, the L1 head, chunk inference, checkpoints, the policy's queue."""

import numpy as np
import pytest
import torch

from clearvla.data.batching import Sample, VLACollator
from clearvla.data.loader import _Loaded
from clearvla.errors import ConfigError, InputError
from clearvla.infer.policy import VLAPolicy
from clearvla.models.heads import slot_attention
from clearvla.models.vla import VLA

NORM = {"sim": {"action": {"q01": [-0.02] * 6 + [0.0], "q99": [0.02] * 6 + [1.0], "mask": [True] * 6 + [False]}}}
K = 4


@pytest.fixture(scope="module")
def chunk_vla():
    return VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=K).eval()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_slot_attention_is_causal_for_text_bidirectional_for_slots_and_blind_to_padding():
    valid = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    mask, positions = slot_attention(valid, n_slots=3)
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bool
    m = mask[0, 0]
    assert m[1, :2].all() and not m[1, 2]  # text: causal
    assert not m[:4, 4:].any()  # text never sees a slot
    assert m[4:, 4:].all()  # slots see each other, in both directions
    assert m[4:, :3].all() and not m[:, 3].any()  # slots see the real text; nobody sees padding
    assert positions[0].tolist() == [0, 1, 2, 2, 3, 4, 5]  # slots follow the last real token
    assert positions[1].tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_a_bidirectional_prefix_sees_itself_both_ways_but_never_the_slots():
    valid = torch.tensor([[1, 1, 1, 0]])
    m = slot_attention(valid, n_slots=2, bidirectional_prefix=True)[0][0, 0]
    assert m[0, :3].all() and m[1, 2]  # real tokens see later real tokens too
    assert not m[:4, 4:].any() and not m[:, 3].any()  # still blind to the slots; nobody sees padding
    assert m[4:, :3].all() and m[4:, 4:].all()


def test_bidirectional_prefix_lets_patches_read_the_instruction_and_round_trips(tmp_path):
    causal = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=K).eval()
    both = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=K, prefix_attention="bidirectional").eval()
    both.load_state_dict(causal.state_dict())  # same weights: only the mask differs
    with torch.no_grad():
        a, b = (m.predict_action_chunk(_image(0), "pick up the red block", "sim") for m in (causal, both))
    assert not np.allclose(a, b)
    both.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config.prefix_attention == "bidirectional"
    with torch.no_grad():
        np.testing.assert_allclose(loaded.predict_action_chunk(_image(0), "pick up the red block", "sim"), b, atol=1e-6)
    with pytest.raises(ConfigError, match="prefix_attention"):
        VLA.from_config("tiny", image_size=32, action_chunk=K, prefix_attention="sideways")
    with pytest.raises(ConfigError, match="bidirectional prefix needs an action-chunk model"):
        VLA.from_config("tiny", image_size=32, prefix_attention="bidirectional")


def test_chunk_prediction_shape_units_and_padding_invariance(chunk_vla):
    images, texts = [_image(0), _image(1)], ["pick up the red block", "push the small grey nut to the left side"]
    both = chunk_vla.predict_action_chunk(images, texts)
    assert both.shape == (2, K, 7)
    for i in range(2):  # the shorter prompt is padded in the batch: same chunk as alone
        np.testing.assert_allclose(chunk_vla.predict_action_chunk(images[i], texts[i]), both[i], atol=1e-5)
    assert (np.abs(both[..., :6]) <= 0.02 + 1e-9).all()  # clipped to the normalised range, then un-normalised
    np.testing.assert_allclose(chunk_vla.predict_action(images[0], texts[0]), both[0, 0], atol=1e-5)


def test_chunk_loss_is_l1_and_reaches_vision_and_head(chunk_vla):
    vla = VLA.from_config("tiny", image_size=32, seed=1, norm_stats=NORM, action_chunk=K).train()
    collator = VLACollator(vla.tokenizer, vla.processor)
    targets = np.random.default_rng(0).uniform(-1, 1, (2, K, 7)).astype(np.float32)
    batch = collator([Sample(_image(i), "lift the nut", targets[i], "sim") for i in range(2)])
    assert (batch["labels"] == -100).all() and batch["actions"].shape == (2, K, 7)
    out = vla(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], actions=batch["actions"])
    torch.testing.assert_close(out.loss, (out.actions - batch["actions"]).abs().mean())
    out.loss.backward()
    assert vla.action_head.model.fc2.weight.grad.abs().sum() > 0
    assert next(vla.vision_backbone.parameters()).grad.abs().sum() > 0
    with pytest.raises(InputError, match=r"\[B, 4, 7\]"):
        vla(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], actions=batch["actions"][:, :2])


def test_round_trip_keeps_the_head(chunk_vla, tmp_path):
    chunk_vla.save_pretrained(tmp_path / "ckpt")
    loaded = VLA.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.action_chunk == K and loaded.config.action_dim == 7
    np.testing.assert_allclose(loaded.predict_action_chunk(_image(2), "lift the nut"),
                               chunk_vla.predict_action_chunk(_image(2), "lift the nut"), atol=1e-6)


def test_token_models_give_one_step_chunks(tiny_vla):
    image = np.zeros((224, 224, 3), np.uint8)
    chunk = tiny_vla.predict_action_chunk(image, "lift the nut")
    np.testing.assert_array_equal(chunk, tiny_vla.predict_action(image, "lift the nut")[None])


def test_policy_queue_runs_chunks_open_loop(chunk_vla, monkeypatch):
    calls = []
    real = chunk_vla.predict_action_chunk

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(chunk_vla, "predict_action_chunk", counted)
    policy = VLAPolicy(chunk_vla, execute=3)
    obs, info = {"image": _image(3)}, {"instruction": "lift the nut"}
    actions = [policy(obs, info) for _ in range(7)]
    assert len(calls) == 3  # steps 0, 3 and 6 ran the model
    np.testing.assert_allclose(actions[1], real(obs["image"], "lift the nut")[1], atol=1e-5)
    policy.reset()
    policy(obs, info)
    assert len(calls) == 4  # a new episode never finishes the old chunk
    with pytest.raises(InputError, match="between 1 and the model's chunk length 4"):
        VLAPolicy(chunk_vla, execute=5)


def test_temporal_ensemble_averages_what_each_recent_chunk_said_about_now(chunk_vla, tiny_vla, monkeypatch):
    """ACT's ensemble: at step t, chunk j (predicted at step j) contributes its entry t - j, weighted exp(-m * i)
    with i = 0 the oldest of the last K chunks."""
    step = iter(range(100))

    def chunk(*args, **kwargs):  # the chunk predicted at step t holds 10 t + k at entry k
        t = next(step)
        return np.array([[10.0 * t + k] * 7 for k in range(K)])

    monkeypatch.setattr(chunk_vla, "predict_action_chunk", chunk)
    obs, info = {"image": _image(4)}, {"instruction": "lift the nut"}
    uniform = VLAPolicy(chunk_vla, ensemble=0.0)
    assert [uniform(obs, info)[0] for _ in range(3)] == [0.0, 5.5, 11.0]  # step 2: mean(c0[2], c1[1], c2[0]) = mean(2, 11, 20)
    assert [uniform(obs, info)[0] for _ in range(2)] == [16.5, 26.5]  # only the last K = 4 chunks count
    step = iter(range(100))
    decayed = VLAPolicy(chunk_vla, ensemble=float(np.log(2)))
    actions = [decayed(obs, info)[0] for _ in range(3)]
    assert actions[2] == pytest.approx((2 * 1 + 11 * 0.5 + 20 * 0.25) / 1.75)
    decayed.reset()
    assert decayed(obs, info)[0] == 30.0  # a new episode forgets the old chunks
    with pytest.raises(InputError, match="ensemble needs a chunk model"):
        VLAPolicy(tiny_vla, ensemble=0.01)
    with pytest.raises(InputError, match="no execute"):
        VLAPolicy(chunk_vla, ensemble=0.01, execute=2)


def test_loader_chunks_repeat_the_last_action_past_the_end():
    actions = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    episode = _Loaded(np.zeros((5, 1, 8, 8, 3), np.uint8), actions, None, "lift", np.arange(5))
    chunk = episode.sample(3, "sim", chunk=4).action
    np.testing.assert_array_equal(chunk, actions[[3, 4, 4, 4]])
    np.testing.assert_array_equal(episode.sample(3, "sim").action, actions[3])


def test_config_rejects_a_negative_chunk():
    with pytest.raises(ConfigError, match="action_chunk must be an integer >= 0"):
        VLA.from_config("tiny", image_size=32, action_chunk=-1)


def test_a_checkpoint_says_how_many_actions_of_each_chunk_to_run(tmp_path, monkeypatch):
    """`execute_actions` travels in config.json; a policy built without `execute` re-plans at that step, an explicit
    `execute` overrides it, and an out-of-range value is refused naming the field."""
    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=NORM, action_chunk=K, execute_actions=2).eval()
    vla.save_pretrained(tmp_path / "ck")
    loaded = VLA.from_pretrained(tmp_path / "ck")
    assert loaded.config.execute_actions == 2
    calls = []
    real = loaded.predict_action_chunk
    monkeypatch.setattr(loaded, "predict_action_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    obs, info = {"image": _image(5)}, {"instruction": "lift the nut"}
    policy = VLAPolicy(loaded)
    [policy(obs, info) for _ in range(5)]
    assert len(calls) == 3  # steps 0, 2 and 4
    assert VLAPolicy(loaded, execute=K).execute == K
    with pytest.raises(ConfigError, match="execute_actions must be an integer from 0 .* chunk length 4, got 5"):
        VLA.from_config("tiny", image_size=32, action_chunk=K, execute_actions=5)
    with pytest.raises(ConfigError, match="execute_actions .* chunk length 0"):
        VLA.from_config("tiny", image_size=32, execute_actions=1)
