"""Coding kinds of the baselines SINR is compared with: pruned matrices and low-rank factors.

They live in the format, not beside the baselines that write them (``tune.baselines``): every
file this package writes must decode with the format alone, and the reader finds these kinds
through ``kinds._PLUGINS`` when a file names one. Any reader may meet them in a hostile file, so
they meet the built-in kinds' rules: ranges representable in the entry's dtype, every decoded
value finite in it, and every allocation and the low-rank product counted in ``decoded_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.quantization import UniformQuantizer
from ..errors import SINRFormatError
from . import schema
from . import symbols as sym
from .codec.bitpack import packed_size
from .codec.indices import CODINGS
from .codec.indices import decode_cost as index_decode_cost
from .codec.indices import decode_indices, encode_indices, index_width
from .kinds import Decoded, Kind, check_finite, decode_named, finite_limit, register_kind

# The low-rank product costs m * n * r multiply-adds with no allocation to show for it: the budget
# charges one byte per this many, so a file cannot ask for hours of matrix products.
MACS_PER_BUDGET_BYTE = 8

@dataclass
class _PrunedParams:
    s: int
    quantizer: UniformQuantizer
    values: sym.SymbolParams
    coding: str
    param: int
    raw_size: int


class PrunedKind(Kind):
    """A 2-D matrix with s kept entries per row: b-bit values and their column positions."""

    id, name = 16, "pruned"

    def encode(self, item, out, ctx):
        idx, values, q = item.data
        out.u8(q.bits)
        out.f32(q.lo)
        out.f32(q.hi)
        out.varint(idx.shape[1])
        codes = q.quantize(values.reshape(-1)).numpy()
        ctx.add_symbols("values", ctx.symbols(codes, q.bits, ctx.symbol_policy), out)
        coding, param, raw = encode_indices(idx.numpy(), item.shape[1])
        out.u8(CODINGS.index(coding))
        out.varint(param)
        out.varint(len(raw))
        segment = ctx.brotli(raw) if raw else b""
        out.varint(len(segment))
        ctx.add_segment("indices", segment)

    def parse(self, reader, entry, index, entries):
        if len(entry.shape) != 2 or entry.dtype not in schema.FLOAT_DTYPES:
            raise SINRFormatError(f"{entry.where}: pruned needs a 2-D float tensor")
        bits = reader.u8()
        if not 2 <= bits <= 16:
            raise SINRFormatError(f"{entry.where}: width {bits} is not in 2..16")
        lo, hi = reader.f32(), reader.f32()
        limit = finite_limit(entry.dtype)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi and abs(lo) <= limit and abs(hi) <= limit):
            raise SINRFormatError(f"{entry.where}: range [{lo}, {hi}] is not finite, ordered and representable "
                                  f"in {entry.dtype}")
        s = reader.varint(1, max(1, entry.shape[1]), "kept per row")
        count = entry.shape[0] * s
        values = sym.read_params(reader, bits, count, entry.where, entry.segment_lengths)
        coding_id = reader.u8()
        if coding_id >= len(CODINGS):
            raise SINRFormatError(f"{entry.where}: unknown index coding")
        param = reader.varint(0, 64, "index parameter")
        raw_size = reader.varint(0, packed_size(entry.shape[1], entry.shape[0]) + packed_size(index_width(entry.shape[1]), count) + 4,
                                 "index stream size")
        entry.segment_lengths.append(reader.varint(0, 1 << 40, "segment length"))
        return _PrunedParams(s, UniformQuantizer(bits, lo, hi), values, CODINGS[coding_id], param, raw_size)

    def decoded_bytes(self, entry):
        p = entry.params
        rows, cols = entry.shape
        count = rows * p.s
        # the values' and indices' decoding (expansions included), the codes, the dense matrix
        # (float32 and the entry's dtype) and its finiteness mask
        return (sym.decode_cost(p.values, p.quantizer.bits, count) + p.raw_size
                + index_decode_cost(p.coding, p.param, p.raw_size, rows, p.s, cols) + count * 24
                + entry.numel * (4 + schema.element_size(entry.dtype) + 1))

    def decode(self, entry, ctx):
        p = entry.params
        rows, cols = entry.shape
        q = sym.decode_symbols(p.values, p.quantizer.bits, rows * p.s, ctx.segments, ctx.ranges, entry.where)
        raw = sym.brotli_decompress(ctx.segments[-1], p.raw_size, entry.where) if p.raw_size else b""
        idx = decode_named(entry.where + " indices", decode_indices, p.coding, p.param, raw, rows, p.s, cols)
        dense = torch.zeros(entry.shape)
        dense.scatter_(1, torch.from_numpy(idx), p.quantizer.dequantize(torch.from_numpy(q)).reshape(rows, p.s))
        return Decoded(tensor=check_finite(dense.to(entry.dtype), entry))

    def symbol_streams(self, entry):
        return [(entry.params.values, entry.params.quantizer.bits, entry.shape[0] * entry.params.s)]


class LowRankKind(Kind):
    """A 2-D matrix as two float32 factors (m x r) @ (r x n)."""

    id, name = 17, "low_rank"

    def encode(self, item, out, ctx):
        left, right = item.data
        out.varint(left.shape[1])
        for factor in (left, right):
            data = factor.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
            segment = ctx.brotli(data)
            out.varint(len(segment))
            ctx.add_segment("dense", segment)

    def parse(self, reader, entry, index, entries):
        if len(entry.shape) != 2 or entry.dtype not in schema.FLOAT_DTYPES:
            raise SINRFormatError(f"{entry.where}: low_rank needs a 2-D float tensor")
        rank = reader.varint(1, min(entry.shape), "rank")
        entry.segment_lengths += [reader.varint(0, 1 << 40, "segment length") for _ in range(2)]
        return rank

    def decoded_bytes(self, entry):
        rank = entry.params
        # the factors (decompressed, copied), the product (float32, the entry's dtype, its
        # finiteness mask) and the product's multiply-adds
        return (rank * sum(entry.shape) * 8 + entry.numel * (4 + schema.element_size(entry.dtype) + 1)
                + entry.numel * rank // MACS_PER_BUDGET_BYTE)

    def decode(self, entry, ctx):
        rank, (m, n) = entry.params, entry.shape
        factors = []
        for segment, shape in zip(ctx.segments, ((m, rank), (rank, n))):
            data = sym.brotli_decompress(segment, shape[0] * shape[1] * 4, entry.where)
            factor = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape)
            if not torch.isfinite(factor).all():
                raise SINRFormatError(f"{entry.where}: a low-rank factor holds NaN or Inf")
            factors.append(factor)
        return Decoded(tensor=check_finite((factors[0] @ factors[1]).to(entry.dtype), entry))


register_kind(PrunedKind())
register_kind(LowRankKind())
