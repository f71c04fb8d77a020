"""Format v2, layer 2a: coding kinds, each turning one entry into record fields and segments and
back. A registry maps the kind id stored in the file to its coder (torchao-style), so a new kind
(hash-grid latents, a baseline's pruned matrices) plugs in with ``register_kind`` and the
reader never changes. Ids are part of the file format: never reuse or renumber one.

Core kinds:
- ``raw`` (0): bytes at a stored dtype (float32/16 storage of a float tensor, integer buffers);
- ``uniform`` (1): a float tensor on a uniform b-bit grid, symbols coded by ``symbols``;
- ``sinr`` (2): SINR codes of a 2-D weight: quantized values (``symbols``) and support indices;
- ``alias`` (3): the same tensor as an earlier entry (tied weights, shared modules);
- ``integers`` (4): a float tensor whose values are integers (hash-grid latents), entropy-coded;
- ``stepped`` (5): a float tensor of integers times a step per group of rows (hash tables
  quantized level by level), each group's integers entropy-coded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.dictionary import DictionarySpec
from ..core.quantization import SUPPORTED_BITS, StepQuantizer, UniformQuantizer
from ..core.tensor_codes import MODES, CodedTensor, CodeSpec
from ..errors import SINRError, SINRFormatError, SINRInputError
from ..nn.storage import INTEGER_STORAGE
from . import symbols as sym
from .codec.bitpack import packed_size
from .codec.indices import CODINGS
from .codec.indices import decode_cost as index_decode_cost
from .codec.indices import decode_indices, encode_indices, index_width
from .codec.rangecoder import RangeDecoder, RangeEncoder
from .codec.wire import ByteReader, ByteWriter
from .schema import DTYPE_IDS, DTYPES, FLOAT_DTYPES, Entry, element_size

MAX_K2 = 1 << 24  # 24-bit indices: far beyond the paper's 16, and decoding cost does not grow with k2
PARTS = ("values", "indices", "biases", "dense")
# Groups of rows a ``stepped`` entry may have (one per hash-grid level: tens in practice). Each
# group is parsed and decoded on its own, so their number bounds a file's parse and decode time.
MAX_STEP_GROUPS = 4096
# Largest |entry| of any dictionary atom times sqrt(k1): the generator's inverse normal CDF
# (core.dictionary) takes u in [2**-54, 1] with its tail clamped at 2**-60, where it gives
# 8.7733 (measured: -8.2924 at the smallest u, +8.7733 at u = 1.0); 9 bounds it with margin.
ATOM_BOUND = 9.0


# ----------------------------------------------------------------------------- contexts
@dataclass
class Item:
    """One tensor of the dense state_dict as the writer receives it."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    kind: str
    # raw: (tensor, stored dtype); uniform: (tensor, quantizer); sinr: CodedTensor; alias: index; integers: tensor
    data: Any

    @property
    def part(self) -> str:
        return "biases" if self.name.rsplit(".", 1)[-1] == "bias" else "dense"


@dataclass
class EncodeContext:
    quality: int
    index_policy: str = "auto"
    symbol_policy: str = "auto"
    segments: list[bytes] = field(default_factory=list)
    ranges: RangeEncoder = field(default_factory=RangeEncoder)
    segment_parts: list[str] = field(default_factory=list)
    range_parts: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # per entry: the coding chosen, for reports
    jobs: dict[bytes, Any] = field(default_factory=dict)  # Brotli compressions started by prefetch

    def start_brotli(self, data: bytes) -> None:
        """Start compressing ``data`` on a worker thread (``Kind.prefetch``); ``brotli`` collects it."""
        if data and data not in self.jobs:
            self.jobs[data] = sym.brotli_async(data, self.quality)

    def brotli(self, data: bytes) -> bytes:
        """``data`` Brotli-compressed at this file's quality: the started job's result, or now."""
        job = self.jobs.pop(data, None)
        return job.result() if job is not None else sym.brotli_compress(data, self.quality)

    def symbols(self, codes: np.ndarray, bits: int, policy: str) -> sym.EncodedSymbols:
        return sym.encode_symbols(codes, bits, self.quality, policy, compress=self.brotli)

    def add_segment(self, part: str, data: bytes) -> None:
        self.segments.append(data)
        self.segment_parts.append(part)

    def add_symbols(self, part: str, encoded: sym.EncodedSymbols, out: ByteWriter) -> None:
        before = len(self.segments)
        slot = sym.write_params(encoded, out, self.segments, self.ranges)
        self.segment_parts += [part] * (len(self.segments) - before)
        if slot is not None:
            self.range_parts.append(part)


