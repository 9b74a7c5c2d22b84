"""`clearvla serve --openvla-compat`: `/act` answers exactly as OpenVLA's vla-scripts/deploy.py, failures included,
driven as deploy.py's docstring does (the real `json_numpy.patch()`, then `requests.post`); `/v1/act` stays strict.
Hostile payloads on every endpoint of that server never crash it."""

from __future__ import annotations

import json
import math
import time

import json_numpy
import msgpack
import numpy as np
import pytest
import requests
import websockets.sync.client

PROMPT = "pick up the red block"


@pytest.fixture
def patched():
    """`json_numpy.patch()` as deploy.py's clients call it, undone afterwards for the rest of the suite."""
    import numpy.testing  # noqa: F401  (its first import calls json.loads with an object_hook the patched loads breaks on)

    saved = json.dumps, json.loads, json.dump, json.load
    json_numpy.patch()
    yield
    json.dumps, json.loads, json.dump, json.load = saved


def _act(server, payload, **kwargs) -> requests.Response:
    return requests.post(server.url + "/act", json=payload, timeout=60, **kwargs)


def _logged(server, words: str, timeout: float = 10.0) -> str:
    """The server log once it holds `words` (the server writes it asynchronously)."""
    end = time.monotonic() + timeout
    while True:
        text = server.log.read_text()
        if words in text or time.monotonic() > end:
            return text
        time.sleep(0.1)


def test_success_path_is_deploy_pys(compat_server, chunk_model, image, patched):
    action = _act(compat_server, {"image": image, "instruction": PROMPT, "unnorm_key": "workcell"}).json()
    extra = _act(compat_server, {"image": image, "instruction": PROMPT, "robot_id": 7, "session": {"a": 1}}).json()
    grey = image[:, :, 0].copy()
    from_grey = _act(compat_server, {"image": grey, "instruction": PROMPT}).json()
    rgba = _act(compat_server, {"image": np.dstack([image, np.full(image.shape[:2], 9, np.uint8)]), "instruction": PROMPT}).json()
    assert isinstance(action, np.ndarray) and action.shape == (7,) and action.dtype == np.float64
    np.testing.assert_allclose(action, chunk_model.predict_action_chunk(image, PROMPT, "workcell")[0])
    np.testing.assert_array_equal(extra, action)  # unknown extra fields are ignored
    np.testing.assert_array_equal(rgba, action)  # Image.fromarray(rgba).convert("RGB") drops alpha
    np.testing.assert_allclose(from_grey, chunk_model.predict_action_chunk(np.dstack([grey] * 3), PROMPT, "workcell")[0])


@pytest.mark.parametrize("case, reason", [
    ("bad image", "image must have shape"),
    ("float image out of range", "values must be finite and in [0, 1]"),
    ("image not an array", "image must be a numpy array"),
    ("missing instruction", "missing field 'instruction'"),
    ("unknown unnorm_key", "unknown unnorm_key"),
    ("encoded with extra keys", "must have no other fields"),
])
def test_failures_answer_200_error_and_log_the_reason(compat_server, image, patched, case, reason):
    payload = {"image": image, "instruction": PROMPT}
    if case == "bad image":
        payload["image"] = np.zeros((4, 4, 4, 3), np.uint8)
    elif case == "float image out of range":
        payload["image"] = image.astype(np.float32)
    elif case == "image not an array":
        payload["image"] = "a picture"
    elif case == "missing instruction":
        del payload["instruction"]
    elif case == "unknown unnorm_key":
        payload["unnorm_key"] = "bridge_orig"
    elif case == "encoded with extra keys":
        payload = {"encoded": json_numpy.dumps(payload), "instruction": PROMPT}
    response = _act(compat_server, payload)
    assert response.status_code == 200 and response.content == b'"error"'
    assert response.json() == "error"  # what deploy.py's robot clients check for
    log = _logged(compat_server, reason)
    assert '/act answered "error"' in log and reason in log, log[-2000:]


def test_v1_stays_strict_on_the_compat_server(compat_server, image, patched):
    unknown = requests.post(compat_server.url + "/v1/act", json={"image": image, "instruction": PROMPT, "robot_id": 7}, timeout=60)
    grey = requests.post(compat_server.url + "/v1/act", json={"image": image[:, :, 0].copy(), "instruction": PROMPT}, timeout=60)
    assert unknown.status_code == 422 and unknown.json()["field"] == "robot_id"
    assert grey.status_code == 422 and grey.json()["field"] == "image"


def _encode(array: np.ndarray) -> dict:
    return json.loads(json_numpy.dumps(array))


