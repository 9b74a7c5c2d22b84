"""A real `clearvla serve` on loopback: OpenVLA's client, the envelope, the websocket, batching, safety, deadlines."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import json_numpy
import numpy as np
import pytest
import requests

from clearvla.client import PolicyClient, ServerError, WebsocketPolicyClient
from clearvla.serve.safety import RobotLimits



def arm_limits(server) -> RobotLimits:
    return RobotLimits.from_dict(server.limits["robots"]["arm"], "arm")


def test_openvla_client_unchanged(server, serve_model, image, monkeypatch):
    """The client snippet from OpenVLA's deploy.py, verbatim but for the token header."""
    monkeypatch.setattr(json, "dumps", json_numpy.dumps)  # == json_numpy.patch(), undone after the test
    monkeypatch.setattr(json, "loads", json_numpy.loads)
    response = requests.post(server.url + "/act", json={"image": image, "instruction": "pick up the red block",
                                                        "unnorm_key": "workcell"}, headers=server.auth, timeout=60)
    action = response.json()
    # the double-encoded form, for clients without json_numpy on the wire
    encoded = requests.post(server.url + "/act", json={"encoded": json_numpy.dumps(
        {"image": image, "instruction": "pick up the red block", "unnorm_key": "workcell"})}, headers=server.auth, timeout=60)
    text = encoded.json()
    monkeypatch.undo()

    assert isinstance(action, np.ndarray) and action.shape == (7,) and action.dtype == np.float64
    expected, reasons = arm_limits(server).apply(serve_model.predict_action(image, "pick up the red block", "workcell"))
    np.testing.assert_allclose(action, expected)
    assert response.headers["X-ClearVLA-Clipped"] == str(bool(reasons)).lower()
    assert response.headers["X-ClearVLA-Clip-Reasons"] == ",".join(reasons)
    assert isinstance(text, str)
    np.testing.assert_allclose(json_numpy.loads(text), expected)


def test_envelope_reports_clipping(server, serve_model, image):
    with PolicyClient(server.url, token=server.token, timeout=60) as client:
        result = client.act(image, "push the block left", "bridge_orig")
        free = client.act(image, "push the block left", "bridge_orig", robot="free")
    raw = serve_model.predict_action(image, "push the block left", "bridge_orig")
    np.testing.assert_allclose(result.raw_action, raw)
    np.testing.assert_allclose(free.action, raw)
    assert not free.clipped and free.raw["robot"] == "free"
    expected, reasons = arm_limits(server).apply(raw)
    np.testing.assert_allclose(result.action, expected)
    assert result.type == "action" and result.clipped == bool(reasons) and list(result.clip_reasons) == reasons
    assert set(result.raw) >= {"type", "action", "raw_action", "clipped", "clip_reasons", "latency_ms", "batch_size"}
    assert result.actions.shape == (1, 7) and np.array_equal(result.actions[0], result.action)  # a token model's chunk
    assert result.step_clip_reasons == (tuple(reasons),)


def test_workspace_needs_the_state_and_clips_to_the_box(server, image):
    with PolicyClient(server.url, token=server.token, timeout=60) as client:
        with pytest.raises(ServerError, match="first 3 entries are the end-effector position") as info:
            client.act(image, "push the block left", "workcell", robot="boxed")
        assert info.value.status == 422 and info.value.field == "proprio"
        at_corner = client.act(image, "push the block left", "workcell", robot="boxed", proprio=[0.5, 0.5, 0.5, 0, 0, 0, 1])
        inside = client.act(image, "push the block left", "workcell", robot="boxed", proprio=[0.0, 0.0, 0.2])
    assert (at_corner.action[:3] <= 1e-12).all()  # nothing may leave the box through the +x/+y/+z corner
    assert at_corner.clipped == bool((at_corner.raw_action[:3] > 0).any())
    assert not inside.clipped


def test_metadata_and_health(server):
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    meta = requests.get(server.url + "/metadata", headers=server.auth, timeout=10).json()
    assert meta["norm_keys"] == ["bridge_orig", "workcell"] and meta["action_dim"] == 7 and meta["chunk_size"] == 1
    assert meta["cameras"] == ["image"] and meta["proprio_dim"] == 0 and meta["image_size"] == 32
    assert meta["limits"]["default"] == "arm" and meta["limits"]["robots"]["boxed"]["workspace"]["high"] == [0.5, 0.5, 0.5]


def test_websocket_msgpack(server, serve_model, image):
    with WebsocketPolicyClient(server.ws_url, token=server.token, timeout=60) as ws:
        assert ws.metadata["norm_keys"] == ["bridge_orig", "workcell"]  # sent on connect, as openpi does
        first = ws.act(image, "pick up the red block", "workcell", robot="free")
        with pytest.raises(ServerError, match="unknown unnorm_key") as info:
            ws.act(image, "pick up the red block", "nope")
        assert info.value.status == 422
        again = ws.act(image, "pick up the red block", "workcell", robot="free")  # the connection survived the error
    np.testing.assert_allclose(first.action, serve_model.predict_action(image, "pick up the red block", "workcell"))
    np.testing.assert_array_equal(first.action, again.action)
    assert first.actions.shape == (1, 7) and first.raw_actions.shape == (1, 7)


def test_concurrent_requests_are_batched(server, serve_model):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(8)]
    texts = [f"pick up the {c} block" for c in ("red", "green", "blue", "yellow")] * 2
    before = requests.get(server.url + "/stats", headers=server.auth, timeout=10).json()

    def one(i):
        with PolicyClient(server.url, token=server.token, timeout=60) as client:
            return client.act(images[i], texts[i], "workcell", robot="free")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    after = requests.get(server.url + "/stats", headers=server.auth, timeout=10).json()
    np.testing.assert_allclose(np.stack([r.action for r in results]), serve_model.predict_action(images, texts, "workcell"))
    assert after["batched_requests"] - before["batched_requests"] == 8
    assert after["batches"] - before["batches"] < 8 and max(r.raw["batch_size"] for r in results) > 1


def test_stale_requests_are_dropped(server, image):
    with PolicyClient(server.url, token=server.token, timeout=60, retries=0) as client:
        for fields in ({"deadline_ms": 0.001}, ):
            with pytest.raises(ServerError, match="dropped, not executed late") as info:
                client.act(image, "go", "workcell", **fields)
            assert info.value.status == 408
    body = {"image": json_numpy.dumps(image), "instruction": "go", "unnorm_key": "workcell", "deadline": time.time() - 1}
    body["image"] = json.loads(body["image"])
    response = requests.post(server.url + "/v1/act", data=json.dumps(body), headers=server.auth, timeout=60)
    assert response.status_code == 408 and "on arrival" in response.json()["error"]


def test_client_retries_then_raises_on_a_dead_port(image):
    client = PolicyClient("http://127.0.0.1:9", timeout=0.5, retries=2, backoff_s=0.01)
    t0 = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        client.act(image, "go")
    assert time.monotonic() - t0 < 10
    assert not client.healthy()