@dataclass
class DecodeContext:
    segments: list[bytes]  # this entry's segments
    ranges: RangeDecoder
    decoded: list  # earlier entries' decoded values (for aliases)


@dataclass
class Decoded:
    """What an entry decodes to: a dense tensor, or SINR codes; and how it is stored."""

    tensor: torch.Tensor | None = None
    codes: CodedTensor | None = None
    storage: Any = None  # UniformQuantizer, float dtype name (raw float) or "integer"; None otherwise
    alias_of: int | None = None

    def dense(self, device=None) -> torch.Tensor:
        return self.codes.decode() if self.codes is not None else self.tensor


class Kind:
    id: int
    name: str

    def prefetch(self, item: Item, ctx: EncodeContext) -> None:
        """Start this item's slow work (``ctx.start_brotli``) before any record is written, so the
        items of a file compress in parallel; ``encode`` then writes the same bytes as without."""

    def encode(self, item: Item, out: ByteWriter, ctx: EncodeContext) -> None:
        raise NotImplementedError

    def parse(self, reader: ByteReader, entry: Entry, index: int, entries: list[Entry]) -> Any:
        raise NotImplementedError

    def decoded_bytes(self, entry: Entry) -> int:
        """Bytes decoding this entry allocates at most (checked against the budget first)."""
        return entry.numel * element_size(entry.dtype)

    def decode(self, entry: Entry, ctx: DecodeContext) -> Decoded:
        raise NotImplementedError

    def symbol_streams(self, entry: Entry) -> list[tuple[sym.SymbolParams, int, int]]:
        """The entry's symbol streams as (params, bits, count), in coding order."""
        return []


KINDS_BY_ID: dict[int, Kind] = {}
KINDS_BY_NAME: dict[str, Kind] = {}


# Modules of this package that register kinds of their own; imported when a file names a kind
# not yet known, so every file this package writes can be read without importing them first.
_PLUGINS = ("torch_sinr.format.baseline_kinds",)


def kind_for_id(kind_id: int) -> Kind | None:
    if kind_id not in KINDS_BY_ID:
        import importlib

        for module in _PLUGINS:
            importlib.import_module(module)
    return KINDS_BY_ID.get(kind_id)


def register_kind(kind: Kind) -> Kind:
    """Make a coding kind known to the writer and the reader. Ids are permanent."""
    existing = KINDS_BY_ID.get(kind.id)
    if existing is not None and type(existing) is not type(kind):
        raise SINRError(f"kind id {kind.id} is taken by {existing.name!r}")
    KINDS_BY_ID[kind.id] = kind
    KINDS_BY_NAME[kind.name] = kind
    return kind


def _float_entry(entry: Entry) -> None:
    if entry.dtype not in FLOAT_DTYPES:
        raise SINRFormatError(f"{entry.where}: kind {entry.kind!r} needs a float tensor, not {entry.dtype}")


def finite_limit(dtype: torch.dtype) -> float:
    """Largest magnitude a value may have: what ``dtype`` holds, and float32 (the decoder computes
    in it)."""
    return min(float(torch.finfo(dtype).max), float(torch.finfo(torch.float32).max))


def check_finite(tensor: torch.Tensor, entry: Entry, what: str = "") -> torch.Tensor:
    """``tensor`` (already in the entry's dtype), or SINRFormatError if it holds NaN or Inf."""
    if tensor.is_floating_point() and tensor.numel() and not torch.isfinite(tensor).all():
        raise SINRFormatError(f"{entry.where}{what}: decodes to NaN or Inf in {entry.dtype}")
    return tensor


# Values a decoder dequantizes at a time into its preallocated result: the float64 temporaries
# stay a few MiB whatever the tensor's size (the values are the same as in one go: the
# arithmetic is element by element).
DEQUANTIZE_CHUNK = 1 << 18


def _dequantize_into(out: torch.Tensor, codes: np.ndarray, dequantize) -> None:
    """``out[i] = dequantize(codes[i])`` (float32), ``DEQUANTIZE_CHUNK`` values at a time."""
    for start in range(0, codes.size, DEQUANTIZE_CHUNK):
        stop = min(codes.size, start + DEQUANTIZE_CHUNK)
        out[start:stop] = dequantize(torch.from_numpy(codes[start:stop]))


