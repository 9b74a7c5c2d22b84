"""openpi's own client package (openpi-client 0.1.2 from PyPI) against a real `clearvla serve`, unchanged:
`WebsocketClientPolicy` with openpi's observation layouts, and `ActionChunkBroker` over it for every horizon.

openpi-client 0.1.2 pins numpy<2, which clashes with this environment's numpy 2; its code runs on numpy 2, so it
is installed beside it without its pin: `pip install -c .venv/constraints.txt dm-tree` then
`pip install --no-deps openpi-client==0.1.2`. Without it these tests are skipped."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openpi_client", reason="pip install --no-deps openpi-client==0.1.2 (see this module's docstring)")
from openpi_client.action_chunk_broker import ActionChunkBroker  # noqa: E402
from openpi_client.websocket_client_policy import WebsocketClientPolicy  # noqa: E402

from clearvla.client import RemotePolicy, WebsocketPolicyClient  # noqa: E402

PROMPT = "pick up the red block"


def _port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _libero(image: np.ndarray) -> dict:
    """openpi's examples/libero observation: agent view, wrist view, state [8] (eef pos, axis-angle, gripper)."""
    return {"observation/image": image, "observation/wrist_image": image[::-1].copy(),
            "observation/state": np.linspace(-0.1, 0.1, 8), "prompt": PROMPT}


@pytest.fixture(scope="module")
def policy(compat_server):
    client = WebsocketClientPolicy(host="127.0.0.1", port=_port(compat_server))
    yield client
    client._ws.close()  # openpi-client 0.1.2 has no close()


def test_libero_layout_gets_the_models_chunk(policy, chunk_model, image):
    meta = policy.get_server_metadata()
    assert meta["chunk_size"] == chunk_model.config.action_chunk and meta["cameras"] == ["image"]
    reply = policy.infer(_libero(image))
    expected = chunk_model.predict_action_chunk(image, PROMPT, "workcell")
    np.testing.assert_allclose(reply["actions"], expected)  # the compat server has no safety limits
    assert "action" not in reply and "raw_action" not in reply
    arrays = {k: v.shape for k, v in reply.items() if isinstance(v, np.ndarray)}
    assert arrays == {"actions": expected.shape, "raw_actions": expected.shape}  # nothing else for the broker to slice


@pytest.mark.parametrize("horizon", [1, 3, 8])
def test_action_chunk_broker_steps_through_the_chunk(policy, chunk_model, image, horizon):
    """The broker indexes every array leaf by the step: with a 1-D `action` beside `actions` step 8 raised
    IndexError (issue #31). Every horizon up to K now yields the chunk's steps in order."""
    chunk = chunk_model.predict_action_chunk(image, PROMPT, "workcell")
    broker = ActionChunkBroker(policy, action_horizon=horizon)
    for step in range(2 * horizon + 1):
        out = broker.infer(_libero(image))
        np.testing.assert_allclose(out["actions"], chunk[step % horizon])
        assert out["raw_actions"].shape == (7,) and out["step_clip_reasons"] == [[]] * len(chunk)


def test_chw_float_images_match_hwc_uint8(policy, image):
    """openpi's conventions: CHW layout, float in [0, 1] scaled as `(255 * x).astype(uint8)`."""
    as_float = image.astype(np.float32) / 255.0
    chw = policy.infer({"observation/image": np.ascontiguousarray(as_float.transpose(2, 0, 1)), "prompt": PROMPT})
    hwc = policy.infer({"observation/image": (255 * as_float).astype(np.uint8), "prompt": PROMPT})
    np.testing.assert_array_equal(chw["actions"], hwc["actions"])


def test_droid_and_aloha_layouts(policy, chunk_model, image):
    droid = policy.infer({"observation/exterior_image_1_left": image, "observation/wrist_image_left": image,
                          "observation/joint_position": np.zeros(7), "observation/gripper_position": np.zeros(1),
                          "prompt": PROMPT})
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    aloha = policy.infer({"images": {"cam_high": chw, "cam_low": chw, "cam_left_wrist": chw, "cam_right_wrist": chw},
                          "state": np.zeros(14), "prompt": PROMPT})
    expected = chunk_model.predict_action_chunk(image, PROMPT, "workcell")
    np.testing.assert_allclose(droid["actions"], expected)
    np.testing.assert_allclose(aloha["actions"], expected)


def test_errors_raise_in_the_client_and_the_connection_survives(policy, image):
    for bad in ({"observation/image": image}, {"observation/image": image.astype(np.float64), "prompt": PROMPT},
                {"observation/image": image, "image": image, "prompt": PROMPT}, {"prompt": PROMPT, "camera": image}):
        with pytest.raises(RuntimeError, match="Error in inference server"):
            policy.infer(bad)
    assert policy.infer(_libero(image))["actions"].shape == (8, 7)


def test_api_key_and_safety_limits_on_the_token_server(server, image):
    """openpi sends the token as `Api-Key <token>`; a token model's chunk is K = 1, limited by the default robot."""
    client = WebsocketClientPolicy(host=f"ws://127.0.0.1:{_port(server)}/ws", api_key=server.token)
    try:
        broker = ActionChunkBroker(client, action_horizon=1)
        out = broker.infer({"observation/image": image, "prompt": PROMPT, "unnorm_key": "workcell"})
    finally:
        client._ws.close()
    assert out["actions"].shape == (7,) and out["robot"] == "arm"
    assert np.abs(out["actions"][:3]).max() <= server.limits["robots"]["arm"]["max_translation"] + 1e-12


def test_our_websocket_client_reads_the_chunk_reply(compat_server, chunk_model, image):
    """clearvla.client over the same websocket: step 0 comes from the chunk; RemotePolicy runs it open loop."""
    expected = chunk_model.predict_action_chunk(image, PROMPT, "workcell")
    with WebsocketPolicyClient(compat_server.ws_url, timeout=60) as ws:
        result = ws.act(image, PROMPT)
        np.testing.assert_allclose(result.action, expected[0])
        np.testing.assert_allclose(result.raw_action, expected[0])
        assert result.actions.shape == expected.shape and result.clip_reasons == () and not result.clipped
        remote = RemotePolicy(ws, execute=3)
        steps = [remote.select_action({"image": image}, {"instruction": PROMPT}) for _ in range(4)]
    np.testing.assert_allclose(np.stack(steps), np.concatenate([expected[:3], expected[:1]]), rtol=1e-6, atol=1e-7)
