"""Coding a stream of quantized symbols (uniform dense tensors, SINR values): whichever of four
codings is smallest for that stream.

- ``packed``: fixed-width bit packing, no entropy coding (incompressible streams);
- ``brotli-packed`` / ``brotli-bytes``: Brotli over bit-packed codes, or over one byte per code
  (two byte planes above 8 bits), the paper's coder with the layout it models best;
- ``range``: the file's shared range coder with a stored histogram model (``codec.rangecoder``).

The coding id, and the segment length or model, are written into the record; ids are part of
the file format and never change meaning.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import brotli
import numpy as np

from ..errors import SINRFormatError
from .codec.bitpack import (byte_planes, byte_planes_size, from_byte_planes, pack_uint, packed_size, unpack_cost,
                            unpack_uint)
from .codec.entropy import brotli_exact
from .codec.rangecoder import CHECK_CHUNK, HistogramModel, RangeDecoder, RangeEncoder, best_model
from .codec.wire import ByteReader, ByteWriter

PACKED, BROTLI_PACKED, BROTLI_BYTES, RANGE = 0, 1, 2, 3
NAMES = {PACKED: "packed", BROTLI_PACKED: "brotli-packed", BROTLI_BYTES: "brotli-bytes", RANGE: "range"}
# Which codings the writer may choose: "auto" (the smallest), or one named coding family.
POLICIES = ("auto", "brotli", "range")


@dataclass
class EncodedSymbols:
    coding: int
    segment: bytes = b""  # for the byte codings
    model: HistogramModel | None = None  # for RANGE
    symbols: np.ndarray | None = None  # for RANGE: fed to the shared range coder when written
    estimated_bytes: float = 0.0  # payload bytes of this stream (range: its information content)


def brotli_compress(data: bytes, quality: int) -> bytes:
    return brotli.compress(data, quality=quality)


def brotli_decompress(data: bytes, expected: int, what: str) -> bytes:
    """Decode a Brotli segment that must expand to exactly ``expected`` bytes, never more."""
    return brotli_exact(data, expected, what)


# Brotli at quality 11 is most of a save's time (~0.2 s per 60 KB stream) and releases the GIL,
# so the writer starts every stream's compression on worker threads before it writes the first
# record (``EncodeContext.start_brotli``); measured 1.85x on 2 cores. The bytes are the same.
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (owner pid, pool): a forked child makes its own


def brotli_async(data: bytes, quality: int) -> Future:
    """``brotli_compress`` on a worker thread; ``.result()`` gives the segment."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        workers = max(2, min(4, os.cpu_count() or 1))
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sinr-brotli"))
    return _POOL[1].submit(brotli_compress, data, quality)


