"""Coding kinds of the baselines SINR is compared with: pruned matrices and low-rank factors.

They live in the format, not beside the baselines that write them (``tune.baselines``): every
file this package writes must decode with the format alone, and the reader finds these kinds
through ``kinds._PLUGINS`` when a file names one.
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
from .codec.indices import CODINGS, decode_indices, encode_indices, index_width
from .kinds import Decoded, Kind, register_kind

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
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise SINRFormatError(f"{entry.where}: bad range")
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
        return entry.numel * 4 + entry.shape[0] * entry.params.s * 24

    def decode(self, entry, ctx):
        p = entry.params
        rows, cols = entry.shape
        q = sym.decode_symbols(p.values, p.quantizer.bits, rows * p.s, ctx.segments, ctx.ranges, entry.where)
        raw = sym.brotli_decompress(ctx.segments[-1], p.raw_size, entry.where) if p.raw_size else b""
        idx = decode_indices(p.coding, p.param, raw, rows, p.s, cols)
        dense = torch.zeros(entry.shape)
        dense.scatter_(1, torch.from_numpy(idx), p.quantizer.dequantize(torch.from_numpy(q)).reshape(rows, p.s))
        return Decoded(tensor=dense.to(entry.dtype))

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
        return (entry.numel + entry.params * sum(entry.shape)) * 8

    def decode(self, entry, ctx):
        rank, (m, n) = entry.params, entry.shape
        factors = []
        for segment, shape in zip(ctx.segments, ((m, rank), (rank, n))):
            data = sym.brotli_decompress(segment, shape[0] * shape[1] * 4, entry.where)
            factors.append(torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape))
        return Decoded(tensor=(factors[0] @ factors[1]).to(entry.dtype))


register_kind(PrunedKind())
register_kind(LowRankKind())