def _dequantize_bytes(count: int) -> int:
    """The temporaries of ``_dequantize_into``: a chunk of float64 codes, products and float32s."""
    return min(count, DEQUANTIZE_CHUNK) * (8 + 8 + 8 + 4)


def decode_named(where: str, decode, *args):
    """``decode(*args)``, its SINRFormatError naming the tensor (codec errors do not know it)."""
    try:
        return decode(*args)
    except SINRFormatError as exc:
        raise SINRFormatError(f"{where}: {exc}") from None


def _range(reader: ByteReader, entry: Entry, dtype: torch.dtype) -> tuple[float, float]:
    lo, hi = reader.f32(), reader.f32()
    limit = finite_limit(dtype)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi and abs(lo) <= limit and abs(hi) <= limit):
        raise SINRFormatError(f"{entry.where}: quantizer range [{lo}, {hi}] is not finite, ordered and "
                              f"representable in {dtype}")
    return lo, hi


def _bytes_coding(reader: ByteReader, what: str) -> int:
    coding = reader.u8()
    if coding not in (0, 1):
        raise SINRFormatError(f"{what}: unknown byte coding {coding}")
    return coding


def _encode_bytes(data: bytes, ctx: EncodeContext) -> tuple[int, bytes]:
    if data:
        packed = ctx.brotli(data)
        if len(packed) < len(data):
            return 1, packed
    return 0, data


def _decode_bytes(coding: int, data: bytes, expected: int, what: str) -> bytes:
    if coding == 1:
        return sym.brotli_decompress(data, expected, what)
    if len(data) != expected:
        raise SINRFormatError(f"{what}: {len(data)} bytes stored, {expected} expected")
    return data


# ----------------------------------------------------------------------------- raw
@dataclass
class _RawParams:
    stored: torch.dtype
    coding: int


class RawKind(Kind):
    id, name = 0, "raw"

    def encode(self, item, out, ctx):
        tensor, stored = item.data
        out.u8(DTYPE_IDS[stored])
        flat = tensor.detach().to("cpu", stored).contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        coding, segment = _encode_bytes(data, ctx)
        out.u8(coding)
        out.varint(len(segment))
        ctx.add_segment(item.part, segment)

    def parse(self, reader, entry, index, entries):
        stored_id = reader.u8()
        if stored_id not in DTYPES:
            raise SINRFormatError(f"{entry.where}: unknown stored dtype id {stored_id}")
        stored = DTYPES[stored_id]
        if stored != entry.dtype and not (stored in FLOAT_DTYPES and entry.dtype in FLOAT_DTYPES):
            raise SINRFormatError(f"{entry.where}: cannot store {entry.dtype} as {stored}")
        coding = _bytes_coding(reader, entry.where)
        entry.segment_lengths.append(reader.varint(0, 1 << 40, "segment length"))
        return _RawParams(stored, coding)

    def decoded_bytes(self, entry):
        # the decompressed bytes, their mutable copy, the result, the finiteness mask
        return entry.numel * (element_size(entry.dtype) + 2 * element_size(entry.params.stored) + 1)

    def decode(self, entry, ctx):
        p = entry.params
        data = _decode_bytes(p.coding, ctx.segments[0], entry.numel * element_size(p.stored), entry.where)
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        stored = raw.view(p.stored)
        if stored.is_floating_point() and stored.numel() and not torch.isfinite(stored).all():
            raise SINRFormatError(f"{entry.where}: holds NaN or Inf")
        # a float64 value beyond float32 stored for a float32 tensor becomes Inf: check the result too
        tensor = check_finite(stored.reshape(entry.shape).to(entry.dtype), entry)
        storage = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
                   torch.float64: "float64"}.get(p.stored) if entry.dtype in FLOAT_DTYPES else None
        return Decoded(tensor=tensor, storage=storage)


# ----------------------------------------------------------------------------- uniform
@dataclass
class _UniformParams:
    quantizer: UniformQuantizer
    symbols: sym.SymbolParams


