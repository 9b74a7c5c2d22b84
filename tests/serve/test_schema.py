"""Wire formats and request validation, without a server."""

from __future__ import annotations

import json

import json_numpy
import msgpack
import numpy as np
import pytest

from clearvla.serve.codecs import json_numpy_decode, json_numpy_dumps, json_numpy_encode, msgpack_pack, msgpack_unpack
from clearvla.serve.errors import RequestError
from clearvla.serve.responses import openvla_body
from clearvla.serve.schema import ModelSpec, RequestLimits, parse_act, parse_json_body

SPEC = ModelSpec(("image",), 0, {"workcell": 7})
LIMITS = RequestLimits(max_body_bytes=2**20, max_image_side=256)
IMAGE = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


@pytest.mark.parametrize("array", [IMAGE, np.linspace(0, 1, 7), np.float32(2.5), np.arange(6, dtype=">i4").reshape(2, 3),
                                   np.asfortranarray(np.ones((3, 2)))])
def test_json_numpy_matches_the_package_both_ways(array):
    assert json_numpy_dumps({"a": array}) == json_numpy.dumps({"a": array})
    ours = json_numpy_decode(json.loads(json_numpy.dumps(array)), "a", 2**20)
    np.testing.assert_array_equal(ours, json_numpy.loads(json_numpy.dumps(array)))
    assert ours.dtype.isnative


def test_openvla_response_body_is_byte_identical_to_deploy_py(monkeypatch):
    """deploy.py returns JSONResponse(action) with json_numpy.patch() applied (and json_numpy.dumps(action) when
    the request was double-encoded): render those with starlette and compare bytes."""
    from starlette.responses import JSONResponse

    action = np.array([0.01, -0.02, 0.0, 0.1, -0.1, 0.05, 1.0])
    monkeypatch.setattr(json, "dumps", json_numpy.dumps)
    expected_plain = JSONResponse(action).body
    expected_encoded = JSONResponse(json_numpy.dumps(action)).body
    monkeypatch.undo()
    assert openvla_body(action, double_encoded=False) == expected_plain
    assert openvla_body(action, double_encoded=True) == expected_encoded


def test_msgpack_matches_openpis_format():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    packed = msgpack_pack({"x": array, "s": np.int64(3)})
    raw = msgpack.unpackb(packed, raw=False)
    assert raw["x"] == {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": "<f4", b"shape": [3, 4]}
    assert raw["s"] == {b"__npgeneric__": True, b"data": 3, b"dtype": "<i8"}
    back = msgpack_unpack(packed, 2**20)
    np.testing.assert_array_equal(back["x"], array)
    assert back["s"] == 3


@pytest.mark.parametrize("obj, status, words", [
    ({"__numpy__": "!!!", "dtype": "|u1", "shape": [3]}, 400, "bad base64"),
    ({"__numpy__": "AAAA", "dtype": "|O", "shape": [3]}, 400, "not allowed"),
    ({"__numpy__": "AAAA", "dtype": [["a", "<f4"]], "shape": [1]}, 400, "dtype"),
    ({"__numpy__": "AAAA", "dtype": "(2,)f8", "shape": [1]}, 400, "not allowed"),
    ({"__numpy__": "AAAA", "dtype": "<U1", "shape": [1]}, 400, "not allowed"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": [4]}, 400, "do not match"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": [100000, 100000, 3]}, 413, "too large"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": [-1]}, 400, "shape"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": [1, 1, 1, 1, 1]}, 400, "shape"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": "3"}, 400, "shape"),
    ({"__numpy__": 5, "dtype": "|u1", "shape": [3]}, 400, "base64"),
    ({"__numpy__": "AAAA", "dtype": "|u1", "shape": [3], "extra": 1}, 400, "unexpected"),
    ([1, 2, 3], 422, "json_numpy"),
])
def test_json_numpy_decode_rejects_hostile_input(obj, status, words):
    with pytest.raises(RequestError, match=words) as info:
        json_numpy_decode(obj, "image", 2**20)
    assert info.value.status == status


@pytest.mark.parametrize("data", [b"", b"\xc1", msgpack.packb({1: 2}), msgpack.packb([1, 2], use_bin_type=True) + b"x",
                                  msgpack.packb({b"__ndarray__": True, b"data": b"ab", b"dtype": "<f8", b"shape": [1]}),
                                  msgpack.packb({b"__ndarray__": True, b"data": "text", b"dtype": "|u1", b"shape": [4]}),
                                  msgpack.packb({b"__npgeneric__": True, b"data": "x", b"dtype": "<f8"})])
def test_msgpack_unpack_rejects_malformed_frames(data):
    with pytest.raises(RequestError) as info:
        msgpack_unpack(data, 2**20)
    assert info.value.status == 400


