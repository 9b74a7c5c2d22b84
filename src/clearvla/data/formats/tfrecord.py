"""TFRecord framing and `tf.train.Example` parsing without TensorFlow.

A TFRecord file is a sequence of records, each framed as
`uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)` (little endian).
The Example message is declared here from its public schema (tensorflow/core/example/{example,feature}.proto) in a
private descriptor pool, so protobuf's fast C parser is used and nothing else named `tensorflow.Example` clashes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping, Sequence

import crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from clearvla.errors import DataError

_HEADER = 12  # uint64 length + uint32 crc of the length
_FOOTER = 4  # uint32 crc of the data
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32-C of `data`."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class RecordSpan:
    """Where record `index` of `path` lies: payload at [offset, offset + length). `error` is set for a record
    whose framing is broken (then reading it raises DataError with that text)."""

    path: Path
    index: int
    offset: int
    length: int
    error: str | None = None


def index_records(path: str | Path) -> list[RecordSpan]:
    """Scan the framing of one TFRecord file (headers only; payloads are skipped, not read).

    A truncated tail or a corrupt length header ends the scan with one span carrying the error, so a reader can
    report "file X, record N" when it reaches that record, and every earlier record stays readable.
    """
    path = Path(path)
    spans: list[RecordSpan] = []
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            offset = 0
            while offset < size:
                index = len(spans)
                header = f.read(_HEADER)
                if len(header) < _HEADER:
                    spans.append(RecordSpan(path, index, offset, 0, f"truncated record header at byte {offset}"))
                    break
                (length,) = struct.unpack("<Q", header[:8])
                (crc,) = struct.unpack("<I", header[8:])
                if crc != masked_crc(header[:8]):
                    spans.append(RecordSpan(path, index, offset, 0, f"corrupt record length (CRC mismatch) at byte {offset}"))
                    break
                end = offset + _HEADER + length + _FOOTER
                if end > size:
                    message = f"truncated record: needs {end} bytes, file has {size}"
                    spans.append(RecordSpan(path, index, offset + _HEADER, length, message))
                    break
                spans.append(RecordSpan(path, index, offset + _HEADER, length))
                offset = end
                f.seek(offset)
    except OSError as e:
        raise DataError(f"{path}: cannot read TFRecord file ({e.strerror or e})") from None
    return spans


def read_record(span: RecordSpan, f: BinaryIO | None = None) -> bytes:
    """The payload of one record, CRC-checked. Raises DataError naming the file and record index."""
    where = f"{span.path}: record {span.index}"
    if span.error:
        raise DataError(f"{where}: {span.error}")
    try:
        if f is None:
            with open(span.path, "rb") as own:
                return read_record(span, own)
        f.seek(span.offset)
        data = f.read(span.length + _FOOTER)
    except OSError as e:
        raise DataError(f"{where}: cannot read ({e.strerror or e})") from None
    if len(data) < span.length + _FOOTER:
        raise DataError(f"{where}: truncated record")
    payload = data[: span.length]
    (crc,) = struct.unpack("<I", data[span.length :])
    if crc != masked_crc(payload):
        raise DataError(f"{where}: corrupt record (data CRC mismatch)")
    return payload


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Every record payload of a file, in order (raises DataError at the first broken one)."""
    spans = index_records(path)
    with open(path, "rb") as f:
        for span in spans:
            yield read_record(span, f)


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> int:
    """Write records with TFRecord framing; returns how many were written."""
    n = 0
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))
            n += 1
    return n


# --- tf.train.Example --------------------------------------------------------------------------------------------


def _example_classes() -> tuple[type, type]:
    proto = descriptor_pb2.FileDescriptorProto(name="clearvla/tf_example.proto", package="tensorflow", syntax="proto3")
    label = descriptor_pb2.FieldDescriptorProto

    def message(name: str, fields: Sequence[tuple[str, int, int, int, str | None]], oneof: str | None = None):
        msg = proto.message_type.add(name=name)
        if oneof:
            msg.oneof_decl.add(name=oneof)
        for field_name, number, kind, lab, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=lab)
            if type_name:
                field.type_name = type_name
            if oneof:
                field.oneof_index = 0
        return msg

    rep, opt = label.LABEL_REPEATED, label.LABEL_OPTIONAL
    message("BytesList", [("value", 1, label.TYPE_BYTES, rep, None)])
    message("FloatList", [("value", 1, label.TYPE_FLOAT, rep, None)])
    message("Int64List", [("value", 1, label.TYPE_INT64, rep, None)])
    message(
        "Feature",
        [
            ("bytes_list", 1, label.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
            ("float_list", 2, label.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
            ("int64_list", 3, label.TYPE_MESSAGE, opt, ".tensorflow.Int64List"),
        ],
        oneof="kind",
    )
    features = message("Features", [("feature", 1, label.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=label.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=label.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature")
    message("Example", [("features", 1, label.TYPE_MESSAGE, opt, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("tensorflow.Example")), get(pool.FindMessageTypeByName("tensorflow.Feature"))


Example, Feature = _example_classes()

FeatureValue = np.ndarray | list[bytes]


def parse_example(data: bytes, where: str = "record") -> dict[str, FeatureValue]:
    """Serialized tf.train.Example -> {key: float32 [N] | int64 [N] array, or list of N bytes}."""
    try:
        example = Example.FromString(data)
    except Exception as e:  # protobuf raises DecodeError (and RuntimeError from upb) for garbage
        raise DataError(f"{where}: not a tf.train.Example ({type(e).__name__})") from None
    out: dict[str, FeatureValue] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[key] = list(feature.bytes_list.value)
        elif kind == "float_list":
            out[key] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feature.int64_list.value, dtype=np.int64)
        else:
            out[key] = np.zeros(0, dtype=np.float32)
    return out


def encode_example(features: Mapping[str, FeatureValue | Sequence[float] | Sequence[int]]) -> bytes:
    """{key: bytes list | float array | int/bool array} -> serialized tf.train.Example (TFDS's encoding)."""
    example = Example()
    for key, value in features.items():
        feature = example.features.feature[key]
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, bytearray)):
            feature.bytes_list.value.extend(value)
            continue
        array = np.asarray(value).reshape(-1)
        if array.dtype.kind in "biu":
            feature.int64_list.value.extend(array.astype(np.int64).tolist())
        elif array.dtype.kind == "f":
            feature.float_list.value.extend(array.astype(np.float32).tolist())
        elif array.dtype.kind in "SUO":
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else bytes(v) for v in array.tolist())
        else:
            raise DataError(f"cannot encode feature {key!r} of dtype {array.dtype} in a tf.train.Example")
    return example.SerializeToString()