class UniformKind(Kind):
    id, name = 1, "uniform"

    def encode(self, item, out, ctx):
        tensor, quantizer = item.data
        out.u8(quantizer.bits)
        out.f32(quantizer.lo)
        out.f32(quantizer.hi)
        ctx.add_symbols(item.part, ctx.symbols(self._codes(item), quantizer.bits, ctx.symbol_policy), out)

    def prefetch(self, item, ctx):
        for _, data in sym.brotli_inputs(self._codes(item), item.data[1].bits, ctx.symbol_policy):
            ctx.start_brotli(data)

    @staticmethod
    def _codes(item) -> np.ndarray:
        tensor, quantizer = item.data
        return quantizer.quantize(tensor.detach().reshape(-1).cpu()).numpy()

    def parse(self, reader, entry, index, entries):
        _float_entry(entry)
        bits = reader.u8()
        if not 2 <= bits <= 16:
            raise SINRFormatError(f"{entry.where}: uniform width {bits} is not in 2..16")
        lo, hi = _range(reader, entry, entry.dtype)
        params = sym.read_params(reader, bits, entry.numel, entry.where, entry.segment_lengths)
        return _UniformParams(UniformQuantizer(bits, lo, hi), params)

    def decoded_bytes(self, entry):
        p = entry.params  # the symbols' decoding (int64 codes), float32 values, the result, its finiteness mask
        return (sym.decode_cost(p.symbols, p.quantizer.bits, entry.numel) + _dequantize_bytes(entry.numel)
                + entry.numel * (4 + element_size(entry.dtype) + 1))

    def decode(self, entry, ctx):
        p = entry.params
        codes = sym.decode_symbols(p.symbols, p.quantizer.bits, entry.numel, ctx.segments, ctx.ranges, entry.where)
        values = torch.empty(entry.numel, dtype=torch.float32)
        _dequantize_into(values, codes, p.quantizer.dequantize)
        del codes
        values = values.reshape(entry.shape).to(entry.dtype)
        return Decoded(tensor=check_finite(values, entry), storage=p.quantizer)

    def symbol_streams(self, entry):
        return [(entry.params.symbols, entry.params.quantizer.bits, entry.numel)]


# ----------------------------------------------------------------------------- sinr
@dataclass
class _SinrParams:
    spec: CodeSpec
    values: sym.SymbolParams
    index_coding: str
    index_param: int
    index_bytes_coding: int
    index_raw_size: int


