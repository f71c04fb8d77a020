"""Fixed-width packing of unsigned integers into bytes (MSB first), vectorized with numpy."""

from __future__ import annotations

import numpy as np

from ...errors import SINRFormatError


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """Pack non-negative integers < 2**width, ``width`` bits each, MSB first, zero-padded."""
    if width == 0 or values.size == 0:
        return b""
    values = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def check_padding(data: bytes, nbits: int, what: str = "packed stream") -> None:
    """Refuse set bits after the first ``nbits`` of ``data`` (whose length the caller has checked
    to be ``ceil(nbits / 8)``): the writer pads with zeros, so padding a reader would ignore is
    not canonical."""
    if nbits % 8 and len(data) and data[len(data) - 1] & ((1 << (8 - nbits % 8)) - 1):
        raise SINRFormatError(f"{what}: padding bits after the last value are not zero")


def unpack_uint(data: bytes, width: int, count: int, what: str = "packed stream") -> np.ndarray:
    """Inverse of :func:`pack_uint`. The caller has checked ``len(data)`` (see packed_size);
    padding bits must be zero (``check_padding``)."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    check_padding(data, width * count, what)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * width)
    weights = (np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64))
    return (bits.reshape(count, width).astype(np.uint64) @ weights).astype(np.int64)


def unpack_cost(width: int, count: int) -> int:
    """Bytes :func:`unpack_uint` allocates: a byte and a uint64 per bit, then two 8-byte results
    per value (9x the bits: decoding budgets must count this expansion, not the packed size)."""
    return count * (9 * width + 16)


def packed_size(width: int, count: int) -> int:
    return (width * count + 7) // 8


# Byte-aligned layout: Brotli models bytes, so b-bit codes packed back to back (b = 5, 6, 7, ...)
# hide their statistics from it; one byte per code (b <= 8), or a plane of high bytes followed by
# a plane of low bytes (8 < b <= 16), often codes smaller (benchmarks/results/value_layout.md).
def byte_planes(values: np.ndarray, width: int) -> bytes:
    """Codes < 2**width (width <= 16) as one byte each, or as high-byte then low-byte planes."""
    if not 0 < width <= 16:
        raise ValueError(f"byte_planes takes widths 1..16, got {width}")
    values = np.ascontiguousarray(values, dtype=np.uint16).ravel()
    if width <= 8:
        return values.astype(np.uint8).tobytes()
    return (values >> 8).astype(np.uint8).tobytes() + (values & 0xFF).astype(np.uint8).tobytes()


def byte_planes_size(width: int, count: int) -> int:
    return count if width <= 8 else 2 * count


def from_byte_planes(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`byte_planes`. The caller has checked ``len(data)`` (see byte_planes_size)."""
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if width <= 8:
        return raw[:count]
    return (raw[:count] << 8) | raw[count : 2 * count]