def _as_symbols(symbols: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(symbols, dtype=np.int64).ravel()


def brotli_inputs(symbols: np.ndarray, bits: int, policy: str = "auto") -> list[tuple[int, bytes]]:
    """The (coding, bytes) pairs that ``encode_symbols`` will Brotli-compress for this stream."""
    symbols = _as_symbols(symbols)
    if policy not in ("auto", "brotli") or not symbols.size:
        return []
    inputs = [(BROTLI_PACKED, pack_uint(symbols, bits))]
    # At 8 bits both layouts are one byte per symbol, the same bytes: compress them once (min()
    # below keeps the packed one on a tie, as it always did).
    if bits <= 16 and bits != 8:
        inputs.append((BROTLI_BYTES, byte_planes(symbols, bits)))
    return inputs


def encode_symbols(symbols: np.ndarray, bits: int, quality: int, policy: str = "auto",
                   compress: Callable[[bytes], bytes] | None = None) -> EncodedSymbols:
    """The smallest coding of ``symbols`` (ints in [0, 2**bits)) allowed by ``policy``.
    ``compress`` Brotli-compresses a byte string at ``quality`` (the writer passes one that
    returns the compression it started earlier)."""
    symbols = _as_symbols(symbols)
    packed = pack_uint(symbols, bits)
    options = [EncodedSymbols(PACKED, packed, estimated_bytes=len(packed))]
    for coding, raw in brotli_inputs(symbols, bits, policy):
        segment = compress(raw) if compress is not None else brotli_compress(raw, quality)
        options.append(EncodedSymbols(coding, segment, estimated_bytes=len(segment)))
    if policy in ("auto", "range") and symbols.size:
        model, cost = best_model(symbols)
        # the model's bytes are in the record, so count them with the stream
        options.append(EncodedSymbols(RANGE, model=model, symbols=symbols, estimated_bytes=cost))
    return min(options, key=lambda o: o.estimated_bytes)


def write_params(encoded: EncodedSymbols, out: ByteWriter, segments: list[bytes], ranges: RangeEncoder) -> int | None:
    """Write the coding id and its parameters; queue its data. Returns the range-stream slot."""
    out.u8(encoded.coding)
    if encoded.coding == RANGE:
        encoded.model.write(out)
        return ranges.encode(encoded.symbols, encoded.model)
    out.varint(len(encoded.segment))
    segments.append(encoded.segment)
    return None


@dataclass
class SymbolParams:
    coding: int
    segment: int = -1  # index into the entry's segments
    model: HistogramModel | None = None


def read_params(reader: ByteReader, bits: int, count: int, what: str, segment_lengths: list[int]) -> SymbolParams:
    coding = reader.u8()
    if coding == RANGE:
        if bits > 16:
            raise SINRFormatError(f"{what}: range coding takes symbols of at most 16 bits, not {bits}")
        if count == 0:
            raise SINRFormatError(f"{what}: an empty stream cannot be range coded")
        return SymbolParams(RANGE, model=HistogramModel.read(reader, 1 << bits, count, what))
    if coding not in (PACKED, BROTLI_PACKED, BROTLI_BYTES):
        raise SINRFormatError(f"{what}: unknown symbol coding {coding}")
    if coding == BROTLI_BYTES and bits > 16:
        raise SINRFormatError(f"{what}: byte-plane layout takes at most 16 bits, not {bits}")
    length = reader.varint(0, 1 << 40, "segment length")
    if coding == PACKED and length != packed_size(bits, count):
        raise SINRFormatError(f"{what}: packed segment of {length} bytes, {count} {bits}-bit symbols need "
                              f"{packed_size(bits, count)}")
    segment_lengths.append(length)
    return SymbolParams(coding, segment=len(segment_lengths) - 1)


def decode_cost(params: SymbolParams, bits: int, count: int) -> int:
    """Bytes ``decode_symbols`` allocates at most for this stream, its expansions included
    (checked against the decode budget before anything is decoded)."""
    if params.coding == RANGE:
        # the coder's int32 symbols and their int64 copy, plus the histogram check's chunk
        # (codec.rangecoder.CHECK_CHUNK symbols binned at a time); re-encoding reuses the int32s
        return count * (4 + 8) + min(count, CHECK_CHUNK) * 16
    unpack = unpack_cost(bits, count)
    if params.coding == PACKED:
        return unpack
    if params.coding == BROTLI_PACKED:
        return packed_size(bits, count) + 1 + unpack
    # byte planes: the decompressed planes, their int64 copy, two int64 temporaries
    return byte_planes_size(bits, count) * 9 + 1 + count * 16


def decode_symbols(params: SymbolParams, bits: int, count: int, segments: list[bytes], ranges: RangeDecoder,
                   what: str) -> np.ndarray:
    if params.coding == RANGE:
        return ranges.decode(params.model, count)
    data = segments[params.segment]
    if params.coding == PACKED:
        return unpack_uint(data, bits, count, what)
    if params.coding == BROTLI_PACKED:
        return unpack_uint(brotli_decompress(data, packed_size(bits, count), what), bits, count, what)
    symbols = from_byte_planes(brotli_decompress(data, byte_planes_size(bits, count), what), bits, count)
    if symbols.size and int(symbols.max()) >= 1 << bits:
        raise SINRFormatError(f"{what}: a symbol does not fit in {bits} bits")
    return symbols
