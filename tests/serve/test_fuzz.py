"""Hostile input through the live server: every malformed request gets a 4xx with a message, never a 500 or a
crash (the server fixture also fails if the server logged a traceback)."""

from __future__ import annotations

import base64
import json
import math

import msgpack
import numpy as np
import pytest
import requests
import websockets.sync.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
VALID_IMAGE = np.full((8, 8, 3), 127, np.uint8)


def _encode(array: np.ndarray) -> dict:
    return {"__numpy__": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str, "shape": list(array.shape)}


def _valid() -> dict:
    return {"image": _encode(VALID_IMAGE), "instruction": "pick up the red block", "unnorm_key": "workcell"}


def _post(server, body: bytes | str, path: str = "/act") -> requests.Response:
    return requests.post(server.url + path, data=body, headers={**server.auth, "Content-Type": "application/json"}, timeout=60)


def _assert_client_error(response: requests.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body["error"], str) and body["error"] and body["status"] == response.status_code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
dtypes = st.sampled_from(["|u1", "<f4", "<f8", ">f8", "|O", "<U3", "|V8", "(2,)f4", "<c8", "<M8[s]", "|b1", "x", ""])
shapes = st.lists(st.integers(min_value=-2, max_value=70000), max_size=5)
fake_arrays = st.fixed_dictionaries({"__numpy__": st.text(max_size=40) | st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
                                     "dtype": dtypes | json_values, "shape": shapes | json_values})


@FUZZ
@given(body=json_values)
def test_arbitrary_json_bodies(server, body):
    response = _post(server, json.dumps(body))
    _assert_client_error(response)  # no JSON value without both image and instruction is a valid request


@FUZZ
@given(field=st.sampled_from(["image", "instruction", "unnorm_key", "proprio", "images", "robot", "deadline_ms", "encoded"]),
       value=json_values | fake_arrays)
def test_one_corrupted_field(server, field, value):
    payload = _valid()
    payload[field] = value
    response = _post(server, json.dumps(payload), path="/v1/act")
    if response.status_code == 200:  # e.g. a new but valid instruction; the answer must still be a valid action
        assert field in ("instruction", "robot", "deadline_ms") and len(response.json()["action"]) == 7
    else:
        _assert_client_error(response)


@FUZZ
@given(field=st.sampled_from(["observation/image", "observation/wrist_image", "observation/state", "prompt", "images", "state",
                              "observation/joint_position", "observation/gripper_position"]),
       value=json_values | fake_arrays)
def test_one_corrupted_openpi_field(server, field, value):
    payload = {"observation/image": _encode(VALID_IMAGE), "prompt": "pick up the red block", "unnorm_key": "workcell",
               "observation/state": _encode(np.zeros(8))}
    payload[field] = value
    response = _post(server, json.dumps(payload), path="/v1/act")
    if response.status_code == 200:  # a valid prompt, or a camera the model does not read (dropped)
        assert field in ("prompt", "observation/wrist_image", "images", "observation/state") and len(response.json()["action"]) == 7
    else:
        _assert_client_error(response)


@FUZZ
@given(array=fake_arrays)
def test_hostile_json_numpy_images(server, array):
    payload = _valid()
    payload["image"] = array
    _assert_client_error(_post(server, json.dumps(payload)))


@FUZZ
@given(body=st.binary(max_size=200))
def test_raw_bytes(server, body):
    _assert_client_error(_post(server, body))


@pytest.mark.parametrize("case", ["float image", "2-D image", "4 channels", "huge declared shape", "huge body",
                                  "bad base64", "nan proprio", "nan literal", "missing instruction", "missing image",
                                  "encoded with extra keys", "encoded not json", "empty body", "unknown unnorm_key",
                                  "unknown robot", "deep nesting", "int overflow"])
def test_named_bad_payloads(server, case):
    payload = _valid()
    body = None
    if case == "float image":
        payload["image"] = _encode(VALID_IMAGE.astype(np.float32))
    elif case == "2-D image":
        payload["image"] = _encode(VALID_IMAGE[:, :, 0])
    elif case == "4 channels":
        payload["image"] = _encode(np.zeros((8, 8, 4), np.uint8))
    elif case == "huge declared shape":
        payload["image"] = {"__numpy__": "AAAA", "dtype": "|u1", "shape": [60000, 60000, 3]}
    elif case == "huge body":
        payload["image"] = _encode(np.zeros((1024, 1024, 3), np.uint8))  # 3 MiB raw, 4 MiB base64 > the 2 MiB limit
    elif case == "bad base64":
        payload["image"]["__numpy__"] = "@@" + payload["image"]["__numpy__"][2:]
    elif case == "nan proprio":
        payload["proprio"] = [0.1, math.nan, 0.2]
    elif case == "nan literal":
        body = json.dumps(payload)[:-1] + ', "deadline_ms": NaN}'
    elif case == "missing instruction":
        del payload["instruction"]
    elif case == "missing image":
        del payload["image"]
    elif case == "encoded with extra keys":
        payload = {"encoded": json.dumps(payload), "image": 1}
    elif case == "encoded not json":
        payload = {"encoded": "{not json"}
    elif case == "empty body":
        body = ""
    elif case == "unknown unnorm_key":
        payload["unnorm_key"] = "bridge"
    elif case == "unknown robot":
        payload["robot"] = "ur3"
    elif case == "deep nesting":
        body = "[" * 50000 + "]" * 50000
    elif case == "int overflow":
        body = json.dumps(payload)[:-1] + ', "deadline_ms": ' + "9" * 400 + "}"
    response = _post(server, body if body is not None else json.dumps(payload))
    _assert_client_error(response)
    expected = {"huge declared shape": 413, "huge body": 413, "bad base64": 400, "empty body": 400, "float image": 422}
    assert response.status_code == expected.get(case, response.status_code)


def test_websocket_garbage_frames_get_error_frames(server):
    with websockets.sync.client.connect(server.ws_url, additional_headers=server.auth, open_timeout=30, max_size=None) as ws:
        ws.recv(timeout=30)  # metadata
        for frame in (b"\xc1", b"", msgpack.packb([1, 2]), msgpack.packb({"image": 1, "instruction": "go"}), "text frame",
                      msgpack.packb({b"__ndarray__": True, b"data": b"ab", b"dtype": "|O", b"shape": [2]})):
            ws.send(frame)
            reply = ws.recv(timeout=30)
            assert isinstance(reply, str)
            error = json.loads(reply)
            assert 400 <= error["status"] < 500 and error["error"]
        ok = {"image": {b"__ndarray__": True, b"data": VALID_IMAGE.tobytes(), b"dtype": "|u1", b"shape": [8, 8, 3]},
              "instruction": "go", "unnorm_key": "workcell"}
        ws.send(msgpack.packb(ok))
        assert isinstance(ws.recv(timeout=60), bytes)  # still serving on the same connection


def test_server_survived(server):
    assert server.process.poll() is None
    response = _post(server, json.dumps(_valid()))
    assert response.status_code == 200 and response.json()["shape"] == [7]
