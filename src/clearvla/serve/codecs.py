"""Wire formats for numpy arrays, with decoders that treat every byte as hostile.

- json_numpy (OpenVLA's `deploy.py`): an array is `{"__numpy__": base64(C-order bytes), "dtype": "<f8",
  "shape": [7]}`; `dtype` is numpy's descr string (`dtype_to_descr`), shape `[]` means a scalar.
- msgpack-numpy (openpi's `openpi_client.msgpack_numpy`): an array is the map `{b"__ndarray__": True,
  b"data": raw bytes, b"dtype": "<f4", b"shape": [..]}`, a numpy scalar `{b"__npgeneric__": True, b"data":
  value, b"dtype": ".."}`.

The encoders produce exactly those bytes. The decoders are written here rather than taken from the `json-numpy`
or `msgpack-numpy` packages because those trust the sender: any dtype descr (objects, structured records),
no bound on sizes, and a zoo of exception types on bad input. Ours accept only numeric dtypes, check that the
shape and the byte count agree before allocating anything, and raise `RequestError` (a 4xx) for everything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np

from clearvla.serve.errors import RequestError

NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, records, strings, datetimes or complex
MAX_NDIM = 4
MAX_DTYPE_CHARS = 8


# --- json_numpy -----------------------------------------------------------------------------------------
def json_numpy_encode(array: np.ndarray | np.generic) -> dict[str, Any]:
    """An array -> json_numpy's dict (the same bytes `json_numpy.dumps` writes for it)."""
    array = np.asarray(array)
    data = array.data if array.flags["C_CONTIGUOUS"] else array.tobytes()
    return {"__numpy__": base64.b64encode(data).decode(), "dtype": np.lib.format.dtype_to_descr(array.dtype),
            "shape": list(array.shape)}


