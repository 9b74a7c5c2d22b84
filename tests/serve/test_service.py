"""The service behind the endpoints, in process: multi-camera + proprio models (issue 10's API), batching of
concurrent requests, safety limits after inference."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from clearvla.serve.service import PolicyService, ServeConfig
from clearvla.serve.codecs import json_numpy_encode
from clearvla.serve.errors import RequestError
from clearvla.serve.safety import RobotLimits, SafetyConfig

STATS = {"w": {"action": {"q01": [-0.02] * 3 + [-0.1] * 3 + [0.0], "q99": [0.02] * 3 + [0.1] * 3 + [1.0], "mask": [True] * 6 + [False]},
               "proprio": {"q01": [-1.0] * 8, "q99": [1.0] * 8}}}


@pytest.fixture(scope="module")
def two_camera_vla():
    from clearvla.models.vla import VLA

    return VLA.from_config("tiny", image_size=32, cameras=("image", "wrist"), proprio_dim=8, norm_stats=STATS).eval()


def _request(rng, **extra):
    image, wrist = (rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8) for _ in range(2))
    state = rng.uniform(-0.3, 0.3, 8)
    payload = {"image": json_numpy_encode(image), "images": {"wrist": json_numpy_encode(wrist)},
               "instruction": "put the nut in the tray", "proprio": state.tolist(), **extra}
    return payload, {"image": image, "wrist": wrist}, state


def test_multi_camera_proprio_requests_batch_and_match_the_model(two_camera_vla):
    limits = SafetyConfig({"arm": RobotLimits(max_translation=0.01, workspace_low=(-0.5,) * 3, workspace_high=(0.5,) * 3)})
    service = PolicyService(two_camera_vla, ServeConfig(max_batch_size=4, max_wait_ms=50, safety=limits))
    assert service.metadata["cameras"] == ["image", "wrist"] and service.metadata["proprio_dim"] == 8
    rng = np.random.default_rng(0)
    requests = [_request(rng) for _ in range(3)]

    async def main():
        await service.batcher.start()
        try:
            return await asyncio.gather(*(service.act(p, time.monotonic(), time.time()) for p, _, _ in requests))
        finally:
            await service.batcher.stop()

    results = asyncio.run(main())
    expected = two_camera_vla.predict_action([obs for _, obs, _ in requests], ["put the nut in the tray"] * 3, "w",
                                             proprio=np.stack([s for _, _, s in requests]))
    for (req, res), (_, _, state), raw in zip(results, requests, expected):
        assert res.batch_size == 3 and res.robot == "arm"
        np.testing.assert_allclose(res.raw_action, raw)
        np.testing.assert_allclose(res.action, limits.robots["arm"].apply(raw, state[:3])[0])
        np.testing.assert_array_equal(req.ee_position, state[:3])


def test_multi_camera_schema_errors(two_camera_vla):
    service = PolicyService(two_camera_vla, ServeConfig())
    rng = np.random.default_rng(1)
    payload, _, _ = _request(rng)
    del payload["images"]
    with pytest.raises(RequestError, match=r"missing camera\(s\) \['wrist'\]"):
        asyncio.run(service.act(payload, time.monotonic(), time.time()))
    payload, _, _ = _request(rng)
    payload["proprio"] = [0.0] * 7
    with pytest.raises(RequestError, match="reads 8"):
        asyncio.run(service.act(payload, time.monotonic(), time.time()))


def _answer(vla, payload, threshold: float, may_ask: bool):
    service = PolicyService(vla, ServeConfig(ask_threshold=threshold))

    async def main():
        await service.batcher.start()
        try:
            return (await service.act(payload, time.monotonic(), time.time(), may_ask=may_ask))[1]
        finally:
            await service.batcher.stop()

    return asyncio.run(main())


def test_unsure_model_asks_on_v1_but_never_on_openvla_act(two_camera_vla):
    """--ask-threshold: above it the versioned endpoints answer a question instead of an action; /act always acts."""
    payload, _, _ = _request(np.random.default_rng(1))
    asked = _answer(two_camera_vla, payload, 0.0, may_ask=True)  # entropy is > 0 for any real distribution
    assert asked.kind == "ask" and asked.action is None and "put the nut in the tray" in asked.question
    assert asked.envelope()["type"] == "ask" and asked.envelope()["options"] == []
    assert _answer(two_camera_vla, payload, 0.0, may_ask=False).kind == "action"
    assert _answer(two_camera_vla, payload, 1.0, may_ask=True).kind == "action"  # normalised entropy never exceeds 1


def test_chunk_models_ask_from_their_spread_over_augmented_views(two_camera_vla):
    from clearvla.models.vla import VLA

    chunk_vla = VLA.from_config("tiny", image_size=32, cameras=two_camera_vla.config.cameras,
                                proprio_dim=two_camera_vla.config.proprio_dim, norm_stats=two_camera_vla.norm_stats,
                                action_chunk=2).eval()
    payload, _, _ = _request(np.random.default_rng(1))
    assert _answer(chunk_vla, payload, 0.0, may_ask=True).kind == "ask"  # a random model's chunk moves with the view
    assert _answer(chunk_vla, payload, 1.0, may_ask=True).kind == "action"
    assert PolicyService(chunk_vla, ServeConfig()).scorer is None  # serving without asking builds no scorer


def test_chunk_models_answer_the_whole_chunk_limited_step_by_step(two_camera_vla):
    """A chunk model's server returns all K actions (`actions` [K, A]) so a robot can execute them open loop without
    a round trip per step; each step is limited from where the previous one leaves the arm."""
    from clearvla.models.vla import VLA

    chunk_vla = VLA.from_config("tiny", image_size=32, cameras=two_camera_vla.config.cameras,
                                proprio_dim=two_camera_vla.config.proprio_dim, norm_stats=two_camera_vla.norm_stats,
                                action_chunk=4).eval()
    arm = RobotLimits(max_translation=0.005, workspace_low=(-0.5,) * 3, workspace_high=(0.5,) * 3)
    service = PolicyService(chunk_vla, ServeConfig(safety=SafetyConfig({"arm": arm})))
    assert service.metadata["chunk_size"] == 4 and service.metadata["execute_actions"] == 4
    payload, obs, state = _request(np.random.default_rng(2))
    res = asyncio.run(_served(service, payload))
    raw = chunk_vla.predict_action_chunk(obs, "put the nut in the tray", "w", proprio=state)
    assert res.actions.shape == (4, 7)
    np.testing.assert_allclose(res.raw_actions, raw)
    expected, reasons = arm.apply_chunk(raw, state[:3])
    np.testing.assert_allclose(res.actions, expected)
    np.testing.assert_array_equal(res.action, res.actions[0])
    body = res.envelope()
    assert np.asarray(body["actions"]).shape == (4, 7) and body["step_clip_reasons"] == reasons
    assert body["clip_reasons"] == reasons[0] and body["action"] == body["actions"][0]
    reply = res.websocket_reply()  # openpi's ActionChunkBroker slices every array leaf along axis 0
    assert {k: v.shape for k, v in reply.items() if isinstance(v, np.ndarray)} == {"actions": (4, 7), "raw_actions": (4, 7)}
    assert "action" not in reply and reply["step_clip_reasons"] == reasons


def test_token_models_answer_a_chunk_of_one(two_camera_vla):
    service = PolicyService(two_camera_vla, ServeConfig())
    assert service.metadata["chunk_size"] == 1
    payload, _, _ = _request(np.random.default_rng(3))
    res = asyncio.run(_served(service, payload))
    assert res.actions.shape == (1, 7) and res.envelope()["step_clip_reasons"] == [[]]


async def _served(service, payload):
    await service.batcher.start()
    try:
        return (await service.act(payload, time.monotonic(), time.time()))[1]
    finally:
        await service.batcher.stop()
