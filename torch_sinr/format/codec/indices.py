"""Coding of the support indices: each row's s sorted, distinct indices in [0, k2).

Three codings; the encoder keeps whichever is smallest for the tensor:
- ``fixed``: ceil(log2 k2) bits per index (the paper's "16-bit indices", tightened).
- ``rice``: sorted gaps coded Golomb-Rice with one parameter per tensor; near the
  log2 C(k2, s) entropy of a random support. Quotients (unary) and remainders (k bits) are kept
  in two separate bit streams so both directions vectorize.
- ``bitmask``: k2 bits per row; wins when s/k2 is large.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import SINRFormatError
from .bitpack import check_padding, pack_uint, packed_size, unpack_cost, unpack_uint

CODINGS = ("fixed", "rice", "bitmask")


def index_width(k2: int) -> int:
    return max(1, math.ceil(math.log2(k2))) if k2 > 1 else 1


def _gaps(indices: np.ndarray) -> np.ndarray:
    gaps = np.diff(indices, axis=1, prepend=-1) - 1
    return gaps.ravel()


def _rice_cost(gaps: np.ndarray, k: int) -> int:
    return int((gaps >> k).sum()) + gaps.size * (k + 1)


def _encode_rice(gaps: np.ndarray, k: int) -> bytes:
    quotients = gaps >> k
    # unary stream: q ones then a zero per gap
    unary = np.ones(int(quotients.sum()) + gaps.size, dtype=np.uint8)
    ends = np.cumsum(quotients + 1) - 1
    unary[ends] = 0
    unary_bytes = np.packbits(unary).tobytes()
    rem_bytes = pack_uint(gaps & ((1 << k) - 1), k)
    return len(unary_bytes).to_bytes(4, "little") + unary_bytes + rem_bytes


def _decode_rice(data: bytes, k: int, count: int) -> np.ndarray:
    if len(data) < 4:
        raise SINRFormatError("rice index stream too short")
    n_unary = int.from_bytes(data[:4], "little")
    if 4 + n_unary + packed_size(k, count) != len(data):
        raise SINRFormatError("rice index stream has the wrong length")
    unary = np.unpackbits(np.frombuffer(data[4 : 4 + n_unary], dtype=np.uint8))
    ends = np.flatnonzero(unary == 0)
    if ends.size < count:
        raise SINRFormatError("rice index stream holds fewer codes than declared")
    ends = ends[:count]
    # canonical bytes: after the last code only the zero padding of its byte (the writer's)
    used = int(ends[-1]) + 1 if count else 0
    if unary.size - used >= 8 or unary[used:].any():
        raise SINRFormatError("rice index stream has data after its last code")
    quotients = np.diff(ends, prepend=-1) - 1
    remainders = unpack_uint(data[4 + n_unary :], k, count, "rice index stream")
    return (quotients.astype(np.int64) << k) + remainders


def encode_indices(indices: np.ndarray, k2: int, coding: str = "auto") -> tuple[str, int, bytes]:
    """Code a (rows, s) array of sorted distinct indices. Returns (coding, parameter, bytes)."""
    rows, s = indices.shape
    options: list[tuple[int, str, int]] = []
    if coding in ("auto", "fixed"):
        options.append((packed_size(index_width(k2), rows * s), "fixed", index_width(k2)))
    if coding in ("auto", "rice") and indices.size:
        gaps = _gaps(indices)
        k = min(range(0, 31), key=lambda kk: _rice_cost(gaps, kk))
        options.append(((_rice_cost(gaps, k) + 7) // 8 + 4, "rice", k))
    if coding in ("auto", "bitmask"):
        options.append((packed_size(k2, rows), "bitmask", 0))
    if not options:
        raise ValueError(f"unknown index coding {coding!r}; choose from {CODINGS} or 'auto'")
    _, name, param = min(options)
    if name == "fixed":
        return name, param, pack_uint(indices, param)
    if name == "rice":
        return name, param, _encode_rice(_gaps(indices), param)
    mask = np.zeros((rows, k2), dtype=np.uint8)
    np.put_along_axis(mask, indices, 1, axis=1)
    return name, 0, np.packbits(mask.ravel()).tobytes()


def decoded_index_size(coding: str, param: int, rows: int, s: int, k2: int) -> int | None:
    """Exact byte size of a stream, where it is known in advance (None for rice)."""
    if coding == "fixed":
        return packed_size(param, rows * s)
    if coding == "bitmask":
        return packed_size(k2, rows)
    return None


def decode_cost(coding: str, param: int, raw_size: int, rows: int, s: int, k2: int) -> int:
    """Bytes ``decode_indices`` allocates at most for a stream of ``raw_size`` decompressed bytes,
    expansions included: a Rice stream's unary part costs a byte per bit and an int64 per zero
    bit (72 bytes per stored byte), a bit mask a byte per bit. Checked against the decode budget
    before anything is decoded."""
    count = rows * s
    checks = count * 8 * 3  # int64 result, row differences, comparison
    if coding == "fixed":
        return unpack_cost(max(0, param), count) + checks
    if coding == "rice":
        # unary bits (uint8), their zero positions (int64), quotients, remainders, gaps, cumsum
        return raw_size * 72 + unpack_cost(max(0, param), count) + count * 8 * 4 + checks
    # bit mask: a byte per bit, the per-row sums, np.nonzero's two int64 arrays
    return rows * k2 + rows * 8 + count * 16 + checks


def decode_indices(coding: str, param: int, data: bytes, rows: int, s: int, k2: int) -> np.ndarray:
    """Decode and validate: every row must hold s strictly increasing indices < k2."""
    if coding == "fixed":
        if param != index_width(k2) or len(data) != packed_size(param, rows * s):
            raise SINRFormatError("fixed index stream has the wrong width or length")
        indices = unpack_uint(data, param, rows * s, "fixed index stream").reshape(rows, s)
    elif coding == "rice":
        if not 0 <= param <= 30:
            raise SINRFormatError(f"rice parameter {param} out of range")
        gaps = _decode_rice(data, param, rows * s).reshape(rows, s)
        indices = np.cumsum(gaps + 1, axis=1) - 1
    elif coding == "bitmask":
        if len(data) != packed_size(k2, rows):
            raise SINRFormatError("bitmask index stream has the wrong length")
        check_padding(data, rows * k2, "bitmask index stream")
        mask = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=rows * k2).reshape(rows, k2)
        if not (mask.sum(1) == s).all():
            raise SINRFormatError(f"bitmask rows must each hold {s} indices")
        indices = np.nonzero(mask)[1].reshape(rows, s)
    else:
        raise SINRFormatError(f"unknown index coding {coding!r}")
    if indices.size:
        if indices.min() < 0 or indices.max() >= k2:
            raise SINRFormatError(f"index out of range: dictionary has k2={k2} atoms")
        if s > 1 and not (np.diff(indices, axis=1) > 0).all():
            raise SINRFormatError("indices within a row must be strictly increasing")
    return indices.astype(np.int64)
