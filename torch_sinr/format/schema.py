"""Format v2, layer 1: the one schema. What a file says, field by field, and how each is checked.

A file is a valid safetensors file holding exactly one 1-D uint8 tensor named ``sinr`` (the
payload) and, only when the user gives some, str -> str metadata that the decoder never reads.
The payload is::

    u8      version (2)
    u8      flags: bit 0 = names stored (self-describing file); other bits must be 0
    record  (self-delimiting: every length is in it)
    bytes   the segments, in the order the record lists them
    bytes   the range-coded segment: every byte up to the CRC
    u32     CRC-32 (zlib) of every payload byte before it

The record (varints are unsigned LEB128, minimally encoded; floats are little-endian float32)::

    varint  number of entries
    u8      writer settings (so load -> save gives the same bytes): index policy (bits 0-1),
            symbol policy (bits 2-3), Brotli quality 0..11 (bits 4-7)
    names   with flag bit 0: per entry, varint shared-prefix length with the previous name,
            varint suffix length, suffix bytes (UTF-8); per entry u8 dtype, varint ndim, dims.
            Without it ("bare" files): u32 fingerprint of the skeleton's names, dtypes and
            shapes, which the decoder must be given.
    entries per entry: u8 kind, then the kind's parameters (``kinds``)

An entry is one tensor of the model's *dense* state_dict (a SINR layer's codes are the entry
``<layer>.weight``), in state_dict order; tied or shared tensors are ``alias`` entries. The
record holds nothing the decoder can derive: shapes give k1 and the number of codes, bits give
stream sizes. Everything is validated before any segment is decompressed, and the sizes the
record implies are checked against a budget (the skeleton's own size when there is one).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import SINRFormatError
from .codec.wire import ByteReader, ByteWriter

VERSION = 2
TENSOR = "sinr"  # the payload tensor's name in the safetensors header
FLAG_NAMES = 1

# dtype ids: part of the format, never renumbered.
DTYPE_IDS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3, torch.int64: 4,
             torch.int32: 5, torch.int16: 6, torch.int8: 7, torch.uint8: 8, torch.bool: 9, torch.uint16: 10,
             torch.uint32: 11, torch.uint64: 12, torch.complex64: 13, torch.complex128: 14}
DTYPES = {v: k for k, v in DTYPE_IDS.items()}
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Writer policies (recorded so load -> save rewrites the same choices).
INDEX_POLICIES = ("auto", "fixed", "rice", "bitmask")
SYMBOL_POLICIES = ("auto", "brotli", "range")

# Structural bounds: nothing a legitimate model needs comes near them.
MAX_ENTRIES = 1 << 20
MAX_NAME_BYTES = 1024
MAX_NDIM = 8
MAX_DIM = 1 << 40
DEFAULT_BUDGET_BYTES = 1 << 30  # decode_state_dict without a skeleton: decoded tensors + atoms
# Parsing is under the budget too. Each entry costs the reader about this much (its Entry, its
# kind's parameters, list slots), whatever its name: ``count * ENTRY_COST`` is checked against
# the budget before the first entry is read.
ENTRY_COST = 1024
# Front coding lets a few bytes stand for a long name (a shared prefix). The names together may
# hold at most this many bytes per byte of the record they take, plus NAME_BYTES_FREE: a file
# cannot make its reader build gigabytes of names from megabytes of record.
NAME_EXPANSION = 16
NAME_BYTES_FREE = 1 << 20
# A named entry takes at least 5 record bytes (prefix, length, dtype, ndim, kind), a bare one 1.
MIN_ENTRY_BYTES = {True: 5, False: 1}


def element_size(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


@dataclass
class Entry:
    """One parsed entry. ``params`` is the kind's parsed parameters; ``segments`` the lengths of
    the byte segments it owns, in order (filled by the parser, sliced by the container)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    kind: str = ""
    params: Any = None
    segment_lengths: list[int] = field(default_factory=list)
    side_bytes: int = 0  # bytes of the kind's parameters in the record

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def where(self) -> str:
        return f"tensor {self.name!r}"


def skeleton_fingerprint(signature: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> int:
    text = "\n".join(f"{name}\t{DTYPE_IDS.get(dtype, 255)}\t{','.join(map(str, shape))}"
                     for name, dtype, shape in signature)
    return zlib.crc32(text.encode("utf-8"))


# ----------------------------------------------------------------------------- names and shapes
def write_signature(out: ByteWriter, signature: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> None:
    previous = b""
    for name, _, _ in signature:
        raw = name.encode("utf-8")
        shared = 0
        for a, b in zip(previous, raw):
            if a != b:
                break
            shared += 1
        out.varint(shared)
        out.varint(len(raw) - shared)
        out.raw(raw[shared:])
        previous = raw
    for _, dtype, shape in signature:
        out.u8(DTYPE_IDS[dtype])
        out.varint(len(shape))
        for d in shape:
            out.varint(d)


def read_signature(reader: ByteReader, count: int, budget: int | None = None) -> list[Entry]:
    """The names, dtypes and shapes of ``count`` entries. The names' total size is bounded by the
    record bytes they take (``NAME_EXPANSION``) and, with them, the entries' by ``budget``."""
    names, previous = [], b""
    start, total = reader.position, 0
    allowed = NAME_BYTES_FREE + NAME_EXPANSION * reader.remaining
    if budget is not None:
        allowed = min(allowed, max(0, budget - count * ENTRY_COST) // 2)  # bytes and str of each name
    for _ in range(count):
        shared = reader.varint(0, len(previous), "name prefix")
        suffix = reader.raw(reader.varint(0, MAX_NAME_BYTES - shared, "name length"))
        total += shared + len(suffix)
        if total > min(allowed, NAME_BYTES_FREE + NAME_EXPANSION * (reader.position - start)):
            raise SINRFormatError(f"record: the tensor names expand to over {total} bytes from "
                                  f"{reader.position - start} bytes of record (front coding bomb or over the budget)")
        # UTF-8 encodes a control character (< 32) as that one byte and nothing else below 32:
        # checking the new bytes is checking the name (the prefix was checked with the last one)
        if suffix and min(suffix) < 32:
            raise SINRFormatError("record: invalid tensor name (control character)")
        raw = previous[:shared] + suffix
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SINRFormatError("record: a tensor name is not valid UTF-8") from None
        if not name:
            raise SINRFormatError("record: an empty tensor name")
        names.append(name)
        previous = raw
    if len(set(names)) != len(names):
        raise SINRFormatError("record: duplicate tensor names")
    entries = []
    for name in names:
        dtype_id = reader.u8()
        if dtype_id not in DTYPES:
            raise SINRFormatError(f"tensor {name!r}: unknown dtype id {dtype_id}")
        ndim = reader.varint(0, MAX_NDIM, "ndim")
        shape = tuple(reader.varint(0, MAX_DIM, "dimension") for _ in range(ndim))
        entries.append(Entry(name, DTYPES[dtype_id], shape))
    return entries


def read_settings(reader: ByteReader) -> tuple[str, str, int]:
    byte = reader.u8()
    index, symbols, quality = byte & 3, (byte >> 2) & 3, byte >> 4
    if symbols >= len(SYMBOL_POLICIES) or quality > 11:
        raise SINRFormatError(f"record: unknown writer settings {byte:#x}")
    return INDEX_POLICIES[index], SYMBOL_POLICIES[symbols], quality


def write_settings(out: ByteWriter, index_policy: str, symbol_policy: str, quality: int) -> None:
    out.u8(INDEX_POLICIES.index(index_policy) | SYMBOL_POLICIES.index(symbol_policy) << 2 | quality << 4)