def _payload(**overrides):
    payload = {"image": json_numpy_encode(IMAGE), "instruction": "pick up the red block", "unnorm_key": "workcell"}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not ...}


def test_parse_accepts_openvla_payload_and_encoded_form():
    req = parse_act(_payload(), SPEC, LIMITS, received=100.0)
    np.testing.assert_array_equal(req.observation, IMAGE)
    assert (req.instruction, req.unnorm_key, req.proprio, req.deadline) == ("pick up the red block", "workcell", None, None)
    inner, double = parse_json_body(json.dumps({"encoded": json_numpy.dumps({"image": IMAGE, "instruction": "go"})}).encode())
    assert double and parse_act(inner, SPEC, LIMITS, 0.0).unnorm_key == "workcell"  # the only key


@pytest.mark.parametrize("overrides, field, words", [
    ({"image": ...}, "image", "missing field 'image'"),
    ({"instruction": ...}, "instruction", "missing field 'instruction'"),
    ({"instruction": ""}, "instruction", "non-empty"),
    ({"instruction": "x" * 1001}, "instruction", "limit 1000"),
    ({"image": json_numpy_encode(IMAGE.astype(np.float32))}, "image", "uint8"),
    ({"image": json_numpy_encode(IMAGE[:, :, 0])}, "image", r"\[H, W, 3\]"),
    ({"image": json_numpy_encode(np.zeros((0, 4, 3), np.uint8))}, "image", "1..256"),
    ({"image": json_numpy_encode(np.zeros((300, 4, 3), np.uint8))}, "image", "1..256"),
    ({"image": IMAGE.tolist()}, "image", "json_numpy"),
    ({"unnorm_key": "bridge"}, "unnorm_key", "available: workcell"),
    ({"unnorm_key": 3}, "unnorm_key", "string"),
    ({"proprio": [0.1, float("nan"), 0.3]}, "proprio", "NaN"),
    ({"proprio": [0.1, "a"]}, "proprio", "numbers"),
    ({"proprio": [[0.1, 0.2]]}, "proprio", "numbers"),
    ({"proprio": json_numpy_encode(np.ones((2, 2)))}, "proprio", "1-D"),
    ({"proprio": [1.0], "state": [1.0]}, "state", "not both"),
    ({"images": {"wrist": json_numpy_encode(IMAGE)}}, "images", "none"),
    ({"images": {"image": json_numpy_encode(IMAGE)}}, "images", "first camera"),
    ({"robot": 7}, "robot", "string"),
    ({"deadline_ms": float("nan")}, "deadline_ms", "finite"),
    ({"deadline_ms": -5}, "deadline_ms", "finite"),
    ({"deadline_ms": 10**400}, "deadline_ms", "finite"),
    ({"instrucion": "typo"}, "instrucion", "unknown field"),
])
def test_parse_rejects_bad_fields_with_a_clear_message(overrides, field, words):
    with pytest.raises(RequestError, match=words) as info:
        parse_act(_payload(**overrides), SPEC, LIMITS, received=0.0)
    assert info.value.field == field and 400 <= info.value.status < 500


def test_multi_camera_and_proprio_models():
    spec = ModelSpec(("image", "wrist"), 8, {"workcell": 7})
    wrist = IMAGE[::-1].copy()
    req = parse_act(_payload(images={"wrist": json_numpy_encode(wrist)}, state=list(range(8))), spec, LIMITS, 0.0)
    assert set(req.observation) == {"image", "wrist"} and req.model_proprio and req.proprio.shape == (8,)
    np.testing.assert_array_equal(req.ee_position, [0, 1, 2])
    with pytest.raises(RequestError, match=r"missing camera\(s\) \['wrist'\]"):
        parse_act(_payload(proprio=list(range(8))), spec, LIMITS, 0.0)
    with pytest.raises(RequestError, match="reads the robot state"):
        parse_act(_payload(images={"wrist": json_numpy_encode(wrist)}), spec, LIMITS, 0.0)
    with pytest.raises(RequestError, match="reads 8"):
        parse_act(_payload(images={"wrist": json_numpy_encode(wrist)}, proprio=[1.0] * 3), spec, LIMITS, 0.0)


@pytest.mark.parametrize("body, words", [(b"", "not valid JSON"), (b"\xff\xfe\x00", "not valid JSON"), (b"[1]", "JSON object"),
                                         (b"[" * 100000, "not valid JSON"), (b'{"encoded": 5}', "JSON string"),
                                         (b'{"encoded": "{}", "image": 1}', "no other fields"), (b'{"encoded": "[]"}', "JSON object")])
def test_bad_bodies_are_400(body, words):
    with pytest.raises(RequestError, match=words) as info:
        parse_json_body(body)
    assert info.value.status == 400