def json_numpy_dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` with arrays json_numpy-encoded (what `json_numpy.dumps` does; default separators)."""
    return json.dumps(obj, default=_json_default, **kwargs)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        return json_numpy_encode(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def is_json_numpy(value: Any) -> bool:
    return isinstance(value, dict) and "__numpy__" in value


def json_numpy_decode(obj: Any, field: str, max_bytes: int) -> np.ndarray:
    """json_numpy's dict -> a native-byte-order numpy array (0-d for shape []); RequestError when malformed."""
    if not is_json_numpy(obj):
        raise RequestError(f"{field} must be a json_numpy array {{'__numpy__': base64, 'dtype': ..., 'shape': [...]}}, "
                           f"got {describe(obj)}", field=field)
    extra = sorted(set(obj) - {"__numpy__", "dtype", "shape"})
    if extra:
        raise RequestError(f"{field}: unexpected json_numpy keys {extra}", status=400, field=field)
    data = obj["__numpy__"]
    if not isinstance(data, str):
        raise RequestError(f"{field}: '__numpy__' must be a base64 string, got {describe(data)}", status=400, field=field)
    dtype = parse_dtype(obj.get("dtype"), field)
    shape = parse_shape(obj.get("shape"), field)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes or len(data) > 4 * (max_bytes // 3 + 1):
        raise RequestError(f"{field} is too large: {nbytes:,} bytes (limit {max_bytes:,})", status=413, field=field)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"{field}: bad base64 in '__numpy__' ({e})", status=400, field=field) from None
    return _from_bytes(raw, dtype, shape, field)


def decode_array(value: Any, field: str, max_bytes: int) -> np.ndarray:
    """A request value -> numpy array: a msgpack frame's already-decoded array, or a json_numpy dict (REST)."""
    if isinstance(value, np.ndarray):  # msgpack frames arrive decoded
        return value
    if is_json_numpy(value):
        return json_numpy_decode(value, field, max_bytes)
    raise RequestError(f"{field} must be a numpy array (json_numpy over REST, msgpack-numpy over the websocket), "
                       f"got {describe(value)}", field=field)


# --- msgpack-numpy (openpi) -----------------------------------------------------------------------------
def msgpack_pack(obj: Any) -> bytes:
    """An object holding numpy arrays -> msgpack bytes in openpi's format."""
    import msgpack

    return msgpack.packb(obj, default=_msgpack_default)


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"cannot send arrays of dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"Object of type {type(obj).__name__} cannot be packed")


def msgpack_unpack(data: bytes, max_bytes: int) -> Any:
    """msgpack bytes (openpi's format) -> Python objects with numpy arrays; RequestError when malformed."""
    import msgpack

    if len(data) > max_bytes:
        raise RequestError(f"message is {len(data):,} bytes (limit {max_bytes:,})", status=413)
    try:
        return msgpack.unpackb(data, object_hook=_msgpack_hook, raw=False)
    except RequestError:
        raise
    except Exception as e:  # msgpack raises ExtraData, FormatError, StackError, ValueError, TypeError, ...
        raise RequestError(f"message is not valid msgpack ({type(e).__name__}: {e})", status=400) from None


def _msgpack_hook(obj: dict) -> Any:
    def get(key: str) -> Any:
        return obj[key.encode()] if key.encode() in obj else obj.get(key)

    if get("__ndarray__") is not None:
        data = get("data")
        if not isinstance(data, bytes):
            raise RequestError(f"msgpack array: 'data' must be binary, got {describe(data)}", status=400)
        dtype = parse_dtype(get("dtype"), "msgpack array")
        shape = parse_shape(get("shape"), "msgpack array")
        return _from_bytes(data, dtype, shape, "msgpack array")
    if get("__npgeneric__") is not None:
        dtype = parse_dtype(get("dtype"), "msgpack scalar")
        value = get("data")
        if not isinstance(value, (int, float)):
            raise RequestError(f"msgpack scalar: 'data' must be a number, got {describe(value)}", status=400)
        try:
            return np.asarray(value).astype(dtype.newbyteorder("="))[()]
        except (OverflowError, ValueError, TypeError) as e:
            raise RequestError(f"msgpack scalar: {value!r} does not fit {dtype} ({e})", status=400) from None
    return obj


# --- shared validation ----------------------------------------------------------------------------------
def parse_dtype(descr: Any, field: str) -> np.dtype:
    """A dtype descr string ('<f8', '|u1', ...) of a numeric type, or RequestError."""
    if not isinstance(descr, str) or not 0 < len(descr) <= MAX_DTYPE_CHARS:
        raise RequestError(f"{field}: 'dtype' must be a numpy dtype string like '|u1' or '<f8', got {describe(descr)}",
                           status=400, field=field)
    try:
        dtype = np.dtype(descr)
    except Exception:  # numpy raises TypeError, ValueError, SyntaxError... for junk strings
        raise RequestError(f"{field}: unknown dtype {descr!r}", status=400, field=field) from None
    if dtype.kind not in NUMERIC_KINDS or dtype.shape or dtype.names is not None:
        raise RequestError(f"{field}: dtype {descr!r} is not allowed (numeric dtypes only)", status=400, field=field)
    return dtype


def parse_shape(shape: Any, field: str) -> tuple[int, ...]:
    """A shape list of at most MAX_NDIM non-negative ints, or RequestError."""
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape
    ):
        raise RequestError(f"{field}: 'shape' must be a list of at most {MAX_NDIM} non-negative ints, got {describe(shape)}",
                           status=400, field=field)
    return tuple(shape)


def _from_bytes(raw: bytes, dtype: np.dtype, shape: tuple[int, ...], field: str) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise RequestError(f"{field}: {len(raw):,} bytes of data do not match shape {list(shape)} of {dtype} "
                           f"({expected:,} bytes)", status=400, field=field)
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def describe(value: Any) -> str:
    """A short description of a value for error messages (never the whole of a huge value)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {list(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        text = repr(value)
    except ValueError:  # e.g. an int past Python's digit limit
        text = "<unprintable>"
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
