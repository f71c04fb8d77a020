"""Fixed-width packing of unsigned integers into bytes (MSB first), vectorized with numpy."""

from __future__ import annotations

import numpy as np


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """Pack non-negative integers < 2**width, ``width`` bits each, MSB first, zero-padded."""
    if width == 0 or values.size == 0:
        return b""
    values = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def unpack_uint(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`. The caller has checked ``len(data)`` (see packed_size)."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * width)
    weights = (np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64))
    return (bits.reshape(count, width).astype(np.uint64) @ weights).astype(np.int64)


def packed_size(width: int, count: int) -> int:
    return (width * count + 7) // 8