class SinrKind(Kind):
    id, name = 2, "sinr"

    def encode(self, item, out, ctx):
        codes: CodedTensor = item.data
        spec = codes.spec
        out.u8(MODES.index(spec.mode))
        out.varint(spec.s)
        out.varint(spec.k2)
        out.varint(spec.dictionary.seed)
        out.u8(spec.quantizer.bits)
        if spec.quantizer.bits != 32:
            out.f32(spec.quantizer.lo)
            out.f32(spec.quantizer.hi)
        q, policy = self._values(codes, ctx)
        ctx.add_symbols("values", ctx.symbols(q, spec.quantizer.bits, policy), out)
        coding, param, raw = encode_indices(codes.indices.detach().cpu().numpy(), spec.k2, ctx.index_policy)
        ctx.notes[item.name] = coding
        out.u8(CODINGS.index(coding))
        out.varint(param)
        bytes_coding, segment = _encode_bytes(raw, ctx)
        out.u8(bytes_coding)
        out.varint(len(raw))
        out.varint(len(segment))
        ctx.add_segment("indices", segment)

    def prefetch(self, item, ctx):
        codes: CodedTensor = item.data
        q, policy = self._values(codes, ctx)
        for _, data in sym.brotli_inputs(q, codes.spec.quantizer.bits, policy):
            ctx.start_brotli(data)
        ctx.start_brotli(encode_indices(codes.indices.detach().cpu().numpy(), codes.spec.k2, ctx.index_policy)[2])

    @staticmethod
    def _values(codes: CodedTensor, ctx: EncodeContext) -> tuple[np.ndarray, str]:
        """The values' quantization symbols and the symbol policy they are coded under."""
        bits = codes.spec.quantizer.bits
        q = codes.spec.quantizer.quantize(codes.values.detach().cpu()).numpy().ravel()
        return q, ctx.symbol_policy if bits <= 16 else "brotli"

    def parse(self, reader, entry, index, entries):
        _float_entry(entry)
        if len(entry.shape) != 2 or 0 in entry.shape:
            raise SINRFormatError(f"{entry.where}: SINR codes a 2-D non-empty weight, not shape {list(entry.shape)}")
        mode_id = reader.u8()
        if mode_id >= len(MODES):
            raise SINRFormatError(f"{entry.where}: unknown mode id {mode_id}")
        mode = MODES[mode_id]
        k1 = entry.shape[1] if mode == "row" else entry.shape[0] * entry.shape[1]
        s = reader.varint(1, k1, "s")
        k2 = reader.varint(s, MAX_K2, "k2")
        seed = reader.varint(0, 2**32 - 1, "seed")
        bits = reader.u8()
        if bits not in SUPPORTED_BITS:
            raise SINRFormatError(f"{entry.where}: value width {bits} is not supported")
        # the values become the layer's dtype (SINRLinear(dtype=...)): a float16 layer's range
        # must hold in float16, not only in float32
        lo, hi = _range(reader, entry, entry.dtype) if bits != 32 else (0.0, 0.0)
        try:
            spec = CodeSpec(shape=tuple(entry.shape), mode=mode, s=s, dictionary=DictionarySpec(seed=seed, k1=k1, k2=k2),
                            quantizer=UniformQuantizer(bits, lo, hi))
        except SINRError as exc:
            raise SINRFormatError(f"{entry.where}: {exc}") from None
        count = spec.n_vectors * s
        values = sym.read_params(reader, bits, count, entry.where + " values", entry.segment_lengths)
        coding_id = reader.u8()
        if coding_id >= len(CODINGS):
            raise SINRFormatError(f"{entry.where}: unknown index coding id {coding_id}")
        coding = CODINGS[coding_id]
        param = reader.varint(0, 64, "index parameter")
        bytes_coding = _bytes_coding(reader, entry.where)
        fixed_size = packed_size(index_width(k2), count)
        exact = {"fixed": fixed_size, "bitmask": packed_size(k2, spec.n_vectors)}.get(coding)
        # rice is chosen only when it beats fixed width, so a valid stream is never larger
        raw_size = reader.varint(0, exact if exact is not None else fixed_size + 4, "index stream size")
        if exact is not None and raw_size != exact:
            raise SINRFormatError(f"{entry.where}: {coding} index stream of {raw_size} bytes, expected {exact}")
        entry.segment_lengths.append(reader.varint(0, 1 << 40, "segment length"))
        return _SinrParams(spec, values, coding, param, bytes_coding, raw_size)

    def decoded_bytes(self, entry):
        p = entry.params
        spec = p.spec
        count = spec.n_vectors * spec.s
        # the values' and indices' decoding (expansions included), the codes (int64 + float32),
        # the atoms they use (at most min(k2, count) of k1 floats, built in float64 chunks), and
        # the dense weight A x (float32 and the entry's dtype) that the finiteness check and
        # decode_state_dict compute
        return (sym.decode_cost(p.values, spec.quantizer.bits, count) + p.index_raw_size
                + index_decode_cost(p.index_coding, p.index_param, p.index_raw_size, spec.n_vectors, spec.s, spec.k2)
                + count * (8 + 4 + 8) + spec.k1 * min(spec.k2, count) * 4 * 2
                + entry.numel * (4 + element_size(entry.dtype) + 1))

    def decode(self, entry, ctx):
        p = entry.params
        spec = p.spec
        count = spec.n_vectors * spec.s
        q = sym.decode_symbols(p.values, spec.quantizer.bits, count, ctx.segments, ctx.ranges, entry.where + " values")
        values = spec.quantizer.dequantize(torch.from_numpy(q)).reshape(spec.n_vectors, spec.s)
        check_finite(values.to(entry.dtype), entry, " values")  # the layer holds them in its dtype
        raw = _decode_bytes(p.index_bytes_coding, ctx.segments[-1], p.index_raw_size, entry.where + " indices")
        indices = torch.from_numpy(decode_named(entry.where + " indices", decode_indices, p.index_coding,
                                                p.index_param, raw, spec.n_vectors, spec.s, spec.k2))
        codes = CodedTensor(spec, indices, values)
        check_codes_finite(codes, entry.dtype, entry.where)
        return Decoded(codes=codes)

    def symbol_streams(self, entry):
        spec = entry.params.spec
        return [(entry.params.values, spec.quantizer.bits, spec.n_vectors * spec.s)]


def check_codes_finite(codes: CodedTensor, dtype: torch.dtype, where: str) -> None:
    """Refuse codes whose dense weight A x is not finite in ``dtype``. Each entry of A x (and every
    partial sum, in any order) is at most sum |x| over its code times the largest |atom entry|
    (``ATOM_BOUND / sqrt(k1)``); when that bound is far inside ``dtype``, nothing can overflow
    and nothing is computed. Otherwise A x is computed once (counted in ``decoded_bytes``)."""
    spec = codes.spec
    row_sums = codes.values.to(torch.float64).abs().sum(1)
    bound = float(row_sums.max()) * ATOM_BOUND / math.sqrt(spec.k1) if row_sums.numel() else 0.0
    if bound <= finite_limit(dtype) / 2:
        return
    dense = codes.decode().to(dtype)
    if not torch.isfinite(dense).all():
        raise SINRFormatError(f"{where}: the dense weight A x holds NaN or Inf in {dtype}")


