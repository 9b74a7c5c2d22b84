"""TFRecord framing and tf.train.Example parsing, checked against the independent `tfrecord` package."""

from __future__ import annotations

import numpy as np
import pytest
from tfrecord import TFRecordWriter, example_pb2
from tfrecord.reader import tfrecord_iterator

from clearvla.data.formats.tfrecord import (
    encode_example,
    index_records,
    iter_records,
    parse_example,
    read_record,
    write_tfrecord,
)
from clearvla.errors import DataError


def _write_reference(path, n=3):
    writer = TFRecordWriter(str(path))
    for i in range(n):
        writer.write({
            "steps/action": (np.arange(14, dtype=np.float32) + i, "float"),
            "steps/is_first": ([1, 0], "int"),
            "steps/observation/image": ([b"jpeg-0", b"jpeg-1"], "byte"),
        })
    writer.close()


def test_reads_what_the_tfrecord_package_writes(tmp_path):
    path = tmp_path / "ref.tfrecord"
    _write_reference(path)
    records = list(iter_records(path))
    assert len(records) == 3
    example = parse_example(records[2])
    np.testing.assert_array_equal(example["steps/action"], np.arange(14, dtype=np.float32) + 2)
    np.testing.assert_array_equal(example["steps/is_first"], [1, 0])
    assert example["steps/observation/image"] == [b"jpeg-0", b"jpeg-1"]


def test_the_tfrecord_package_reads_what_we_write(tmp_path):
    path = tmp_path / "ours.tfrecord"
    payload = encode_example({"a": np.array([1.5, 2.5], np.float32), "b": np.array([True, False]), "c": [b"x", b"yz"]})
    write_tfrecord(path, [payload, payload])
    raw = list(tfrecord_iterator(str(path)))
    assert len(raw) == 2
    example = example_pb2.Example.FromString(bytes(raw[0]))
    assert list(example.features.feature["a"].float_list.value) == [1.5, 2.5]
    assert list(example.features.feature["b"].int64_list.value) == [1, 0]
    assert list(example.features.feature["c"].bytes_list.value) == [b"x", b"yz"]


def test_truncated_file_names_file_and_record(tmp_path):
    path = tmp_path / "cut.tfrecord"
    _write_reference(path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    spans = index_records(path)
    assert len(spans) == 3 and spans[2].error
    read_record(spans[1])  # earlier records stay readable
    with pytest.raises(DataError, match=r"cut\.tfrecord: record 2: truncated"):
        read_record(spans[2])


def test_flipped_byte_fails_the_crc(tmp_path):
    path = tmp_path / "flip.tfrecord"
    _write_reference(path, n=2)
    data = bytearray(path.read_bytes())
    spans = index_records(path)
    data[spans[1].offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"flip\.tfrecord: record 1: corrupt record \(data CRC mismatch\)"):
        read_record(index_records(path)[1])


def test_garbage_payload_is_not_an_example():
    with pytest.raises(DataError, match="shard-7: not a tf.train.Example"):
        parse_example(b"\xff\xff\xff\xff", where="shard-7")
