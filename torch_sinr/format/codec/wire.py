"""Bytes on the wire: LEB128 varints, fixed-width little-endian fields, and a bounded reader.

The format-v2 record is written with ``ByteWriter`` and parsed with ``ByteReader``, which never
reads past its buffer and turns every overrun or out-of-range value into ``SINRFormatError``:
the record of a hostile file cannot make the reader loop, recurse or allocate beyond its own size.
"""

from __future__ import annotations

import struct

from ...errors import SINRFormatError

# A varint longer than this cannot be a value we accept (2**63 needs 9 bytes of 7 bits).
_MAX_VARINT_BYTES = 10


class ByteWriter:
    def __init__(self) -> None:
        self._parts = bytearray()

    def u8(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"u8 out of range: {value}")
        self._parts.append(value)

    def u32(self, value: int) -> None:
        self._parts += struct.pack("<I", value)

    def f32(self, value: float) -> None:
        packed = struct.pack("<f", value)
        if struct.unpack("<f", packed)[0] != value:  # the writer stores float32-exact values only
            raise ValueError(f"{value!r} is not exactly representable as float32")
        self._parts += packed

    def varint(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"varints are unsigned, got {value}")
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                self._parts.append(byte | 0x80)
            else:
                self._parts.append(byte)
                return

    def raw(self, data: bytes) -> None:
        self._parts += data

    def getvalue(self) -> bytes:
        return bytes(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


class ByteReader:
    """Reads fields from ``data``; ``what`` names the data in error messages."""

    def __init__(self, data: bytes, what: str = "record") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.what = what

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise SINRFormatError(f"{self.what}: truncated (needs {n} more bytes, {self.remaining} left)")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self._take(4))[0]

    def f32(self) -> float:
        return struct.unpack("<f", self._take(4))[0]

    def varint(self, lo: int = 0, hi: int = (1 << 63) - 1, field: str = "value") -> int:
        value, shift = 0, 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and i > 0:  # only the shortest encoding is valid: one meaning, one byte string
                    raise SINRFormatError(f"{self.what}: {field} is not minimally encoded")
                if not lo <= value <= hi:
                    raise SINRFormatError(f"{self.what}: {field}={value} is outside [{lo}, {hi}]")
                return value
        raise SINRFormatError(f"{self.what}: {field} is an overlong varint")

    def raw(self, n: int) -> bytes:
        return bytes(self._take(n))

    def expect_end(self) -> None:
        if self.remaining:
            raise SINRFormatError(f"{self.what}: {self.remaining} unexpected trailing bytes")