# ----------------------------------------------------------------------------- alias
class AliasKind(Kind):
    id, name = 3, "alias"

    def encode(self, item, out, ctx):
        out.varint(item.data)

    def parse(self, reader, entry, index, entries):
        source = reader.varint(0, max(0, index - 1), "alias source")
        if index == 0 or entries[source].kind == "alias":
            raise SINRFormatError(f"{entry.where}: alias of entry {source}, which is not an earlier stored tensor")
        if entries[source].shape != entry.shape or entries[source].dtype != entry.dtype:
            raise SINRFormatError(f"{entry.where}: alias of {entries[source].name!r} with another shape or dtype")
        return source

    def decoded_bytes(self, entry):
        return 0

    def decode(self, entry, ctx):
        source = ctx.decoded[entry.params]
        return Decoded(tensor=source.tensor, codes=source.codes, storage=source.storage, alias_of=entry.params)


# ----------------------------------------------------------------------------- integers
# Integer-valued latents (SHACIRA-style hash grids) are stored as offsets from their minimum,
# range-coded under a histogram model that is written into the record, so the file's size is a
# real rate with its model counted. 16-bit symbols are what the shared range coder takes.
MAX_INTEGER_BITS = 16
# Integers a float64 holds exactly; smaller dtypes are checked against their own range on decode.
MAX_INTEGER = 1 << 53


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if value % 2 == 0 else -((value + 1) >> 1)


def integer_bits(span: int) -> int:
    """The symbol width of ``span`` consecutive integers (at least 1: range coding needs one bit)."""
    return max(1, (span - 1).bit_length())


@dataclass
class _IntegerParams:
    first: int
    bits: int  # 0 for an empty tensor: no symbol stream
    symbols: sym.SymbolParams | None


def _integer_offsets(values: torch.Tensor, name: str) -> tuple[int, np.ndarray]:
    """(first, value - first as int64) of integer-valued ``values``; raises SINRInputError for
    values that are not storable."""
    flat = values.detach().reshape(-1).cpu()
    if not flat.numel():
        return 0, np.zeros(0, dtype=np.int64)
    if not torch.isfinite(flat).all() or not torch.equal(torch.round(flat), flat):
        raise SINRInputError(f"cannot store {name!r} as integers: it holds non-integer or non-finite values "
                             f"(torch_sinr.nn.storage.round_to_storage rounds it)")
    values = flat.to(torch.float64)
    lo, hi = float(values.min()), float(values.max())
    if max(-lo, hi) > MAX_INTEGER:
        raise SINRInputError(f"cannot store {name!r} as integers: values beyond +-2**53")
    span = int(hi) - int(lo) + 1
    if span > 1 << MAX_INTEGER_BITS:
        raise SINRInputError(f"cannot store {name!r}: its integers span {span} values, at most "
                             f"{1 << MAX_INTEGER_BITS} can be stored; train with a rate term, clamp or use a "
                             f"coarser step")
    first = int(lo)
    return first, values.to(torch.int64).numpy() - first


def _write_integer_stream(first: int, offsets: np.ndarray, out: ByteWriter, ctx: EncodeContext, part: str) -> None:
    """varint zigzag(first); u8 bits (0 iff empty); the range-coded stream of the offsets."""
    out.varint(_zigzag(first))
    if not offsets.size:
        out.u8(0)
        return
    bits = integer_bits(int(offsets.max()) + 1)
    out.u8(bits)
    ctx.add_symbols(part, ctx.symbols(offsets, bits, "range"), out)


def _read_integer_stream(reader: ByteReader, entry: Entry, count: int, where: str) -> _IntegerParams:
    first = _unzigzag(reader.varint(0, 2 * MAX_INTEGER, "integers first value"))
    bits = reader.u8()
    if count == 0:
        if first != 0 or bits != 0:
            raise SINRFormatError(f"{where}: an empty tensor stores first=0 and width 0, not {first} and {bits}")
        return _IntegerParams(0, 0, None)
    if not 1 <= bits <= MAX_INTEGER_BITS:
        raise SINRFormatError(f"{where}: integer width {bits} is not in 1..{MAX_INTEGER_BITS}")
    params = sym.read_params(reader, bits, count, where, entry.segment_lengths)
    if params.coding == sym.RANGE:
        model = params.model  # the model says where the symbols lie: check them before decoding
        if model.first != 0 or integer_bits(model.last + 1) != bits:
            raise SINRFormatError(f"{where}: symbols {model.first}..{model.last} do not start at 0 "
                                  f"or do not need exactly {bits} bits")
    return _IntegerParams(first, bits, params)