MALFORMED = {  # name -> a JSON body (str) or a payload (dict) to post
    "wrong dtype": {"image": _encode(np.zeros((8, 8, 3), np.int64)), "instruction": PROMPT},
    "bool image": {"image": _encode(np.zeros((8, 8, 3), bool)), "instruction": PROMPT},
    "NaN image": {"image": _encode(np.full((8, 8, 3), np.nan, np.float32)), "instruction": PROMPT},
    "NaN state": {"image": _encode(np.zeros((8, 8, 3), np.uint8)), "instruction": PROMPT, "state": _encode(np.array([0.1, np.nan]))},
    "NaN literal": '{"image": 1, "instruction": NaN}',
    "zero-size image": {"image": _encode(np.zeros((0, 0, 3), np.uint8)), "instruction": PROMPT},
    "zero-size float image": {"image": _encode(np.zeros((0, 5, 3), np.float32)), "instruction": PROMPT},
    "zero-size state": {"image": _encode(np.zeros((8, 8, 3), np.uint8)), "instruction": PROMPT, "state": _encode(np.zeros(0))},
    "DROID half state": {"observation/image": _encode(np.zeros((8, 8, 3), np.uint8)), "prompt": PROMPT,
                         "observation/joint_position": _encode(np.zeros(7))},
    "huge declared shape": {"image": {"__numpy__": "AAAA", "dtype": "|u1", "shape": [60000, 60000, 3]}, "instruction": PROMPT},
    "huge body": {"image": _encode(np.zeros((1024, 1024, 3), np.uint8)), "instruction": PROMPT},  # 4 MiB > MAX_BODY_MB
    "list": "[1, 2]", "string": '"image"', "null": "null", "number": "1e999",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payloads_on_each_rest_endpoint(compat_server, name):
    body = MALFORMED[name] if isinstance(MALFORMED[name], str) else json.dumps(MALFORMED[name])
    compat = requests.post(compat_server.url + "/act", data=body, timeout=60)
    strict = requests.post(compat_server.url + "/v1/act", data=body, timeout=60)
    assert compat.status_code == 200 and compat.content == b'"error"'
    assert 400 <= strict.status_code < 500 and strict.json()["error"], strict.text[:300]


def test_malformed_frames_on_the_websocket(compat_server):
    frames = [b"\xc1\xc1", b"\x92\x01", msgpack.packb("image"), msgpack.packb(None), msgpack.packb({"prompt": PROMPT}),
              msgpack.packb({"observation/image": {b"__ndarray__": True, b"data": b"", b"dtype": "|u1", b"shape": [0, 0, 3]},
                             "prompt": PROMPT}),
              msgpack.packb({"observation/image": {b"__ndarray__": True, b"data": np.full(3, np.nan).tobytes(), b"dtype": "<f8",
                             b"shape": [1, 1, 3]}, "prompt": PROMPT}),
              msgpack.packb({"observation/image": {b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "|b1", b"shape": [1, 1, 3]},
                             "prompt": PROMPT}),
              msgpack.packb({"observation/image": {b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "|u1",
                                                   b"shape": [60000, 60000, 3]}, "prompt": PROMPT}),
              msgpack.packb({1: 2, "prompt": math.inf})]
    with websockets.sync.client.connect(compat_server.ws_url, open_timeout=30, max_size=None) as ws:
        ws.recv(timeout=30)  # metadata
        for frame in frames:
            ws.send(frame)
            reply = ws.recv(timeout=60)
            assert isinstance(reply, str), frame
            error = json.loads(reply)
            assert 400 <= error["status"] < 500 and error["error"], error
        valid = {b"__ndarray__": True, b"data": np.zeros(3).tobytes(), b"dtype": "<f8", b"shape": [1, 1, 3]}
        ws.send(msgpack.packb({"observation/image": valid, "prompt": PROMPT}))
        assert isinstance(ws.recv(timeout=60), bytes)  # still serving on the same connection
    assert compat_server.process.poll() is None
    assert requests.get(compat_server.url + "/healthz", timeout=10).status_code == 200


def test_a_frame_past_the_size_limit_closes_only_its_connection(compat_server):
    """A message over --max-body-mb is refused by the websocket layer (close code 1009); the server keeps serving."""
    with websockets.sync.client.connect(compat_server.ws_url, open_timeout=30, max_size=None) as ws:
        ws.recv(timeout=30)  # metadata
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.send(b"\x00" * (3 * 2**20))
            ws.recv(timeout=30)
    # The server closes with 1009 while the client may still be writing; the TCP teardown can then lose the close
    # frame (rcvd None). When it arrives it must say 1009.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    with websockets.sync.client.connect(compat_server.ws_url, open_timeout=30, max_size=None) as ws:
        assert isinstance(ws.recv(timeout=30), bytes)  # a new connection gets the metadata
    assert compat_server.process.poll() is None
