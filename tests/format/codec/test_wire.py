"""Varints and fixed fields: one byte string per value, and a reader that cannot overrun."""

import pytest

from torch_sinr import SINRFormatError
from torch_sinr.format.codec.wire import ByteReader, ByteWriter


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32 - 1, 2**63 - 1])
def test_varint_round_trip(value):
    w = ByteWriter()
    w.varint(value)
    r = ByteReader(w.getvalue())
    assert r.varint() == value
    r.expect_end()


def test_reader_refuses_overrun_non_minimal_overlong_and_out_of_range():
    with pytest.raises(SINRFormatError, match="truncated"):
        ByteReader(b"\x80").varint()
    with pytest.raises(SINRFormatError, match="minimally"):
        ByteReader(b"\x81\x00").varint()
    with pytest.raises(SINRFormatError, match="overlong"):
        ByteReader(b"\xff" * 11).varint()
    with pytest.raises(SINRFormatError, match="outside"):
        ByteReader(b"\x05").varint(0, 4, "s")
    with pytest.raises(SINRFormatError, match="truncated"):
        ByteReader(b"\x00\x00").u32()
    with pytest.raises(SINRFormatError, match="trailing"):
        ByteReader(b"\x00\x00").expect_end()


def test_f32_only_writes_exact_values():
    w = ByteWriter()
    w.f32(0.5)
    assert ByteReader(w.getvalue()).f32() == 0.5
    with pytest.raises(ValueError):
        w.f32(0.1)  # not a float32 value: the writer never rounds silently