def _integer_symbols_bytes(p: _IntegerParams, count: int) -> int:
    """Decoding an integer stream: its symbols (int64, made the integers in place; a packed
    stream's 9x expansion included: symbols.decode_cost)."""
    if p.symbols is None:  # an empty tensor (or params not parsed from a file): the old estimate
        return count * (4 + 8 + 8)
    return sym.decode_cost(p.symbols, p.bits, count)


def _integer_stream_bytes(p: _IntegerParams, count: int, element: int) -> int:
    # the stream's decoding, the result and its finiteness mask
    return _integer_symbols_bytes(p, count) + count * (element + 1)


def _decode_integer_stream(p: _IntegerParams, count: int, ctx: DecodeContext, where: str) -> tuple[np.ndarray, int]:
    """The integers (int64) and the largest offset."""
    codes = sym.decode_symbols(p.symbols, p.bits, count, ctx.segments, ctx.ranges, where)
    low, high = int(codes.min()), int(codes.max())
    if low != 0 or integer_bits(high + 1) != p.bits:  # packed streams: checked once decoded
        raise SINRFormatError(f"{where}: symbols {low}..{high} do not start at 0 or do not need "
                              f"exactly {p.bits} bits")
    codes = codes.astype(np.int64, copy=False)  # decode_symbols' own array: shifted in place
    if p.first:
        codes += p.first
    return codes, high


class IntegerKind(Kind):
    """Record: varint zigzag(first = min value); u8 bits (0 iff the tensor is empty); then, when
    bits > 0, the symbol stream of ``value - first`` (``symbols.write_params``: coding id, model
    or segment length). ``bits`` is the smallest width of the span, so a value has one encoding."""

    id, name = 4, "integers"

    def encode(self, item, out, ctx):
        _write_integer_stream(*_integer_offsets(item.data, item.name), out, ctx, item.part)

    def parse(self, reader, entry, index, entries):
        _float_entry(entry)
        return _read_integer_stream(reader, entry, entry.numel, entry.where)

    def decoded_bytes(self, entry):
        return _integer_stream_bytes(entry.params, entry.numel, element_size(entry.dtype))

    def decode(self, entry, ctx):
        p = entry.params
        if p.bits == 0:
            return Decoded(tensor=torch.empty(entry.shape, dtype=entry.dtype), storage=INTEGER_STORAGE)
        integers, high = _decode_integer_stream(p, entry.numel, ctx, entry.where)
        limit = min(MAX_INTEGER, int(torch.finfo(entry.dtype).max))
        if max(-p.first, p.first + high) > limit:
            raise SINRFormatError(f"{entry.where}: integers {p.first}..{p.first + high} do not fit {entry.dtype}")
        values = check_finite(torch.from_numpy(integers).to(entry.dtype).reshape(entry.shape), entry)
        return Decoded(tensor=values, storage=INTEGER_STORAGE)

    def symbol_streams(self, entry):
        p = entry.params
        return [(p.symbols, p.bits, entry.numel)] if p.bits else []


# ----------------------------------------------------------------------------- stepped
@dataclass
class _SteppedParams:
    quantizer: StepQuantizer
    groups: list[_IntegerParams]


class SteppedKind(Kind):
    """A float tensor whose rows (dim 0) fall in contiguous groups, group ``g`` holding integers
    times its step (``codec.quantization.StepQuantizer``: e.g. one step per hash-table level).

    Record: varint G (1..rows); then per group: varint rows (>= 1; the groups cover dim 0
    exactly), f32 step (finite, > 0), and that group's integers as in kind ``integers`` (first,
    width, symbol stream of ``q - first``). Values are ``q * step`` in float64, rounded once to
    float32, then to the entry's dtype.
    """

    id, name = 5, "stepped"

    @staticmethod
    def _groups(item: Item) -> list[tuple[int, np.ndarray]]:
        tensor, quantizer = item.data
        if tensor.dim() == 0 or tensor.numel() == 0:
            raise SINRInputError(f"cannot store {item.name!r} with a StepQuantizer: it needs a non-empty tensor "
                                 f"with at least one dimension, got shape {tuple(tensor.shape)}")
        try:
            q = quantizer.quantize(tensor.detach().cpu())
        except SINRError as exc:
            raise SINRInputError(f"cannot store {item.name!r}: {exc}") from None
        return [_integer_offsets(part, item.name) for part in q.split(list(quantizer.rows))]

    def encode(self, item, out, ctx):
        _, quantizer = item.data
        if len(quantizer.rows) > MAX_STEP_GROUPS:
            raise SINRInputError(f"cannot store {item.name!r}: {len(quantizer.rows)} groups of rows, at most "
                                 f"{MAX_STEP_GROUPS} can be stored")
        groups = self._groups(item)
        out.varint(len(groups))
        for rows, step, (first, offsets) in zip(quantizer.rows, quantizer.steps, groups):
            out.varint(rows)
            out.f32(step)
            _write_integer_stream(first, offsets, out, ctx, item.part)

    def parse(self, reader, entry, index, entries):
        _float_entry(entry)
        if not entry.shape or entry.numel == 0:
            raise SINRFormatError(f"{entry.where}: stepped integers need a non-empty tensor with at least one "
                                  f"dimension, not shape {list(entry.shape)}")
        total = entry.shape[0]
        per_row = entry.numel // total
        # a group takes at least 7 record bytes (rows, step, first, width): a count the record
        # cannot hold is refused before any group is parsed
        count = reader.varint(1, max(1, min(total, MAX_STEP_GROUPS, reader.remaining // 7)), "group count")
        rows, steps, groups = [], [], []
        covered = 0
        for g in range(count):
            left = total - covered
            n = reader.varint(1, max(1, left - (count - g - 1)), "group rows")
            if n > left:
                raise SINRFormatError(f"{entry.where}: groups cover more than {total} rows")
            step = reader.f32()
            if not (math.isfinite(step) and step > 0):
                raise SINRFormatError(f"{entry.where}: group {g} step {step} is not a finite number > 0")
            rows.append(n)
            covered += n
            steps.append(step)
            groups.append(_read_integer_stream(reader, entry, n * per_row, f"{entry.where} group {g}"))
        if covered != total:
            raise SINRFormatError(f"{entry.where}: groups cover {sum(rows)} of {total} rows")
        return _SteppedParams(StepQuantizer(tuple(rows), tuple(steps)), groups)

    def decoded_bytes(self, entry):
        p = entry.params
        per_row = entry.numel // entry.shape[0]
        # each group's integers (decoded, dequantized into the float32 result, freed), the
        # result in the entry's dtype and its finiteness mask
        largest = max(n * per_row for n in p.quantizer.rows)
        return sum(_integer_symbols_bytes(g, n * per_row) for g, n in zip(p.groups, p.quantizer.rows)) \
            + _dequantize_bytes(largest) + entry.numel * (4 + element_size(entry.dtype) + 1)

    def decode(self, entry, ctx):
        p = entry.params
        per_row = entry.numel // entry.shape[0]
        limit = torch.finfo(entry.dtype).max
        # q * step in float64, rounded once to float32 (StepQuantizer.dequantize, group by group
        # into the result: the same values, without a tensor of every group's integers)
        values = torch.empty(entry.numel, dtype=torch.float32)
        start = 0
        for g, (params, n, step) in enumerate(zip(p.groups, p.quantizer.rows, p.quantizer.steps)):
            where = f"{entry.where} group {g}"
            integers, high = _decode_integer_stream(params, n * per_row, ctx, where)
            largest = max(abs(params.first), abs(params.first + high)) * step
            if largest > min(limit, float(torch.finfo(torch.float32).max)):
                raise SINRFormatError(f"{where}: values up to {largest:.3g} do not fit {entry.dtype}")
            _dequantize_into(values[start:start + integers.size], integers,
                             lambda q, step=step: (q.double() * step).to(torch.float32))
            start += integers.size
            del integers
        values = check_finite(values.reshape(entry.shape).to(entry.dtype), entry)
        return Decoded(tensor=values, storage=p.quantizer)

    def symbol_streams(self, entry):
        per_row = entry.numel // entry.shape[0]
        return [(g.symbols, g.bits, n * per_row) for g, n in zip(entry.params.groups, entry.params.quantizer.rows)]


for _kind in (RawKind(), UniformKind(), SinrKind(), AliasKind(), IntegerKind(), SteppedKind()):
    register_kind(_kind)
