"""Fuzz the format-2 reader: mutated and hand-made hostile files must be refused or decode
exactly, within bounded time and memory.

``python -m benchmarks.fuzz_format --files 12000`` mutates the files of several compressed models
(six bases: SIRENs, tied and shared modules in a bare file, float16 buffers, ``integers`` and
``stepped`` hash-table tensors, the ``pruned`` and ``low_rank`` plugin kinds) and feeds each
mutant to ``load_compressed`` (into a fresh skeleton, then one forward pass, so lazily built
dictionaries count too), to ``decode_state_dict`` (skeleton given, and for self-describing files
also without one, under an explicit budget) and to ``read_compressed`` (``torch-sinr info``).

Half the mutants are byte-level (bits flipped, bytes set, cut, extended, spliced; CRC recomputed
for half of those), half structure-aware and always re-sealed with a correct CRC: the base file's
record is parsed with a tracing reader that logs every field's bytes, then one of
``int-extreme`` (a varint set to 0, 1, +-1, doubled or 2**k - 1 up to 2**63), ``u8-extreme``,
``float-extreme`` (an f32 set to +-inf, NaN, +-FLT_MAX, float16's limits, subnormals),
``histogram-move`` / ``histogram-shuffle`` (a range model's counts moved between bins, the sum
kept), ``segment-swap`` / ``segment-cut`` / ``segment-bomb`` (segments exchanged, truncated or
replaced by Brotli bombs of up to 256 MiB, length fields rewritten to match), ``ranged-edit``
(words appended to, cut from or rewritten in the range-coded segment), ``entry-duplicate``
(one entry's coding and segments copied over another's) and ``entry-splice`` (an entry of
another base file put in place of one of this file's). Each file lands in one category:

- ``rejected``: every reader raised ``SINRFormatError``;
- ``identical``: it decodes to exactly the original weights (e.g. a flip in the header's padding);
- ``valid-other``: a *hostile* mutant (CRC recomputed after the mutation, so it is a well-formed
  file with other content) decoded to other weights. That is what a valid file may do;
  it is counted apart from
- ``silently-different``: a *corrupted* mutant (CRC left as it was) decoded to other weights.
  Must be 0;
- ``crash``: any exception other than ``SINRFormatError``. Must be 0;
- ``slow``: over ``--max-seconds`` (10). Must be 0.

Apart from the category, ``nonfinite`` counts files a reader accepted that decoded to NaN or Inf
(the bases decode to finite values only). Must be 0.

Peak memory is sampled from /proc/self/statm during each reader call; the largest increase over
the resident size before it, and the longest call, are reported per reader and per mutation
against the bound (256 MiB plus the skeleton's size).
Results: ``benchmarks/results/fuzz_format.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import brotli
import torch
from torch import nn

from benchmarks._common import HelpFormatter
from torch_sinr import SINRConfig, SINRFormatError, compress_model
from torch_sinr.format.codec.wire import ByteReader, ByteWriter
from torch_sinr.format import container, schema
from torch_sinr.format.model_io import dense_signature
from torch_sinr.format import decode_state_dict, load_compressed, read_compressed, save_compressed

OUT = Path(__file__).resolve().parent / "results"
MEMORY_BOUND = 256 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# ----------------------------------------------------------------------------- models
class _Sine(nn.Module):
    def forward(self, x):
        return torch.sin(30.0 * x)


def siren(width: int, layers: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Linear(2, width), _Sine()]
    for _ in range(layers - 1):
        mods += [nn.Linear(width, width), _Sine()]
    return nn.Sequential(*mods, nn.Linear(width, 3))


class Linked(nn.Module):
    """Tied weights (b shares a's weight) and a module under two names (c is a)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.a, self.out = nn.Linear(2, 64), nn.Linear(64, 64), nn.Linear(64, 3)
        self.b = nn.Linear(64, 64)
        self.b.weight = self.a.weight
        self.c = self.a

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(torch.tanh(self.c(torch.tanh(self.b(torch.tanh(self.a(h)))))))


class Buffers(nn.Module):
    """BatchNorm statistics, an int64 counter and a flattened ("tiny") coded layer."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.bn, self.mid, self.out = nn.Linear(2, 24), nn.BatchNorm1d(24), nn.Linear(24, 24), nn.Linear(24, 3)
        self.register_buffer("steps", torch.arange(3, dtype=torch.int64))

    def forward(self, x):
        return self.out(torch.relu(self.mid(torch.relu(self.bn(self.inp(x))))))


class Tables(nn.Module):
    """Hash-grid-style tensors: integer latents (kind ``integers``) and a table quantized level
    by level (kind ``stepped``, three groups of rows, the first mostly zero)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        from torch_sinr.core.quantization import StepQuantizer
        from torch_sinr.nn.storage import INTEGER_STORAGE, round_to_storage, set_storage

        torch.manual_seed(seed)
        self.inp, self.mid, self.out = nn.Linear(2, 32), nn.Linear(32, 32), nn.Linear(32, 3)
        self.latents = nn.Parameter(torch.round(torch.randn(600, 1) * 2))
        table = torch.randn(300, 2) * 0.05
        table[:100] *= (torch.rand(100, 1) < 0.1).float()
        quantizer = StepQuantizer.per_group((100, 150, 50), (0.01, 0.005, 0.02))
        self.table = nn.Parameter(round_to_storage(table, quantizer))
        set_storage(self, "latents", INTEGER_STORAGE)
        set_storage(self, "table", quantizer)

    def forward(self, x):
        return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x))))) + self.latents[0] + self.table[0, 0]


@dataclass
class Subject:
    name: str
    factory: object
    config: SINRConfig
    names: bool = True
    path: Path | None = None
    state: dict = field(default_factory=dict)


def subjects() -> list[Subject]:
    return [
        Subject("siren-3x64", lambda: siren(64, 3), SINRConfig()),
        Subject("siren-2x32-8bit-range", lambda: siren(32, 2), SINRConfig(value_bits=8, symbol_coding="range")),
        Subject("linked-bare", Linked, SINRConfig(value_bits=10, index_coding="fixed"), names=False),
        Subject("buffers-fp16-dense", Buffers, SINRConfig(dense_dtype="float16", value_bits=12)),
        Subject("tables-integers-stepped", Tables, SINRConfig(value_bits=12)),
        Subject("baselines-pruned-low-rank", lambda: siren(32, 2), None),
    ]


def _write_baselines(model: nn.Module, path: Path) -> None:
    """The plugin kinds in one file: the hidden weight pruned (8 of 32 kept per row, 8-bit values,
    range coded), the output weight at rank 2, every other tensor uniform at 10 bits."""
    from torch_sinr.core.quantization import UniformQuantizer
    from torch_sinr.format import baseline_kinds  # noqa: F401  (registers the kinds)
    from torch_sinr.format.kinds import Item

    items = []
    for name, t in model.state_dict().items():
        t = t.detach()
        if name == "2.weight":
            idx = t.abs().topk(8, dim=1).indices.sort(dim=1).values
            values = t.gather(1, idx)
            items.append(Item(name, t.dtype, tuple(t.shape), "pruned", (idx, values, UniformQuantizer.fit(values, 8))))
        elif name == "4.weight":
            u, sv, vh = torch.linalg.svd(t.double(), full_matrices=False)
            items.append(Item(name, t.dtype, tuple(t.shape), "low_rank",
                              ((u[:, :2] * sv[:2]).float(), vh[:2].float())))
        else:
            items.append(Item(name, t.dtype, tuple(t.shape), "uniform", (t, UniformQuantizer.fit(t, 10))))
    payload, _ = container.encode_payload(items, names=True, quality=5, symbol_policy="range")
    container.write_file(path, payload)


def prepare(subject: Subject, directory: Path) -> Subject:
    model = subject.factory()
    model.eval()
    subject.path = directory / f"{subject.name}.safetensors"
    if subject.config is None:
        _write_baselines(model, subject.path)
    else:
        compress_model(model, subject.config)
        save_compressed(model, subject.path, names=subject.names)
    subject.state = {k: v.detach().clone() for k, v in decode_state_dict(subject.path, skeleton=subject.factory()).items()}
    return subject


def skeleton_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


# ----------------------------------------------------------------------------- mutations
def _payload_span(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<Q", data[:8])
    return 8 + header_size, len(data)


def _fix_crc(data: bytearray) -> bytearray:
    start, end = _payload_span(bytes(data))
    if end - start >= 4:
        data[end - 4 : end] = struct.pack("<I", zlib.crc32(bytes(data[start : end - 4])))
    return data


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, bool]:
    """A mutant of ``data`` and whether its CRC was recomputed (a hostile, well-formed payload)."""
    out = bytearray(data)
    start, end = _payload_span(data)
    kind = rng.choice(["flip", "flip", "byte", "bytes", "truncate", "extend", "zero", "header", "splice"])
    in_payload = rng.random() < 0.85
    lo, hi = (start, end) if in_payload else (0, start)
    pos = rng.randrange(lo, max(lo + 1, hi))
    if kind == "flip":
        out[pos] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        out[pos] = rng.randrange(256)
    elif kind == "bytes":
        for _ in range(rng.randint(2, 8)):
            out[rng.randrange(lo, hi)] = rng.randrange(256)
    elif kind == "truncate":
        del out[rng.randrange(1, len(out)):]
    elif kind == "extend":
        out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "zero":
        n = rng.randint(1, 32)
        out[pos : pos + n] = bytes(len(out[pos : pos + n]))
    elif kind == "header":  # edit a digit of the JSON header (shape, offsets)
        digits = [i for i in range(8, start) if chr(out[i]).isdigit()]
        if digits:
            out[rng.choice(digits)] = ord(str(rng.randrange(10)))
    else:  # copy a chunk of the payload over another place
        n = rng.randint(1, 16)
        src, dst = rng.randrange(start, end), rng.randrange(start, end)
        out[dst : dst + n] = data[src : src + n]
    hostile = in_payload and kind not in ("truncate", "extend") and rng.random() < 0.5
    if hostile:
        out = _fix_crc(out)
    return bytes(out), hostile


# ----------------------------------------------------------------------------- structure-aware mutations
@dataclass
class Field:
    start: int  # in the payload body (the payload without its CRC)
    end: int
    kind: str  # "varint", "u8", "u32", "f32"
    name: str


class _TracingReader(ByteReader):
    """A ByteReader that logs where each field it reads lies (``parse_payload`` reads the record
    through it while ``layout`` traces a base file)."""

    log: list[Field] = []

    def __init__(self, data, what="record"):
        super().__init__(data, what)
        self._depth = 0
        _TracingReader.log = self.fields = []

    def _traced(self, kind, name, read):
        start = self.position
        self._depth += 1
        try:
            value = read()
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.fields.append(Field(start, self.position, kind, name))
        return value

    def varint(self, lo=0, hi=(1 << 63) - 1, field="value"):
        return self._traced("varint", field, lambda: ByteReader.varint(self, lo, hi, field))

    def u8(self):
        return self._traced("u8", "u8", lambda: ByteReader.u8(self))

    def u32(self):
        return self._traced("u32", "u32", lambda: ByteReader.u32(self))

    def f32(self):
        return self._traced("f32", "f32", lambda: ByteReader.f32(self))


@dataclass
class Layout:
    """A base file taken apart: its payload body, every record field, the segments (in order),
    each entry's record span and segments, and the range-coded segment."""

    prefix: bytes  # the safetensors header
    body: bytes
    fields: list[Field]
    record_end: int
    segments: list[bytes]
    length_fields: list[int]  # index into fields of each segment's length
    entries: list[tuple[int, int]]  # record span (kind byte included) of each entry
    entry_segments: list[tuple[int, int]]  # segment index range of each entry
    ranged: bytes


def layout(data: bytes, signature=None) -> Layout:
    start, _ = _payload_span(data)
    payload = data[start:]
    original = container.ByteReader
    container.ByteReader = _TracingReader
    try:
        parsed = container.parse_payload(payload, signature)
    finally:
        container.ByteReader = original
    fields = _TracingReader.log
    body = payload[:-4]
    flat = [n for entry in parsed.entries for n in entry.segment_lengths]
    record_end = len(body) - len(parsed.ranged) - sum(flat)
    segments, offset = [], record_end
    for n in flat:
        segments.append(body[offset:offset + n])
        offset += n
    length_fields = [i for i, f in enumerate(fields) if f.name == "segment length"]
    assert len(length_fields) == len(segments), (len(length_fields), len(segments))
    entries, position = [], record_end - sum(1 + e.side_bytes for e in parsed.entries)
    entry_segments, first = [], 0
    for entry in parsed.entries:
        entries.append((position, position + 1 + entry.side_bytes))
        position += 1 + entry.side_bytes
        entry_segments.append((first, first + len(entry.segment_lengths)))
        first += len(entry.segment_lengths)
    return Layout(data[:start], body, fields, record_end, segments, length_fields, entries, entry_segments,
                  parsed.ranged)


def _varint(value: int) -> bytes:
    w = ByteWriter()
    w.varint(value)
    return w.getvalue()


def _read_varint(data: bytes) -> int:
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
    return value


def rebuild(lay: Layout, edits: dict[tuple[int, int], bytes], segments: list[bytes] | None = None,
            ranged: bytes | None = None) -> bytes:
    """The file with record spans replaced (``edits``: (start, end) -> bytes, non-overlapping),
    the segments and the range-coded segment replaced, and a correct CRC."""
    edits = dict(edits)
    segments = lay.segments if segments is None else segments
    if lay.length_fields and len(segments) == len(lay.segments):  # keep each segment's length field right
        for index, (old, new) in enumerate(zip(lay.segments, segments)):
            if len(old) != len(new):
                f = lay.fields[lay.length_fields[index]]
                edits.setdefault((f.start, f.end), _varint(len(new)))
    record, position = bytearray(), 0
    for (start, end), new in sorted(edits.items()):
        if start < position:
            continue  # overlapping edit: the first wins
        record += lay.body[position:start] + new
        position = end
    record += lay.body[position:lay.record_end]
    body = bytes(record) + b"".join(segments) + (lay.ranged if ranged is None else ranged)
    payload = body + struct.pack("<I", zlib.crc32(body))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        container.write_file(path, payload)
        return path.read_bytes()


_FLOATS = (float("inf"), float("-inf"), float("nan"), 3.4028234663852886e38, -3.4028234663852886e38, 65504.0,
           -65504.0, 65520.0, 6.103515625e-05, 5.960464477539063e-08, 1e-45, 0.0, -0.0, 1e30, -1e30)
_BOMBS: dict[int, bytes] = {}


def _bomb(size: int) -> bytes:
    if size not in _BOMBS:
        _BOMBS[size] = brotli.compress(bytes(size), quality=1)
    return _BOMBS[size]


STRUCTURED = ("int-extreme", "u8-extreme", "float-extreme", "histogram-move", "histogram-shuffle", "segment-swap",
              "segment-cut", "segment-bomb", "ranged-edit", "entry-duplicate", "entry-splice")


def mutate_structure(lay: Layout, others: list[Layout], rng: random.Random) -> tuple[bytes, str]:
    """A structure-aware mutant of the file ``lay`` describes (always re-sealed) and its kind."""
    kind = rng.choice(STRUCTURED)
    fields = lay.fields
    if kind == "int-extreme":
        f = rng.choice([f for f in fields if f.kind == "varint"])
        v = _read_varint(lay.body[f.start:f.end])
        value = rng.choice([0, 1, max(0, v - 1), v + 1, 2 * v, 3 * v + 7] + [(1 << k) - 1 for k in
                                                                            (7, 8, 15, 16, 20, 24, 31, 32, 40, 53, 63)]
                           + [1 << k for k in (16, 24, 30, 31, 32, 39, 40, 62)])
        return rebuild(lay, {(f.start, f.end): _varint(value)}), f"{kind} {f.name}={value}"
    if kind == "u8-extreme":
        f = rng.choice([f for f in fields if f.kind == "u8"])
        v = lay.body[f.start]
        value = rng.choice([0, 1, 2, 255, (v + 1) % 256, (v - 1) % 256, v ^ 0x80])
        return rebuild(lay, {(f.start, f.end): bytes([value])}), f"{kind} {value}"
    if kind == "float-extreme":
        floats = [f for f in fields if f.kind == "f32"]
        if not floats:
            return mutate_structure(lay, others, rng)
        f = rng.choice(floats)
        value = rng.choice(_FLOATS)
        return rebuild(lay, {(f.start, f.end): struct.pack("<f", value)}), f"{kind} {value}"
    if kind in ("histogram-move", "histogram-shuffle"):
        runs, run = [], []
        for i, f in enumerate(fields):
            if f.name == "model count" and (not run or run[-1] == i - 1):
                run.append(i)
            else:
                if len(run) >= 2:
                    runs.append(run)
                run = [i] if f.name == "model count" else []
        if len(run) >= 2:
            runs.append(run)
        if not runs:
            return mutate_structure(lay, others, rng)
        run = rng.choice(runs)
        counts = [_read_varint(lay.body[fields[i].start:fields[i].end]) for i in run]
        if kind == "histogram-move":
            src = rng.choice([i for i, c in enumerate(counts) if c] or [0])
            dst = rng.choice([i for i in range(len(counts)) if i != src])
            moved = rng.randint(1, max(1, counts[src]))
            moved = min(moved, counts[src])
            counts[src] -= moved
            counts[dst] += moved
        else:
            rng.shuffle(counts)
        edits = {(fields[i].start, fields[i].end): _varint(c) for i, c in zip(run, counts)}
        return rebuild(lay, edits), f"{kind} over {len(counts)} bins"
    if kind.startswith("segment") and not lay.segments:
        return mutate_structure(lay, others, rng)
    if kind == "segment-swap":
        segments = list(lay.segments)
        i, j = rng.randrange(len(segments)), rng.randrange(len(segments))
        segments[i], segments[j] = segments[j], segments[i]
        return rebuild(lay, {}, segments), f"{kind} {i}<->{j}"
    if kind == "segment-cut":
        segments = list(lay.segments)
        i = rng.randrange(len(segments))
        segments[i] = segments[i][:rng.randrange(len(segments[i]) + 1)]
        return rebuild(lay, {}, segments), f"{kind} {i}"
    if kind == "segment-bomb":
        segments = list(lay.segments)
        i = rng.randrange(len(segments))
        size = rng.choice([1 << 16, 1 << 20, 1 << 24, 1 << 28])
        segments[i] = _bomb(size)
        return rebuild(lay, {}, segments), f"{kind} {i} ({size} zeros)"
    if kind == "ranged-edit":
        ranged = lay.ranged
        choice = rng.choice(["append", "cut", "rewrite", "zero"])
        if choice == "append":
            ranged = ranged + bytes(rng.randrange(256) for _ in range(4 * rng.randint(1, 4)))
        elif choice == "cut":
            ranged = ranged[:max(0, len(ranged) - 4 * rng.randint(1, 4))]
        elif choice == "rewrite" and ranged:
            word = rng.randrange(len(ranged) // 4)
            ranged = ranged[:4 * word] + bytes(rng.randrange(256) for _ in range(4)) + ranged[4 * word + 4:]
        else:
            ranged = bytes(len(ranged))
        return rebuild(lay, {}, ranged=ranged), f"{kind} {choice}"
    # entry-duplicate / entry-splice: entry j's coding and segments replaced by another entry's
    source = lay if kind == "entry-duplicate" else rng.choice(others)
    i, j = rng.randrange(len(source.entries)), rng.randrange(len(lay.entries))
    (s0, s1), (t0, t1) = source.entries[i], lay.entries[j]
    (a0, a1), (b0, b1) = source.entry_segments[i], lay.entry_segments[j]
    segments = lay.segments[:b0] + source.segments[a0:a1] + lay.segments[b1:]
    edits = {(t0, t1): source.body[s0:s1]}
    # rebuild without rewriting length fields: the copied entry brings its own
    lay2 = Layout(lay.prefix, lay.body, lay.fields, lay.record_end, segments, [], lay.entries, lay.entry_segments,
                  lay.ranged)
    return rebuild(lay2, edits, segments), f"{kind} {i}->{j}"


# ----------------------------------------------------------------------------- hand-made attacks
def _file(payload_body: bytes) -> bytes:
    """A complete file around a payload body (the CRC is appended, so it is well formed)."""
    payload = payload_body + struct.pack("<I", zlib.crc32(payload_body))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        container.write_file(path, payload)
        return path.read_bytes()


def build(signature, entries: list[bytes], segments: list[bytes], ranged: bytes = b"", *, names: bool = True,
          settings: bytes = b"\xb0", count: int | None = None) -> bytes:
    """Assemble a payload from hand-written entry records (kind id + parameters each)."""
    record = ByteWriter()
    record.varint(len(signature) if count is None else count)
    record.raw(settings)
    if names:
        schema.write_signature(record, signature)
    else:
        record.u32(schema.skeleton_fingerprint(signature))
    for entry in entries:
        record.raw(entry)
    body = ByteWriter()
    body.u8(schema.VERSION)
    body.u8(schema.FLAG_NAMES if names else 0)
    body.raw(record.getvalue())
    for segment in segments:
        body.raw(segment)
    body.raw(ranged)
    return _file(body.getvalue())


def _raw_entry(stored_id: int, coding: int, length: int) -> bytes:
    w = ByteWriter()
    w.u8(0)
    w.u8(stored_id)
    w.u8(coding)
    w.varint(length)
    return w.getvalue()


def _uniform_entry(bits: int, lo: float, hi: float, coding: int, length: int) -> bytes:
    w = ByteWriter()
    w.u8(1)
    w.u8(bits)
    w.raw(struct.pack("<ff", lo, hi))
    w.u8(coding)
    w.varint(length)
    return w.getvalue()


def _ranged_uniform_entry(bits: int, count: int) -> bytes:
    """A uniform entry whose symbols are range coded with a one-bin model over all 2**bits."""
    w = ByteWriter()
    w.u8(1)
    w.u8(bits)
    w.raw(struct.pack("<ff", -1.0, 1.0))
    w.u8(3)
    w.varint(0)
    w.varint((1 << bits) - 1)
    w.varint(1)
    w.varint(count)
    return w.getvalue()


def _sinr_entry(s: int, k2: int, bits: int, values_coding: int, values: bytes, index_coding: int, index_param: int,
                index_raw: int, index_segment: int, mode: int = 0, lo: float = -1.0, hi: float = 1.0) -> bytes:
    w = ByteWriter()
    w.u8(2)
    w.u8(mode)
    w.varint(s)
    w.varint(k2)
    w.varint(0)
    w.u8(bits)
    if bits != 32:
        w.raw(struct.pack("<ff", lo, hi))
    w.u8(values_coding)
    w.varint(len(values))
    w.u8(index_coding)
    w.varint(index_param)
    w.u8(0)
    w.varint(index_raw)
    w.varint(index_segment)
    return w.getvalue()


def _fixed_indices(rows: int, s: int, k2: int) -> bytes:
    from torch_sinr.format.codec.bitpack import pack_uint
    from torch_sinr.format.codec.indices import index_width
    import numpy as np

    idx = np.tile(np.arange(s) * (k2 // s), (rows, 1))
    return pack_uint(idx, index_width(k2))


@functools.lru_cache(maxsize=1)
def attacks() -> tuple[tuple[str, bytes, object], ...]:
    """(name, file bytes, skeleton factory or None): files a hostile writer could make, each
    well formed as far as the CRC goes (built once a process: the 1 GiB Brotli bomb takes seconds)."""
    bomb = brotli.compress(bytes(1 << 30), quality=5)  # 1 GiB of zeros in about a kilobyte
    f32 = schema.DTYPE_IDS[torch.float32]
    one = [("w", torch.float32, (64,))]
    big = [(f"l{i}.weight", torch.float32, (16384, 16384)) for i in range(12)]
    square = [("h.weight", torch.float32, (64, 64))]
    idx = _fixed_indices(64, 16, 1024)
    out = [
        ("brotli bomb in a raw tensor", build(one, [_raw_entry(f32, 1, len(bomb))], [bomb]), None),
        ("brotli bomb in a 16-bit uniform tensor", build(one, [_uniform_entry(16, -1, 1, 1, len(bomb))], [bomb]), None),
        ("brotli bomb in SINR values (16-bit)",
         build(square, [_sinr_entry(16, 1024, 16, 1, bomb, 0, 10, len(idx), len(idx))], [bomb, idx]), None),
        ("brotli bomb in SINR values (32-bit)",
         build(square, [_sinr_entry(16, 1024, 32, 1, bomb, 0, 10, len(idx), len(idx))], [bomb, idx]), None),
        ("twelve declared 16384x16384 layers in a tiny file",
         build(big, [_ranged_uniform_entry(8, 16384 * 16384)] * 12, []), None),
        ("k2 = 2**23 (slow-dictionary attack)",
         build(square, [_sinr_entry(16, 1 << 23, 8, 0, bytes(64 * 16), 0, 23, 64 * 16 * 23 // 8, 64 * 16 * 23 // 8)],
               [bytes(64 * 16), _fixed_indices(64, 16, 1 << 23)]), None),
        ("k2 = 2**30", build(square, [_sinr_entry(16, 1 << 30, 8, 0, bytes(64 * 16), 0, 30, 3840, 3840)],
                              [bytes(64 * 16), bytes(3840)]), None),
        ("range [-1.7e308, 1.7e308] (not float32)",
         build(one, [_uniform_entry(8, float("-inf"), float("inf"), 0, 64)], [bytes(64)]), None),
        ("NaN range", build(one, [_uniform_entry(8, float("nan"), 1.0, 0, 64)], [bytes(64)]), None),
        ("raw float32 tensor holding NaN", build(one, [_raw_entry(f32, 0, 256)], [struct.pack("<f", float("nan")) * 64]),
         None),
        ("duplicate names", build([("w", torch.float32, (64,)), ("w", torch.float32, (64,))],
                                  [_raw_entry(f32, 0, 256)] * 2, [bytes(256)] * 2), None),
        ("50 MB name", None, None),  # filled below (needs the oversize record)
        ("unknown kind", build(one, [b"\x63"], []), None),
        ("alias of a later entry", build([("a", torch.float32, (4,)), ("b", torch.float32, (4,))],
                                          [b"\x03\x01", _raw_entry(f32, 0, 16)], [bytes(16)]), None),
        ("entry count beyond the record", build(one, [_raw_entry(f32, 0, 256)], [bytes(256)], count=1 << 20), None),
        ("non-minimal varint", build(one, [_raw_entry(f32, 0, 256)[:-1] + b"\x80\x02"], [bytes(256)]), None),
        ("bytes after the segments that no range-coded stream uses",
         build(one, [_raw_entry(f32, 0, 256)], [bytes(300)]), None),
        ("unknown settings", build(one, [_raw_entry(f32, 0, 256)], [bytes(256)], settings=b"\xf0"), None),
    ]
    out += list(issue23_attacks())
    long_name = [("n" * (50 << 20), torch.float32, (64,))]
    out[[n for n, _, _ in out].index("50 MB name")] = ("50 MB name", build(long_name, [_raw_entry(f32, 0, 256)],
                                                                           [bytes(256)]), None)
    return tuple(out)


def _model_fields(w: ByteWriter, first: int, span: int, counts) -> None:
    w.u8(3)
    w.varint(first)
    w.varint(span - 1)
    w.varint(len(counts))
    for c in counts:
        w.varint(c)


@functools.lru_cache(maxsize=1)
def issue23_attacks() -> list[tuple[str, bytes, object]]:
    """The hostile files of issue 23 (tests/format/test_hardening.py builds the same ones)."""
    import numpy as np

    from torch_sinr.format.codec.rangecoder import HistogramModel

    out = []
    w = ByteWriter()
    w.raw(b"\x01\x02" + struct.pack("<ff", -1.0, 1.0))
    _model_fields(w, 0, 2, (1 << 39, 1 << 39))
    out.append(("two-symbol model of 2**39 + 2**39 (the coder aborted)",
                build([("w", torch.float32, (1 << 20, 1 << 20))], [w.getvalue()], [], ranged=bytes(8)), None))
    model = HistogramModel(0, 255, (64,) + (0,) * 15)
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(np.array([0] * 63 + [254], dtype=np.int32), model.entropy_model())
    w = ByteWriter()
    w.raw(b"\x01\x08" + struct.pack("<ff", -1.0, 1.0))
    _model_fields(w, 0, 256, model.counts)
    out.append(("a symbol of an empty histogram bin", build([("w", torch.float32, (64,))], [w.getvalue()], [],
                                                            ranged=encoder.get_compressed().astype("<u4").tobytes()),
                None))
    rows = 1 << 23
    raw_size = rows * 3 + 4
    segment = brotli.compress(bytes(raw_size), quality=1)
    w = ByteWriter()
    w.raw(b"\x02\x00")
    for v in (1, 1 << 24, 0):
        w.varint(v)
    w.raw(b"\x08" + struct.pack("<ff", -1.0, 1.0))
    _model_fields(w, 0, 1, (rows,))
    w.raw(b"\x01\x00\x01")
    w.varint(raw_size)
    w.varint(len(segment))
    out.append(("Rice bomb: SINR (2**23, 1), k = 0 over 24 MiB of Brotli zeros",
                build([("h.weight", torch.float32, (rows, 1))], [w.getvalue()], [segment]), None))
    record = ByteWriter()
    count = 1 << 18
    record.varint(count)
    record.u8(0xB0)
    record.varint(0)
    record.varint(1024)
    record.raw(b"a" * 1024)
    for i in range(1, count):
        record.raw(b"\xfe\x07\x02" + bytes((65 + i % 26, 65 + (i // 26) % 26)))
    record.raw(b"\x00\x00" * count + b"\x00\x00\x00\x04" * count)
    out.append(("2**18 front-coded names of 1 KiB", _file(bytes((schema.VERSION, schema.FLAG_NAMES))
                                                          + record.getvalue() + bytes(4 * count)), None))
    w = ByteWriter()
    w.raw(b"\x11\x01")
    segments = [brotli.compress(struct.pack("<8f", float("nan"), *([1.0] * 7))),
                brotli.compress(struct.pack("<8f", *([1.0] * 8)))]
    for segment in segments:
        w.varint(len(segment))
    out.append(("low_rank factor holding NaN", build([("w", torch.float32, (8, 8))], [w.getvalue()], segments), None))
    out.append(("float16 SINR layer with range +-1e6",
                build([("h.weight", torch.float16, (64, 64))],
                      [_sinr_entry(16, 1024, 8, 0, bytes(64 * 16), 0, 10, 1280, 1280, lo=-1e6, hi=1e6)],
                      [bytes(64 * 16), _fixed_indices(64, 16, 1024)]), None))
    w = ByteWriter()
    w.u8(5)
    w.varint(1 << 20)
    out.append(("stepped entry declaring 2**20 groups", build([("w", torch.float32, (1 << 20, 2))], [w.getvalue()],
                                                              []), None))
    return out


# ----------------------------------------------------------------------------- running one file
def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


class PeakMemory:
    """Largest resident-size increase while the block runs, sampled every millisecond."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.increase = self.peak - self.base
        return False


def _same(state: dict, reference: dict) -> bool:
    return state.keys() == reference.keys() and all(
        state[k].dtype == reference[k].dtype and torch.equal(state[k], reference[k]) for k in reference)


def _finite(tensors) -> bool:
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


READERS = ("load", "decode", "decode_bare", "info")


@dataclass
class Calls:
    """Per reader: the longest call and the largest peak-memory increase of one call."""

    max_seconds: dict = field(default_factory=lambda: {r: 0.0 for r in READERS})
    max_memory: dict = field(default_factory=lambda: {r: 0 for r in READERS})

    def add(self, reader: str, seconds: float, memory: int) -> None:
        self.max_seconds[reader] = max(self.max_seconds[reader], seconds)
        self.max_memory[reader] = max(self.max_memory[reader], memory)


def check_file(path: Path, subject: Subject | None, budget: int, calls: Calls | None = None
               ) -> tuple[str, str, bool]:
    """Feed one file to every reader. Returns (outcome, detail, nonfinite): outcome is
    "rejected", "identical", "other" or "crash"; nonfinite is whether an accepted decode held
    NaN or Inf."""
    calls = calls if calls is not None else Calls()
    outcomes, nonfinite = [], False

    def call(reader, fn):
        started = time.perf_counter()
        memory = PeakMemory()
        memory.__enter__()
        try:
            return fn()
        except SINRFormatError:
            return None
        finally:
            memory.__exit__(None, None, None)
            calls.add(reader, time.perf_counter() - started, memory.increase)

    try:
        if subject is not None:
            model = subject.factory()

            def load():
                load_compressed(path, model)
                with torch.no_grad():
                    model.eval()(torch.zeros(4, 2))  # the first forward builds what decoding needs
                return model

            loaded = call("load", load)
            if loaded is None:
                outcomes.append("rejected")
            else:
                outcomes.append("ok")
                nonfinite |= not _finite(loaded.state_dict().values())
            state = call("decode", lambda: decode_state_dict(path, skeleton=subject.factory(), budget_bytes=budget))
            if state is None:
                outcomes.append("rejected")
            else:
                outcomes.append("identical" if _same(state, subject.state) else "other")
                nonfinite |= not _finite(state.values())
        state = call("decode_bare", lambda: decode_state_dict(path, budget_bytes=budget))
        if state is None:
            outcomes.append("rejected")
        else:
            outcomes.append("identical" if subject is not None and _same(state, subject.state) else "other")
            nonfinite |= not _finite(state.values())
        call("info", lambda: read_compressed(path, budget_bytes=budget))  # must only refuse or describe
    except Exception as exc:  # noqa: BLE001 - the point is to catch everything else
        return "crash", f"{type(exc).__name__}: {str(exc)[:200]}", nonfinite
    decoded = [o for o in outcomes if o != "rejected"]
    if not decoded:
        return "rejected", "", nonfinite
    if all(o in ("identical", "ok") for o in decoded) and "identical" in decoded:
        return "identical", "", nonfinite
    return "other", ",".join(outcomes), nonfinite


@dataclass
class Counts:
    files: int = 0
    rejected: int = 0
    identical: int = 0
    valid_other: int = 0
    silently_different: int = 0
    crash: int = 0
    slow: int = 0
    nonfinite: int = 0
    max_seconds: float = 0.0
    max_memory_increase: int = 0
    examples: list = field(default_factory=list)

    def add(self, outcome: str, hostile: bool, seconds: float, memory: int, detail: str, name: str,
            nonfinite: bool = False) -> None:
        self.files += 1
        self.max_seconds = max(self.max_seconds, seconds)
        self.max_memory_increase = max(self.max_memory_increase, memory)
        if outcome == "other":
            outcome = "valid_other" if hostile else "silently_different"
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.nonfinite += nonfinite
        if (outcome in ("crash", "silently_different") or nonfinite) and len(self.examples) < 20:
            self.examples.append({"file": name, "outcome": outcome, "detail": detail, "nonfinite": nonfinite})


_COUNTED = ("files", "rejected", "identical", "valid_other", "silently_different", "crash", "slow", "nonfinite")


def run(n_files: int, seed: int = 0, max_seconds: float = 10.0, progress: bool = False) -> dict:
    torch.set_num_threads(1)
    rng = random.Random(seed)
    results = {"mutants": {}, "by_mutation": {}, "attacks": {}}
    calls = Calls()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = [prepare(s, tmp) for s in subjects()]
        layouts = {s.name: layout(s.path.read_bytes(), None if s.names else dense_signature(s.factory()))
                   for s in prepared}
        from tqdm.auto import tqdm

        per_subject = {s.name: Counts() for s in prepared}
        per_mutation: dict[str, Counts] = {}
        for i in tqdm(range(n_files), desc="fuzz", disable=not progress, mininterval=2):
            subject = prepared[i % len(prepared)]
            if rng.random() < 0.5:
                data, hostile = mutate(subject.path.read_bytes(), rng)
                mutation = "bytes (CRC fixed)" if hostile else "bytes"
            else:
                others = [layouts[s.name] for s in prepared if s.name != subject.name]
                data, detail = mutate_structure(layouts[subject.name], others, rng)
                hostile, mutation = True, detail.split()[0]
            path = tmp / "mutant.safetensors"
            path.write_bytes(data)
            budget = 2 * skeleton_bytes(subject.factory()) + MEMORY_BOUND // 2
            started = time.perf_counter()
            with PeakMemory() as memory:
                outcome, detail, nonfinite = check_file(path, subject, budget, calls)
            seconds = time.perf_counter() - started
            for counts in (per_subject[subject.name], per_mutation.setdefault(mutation, Counts())):
                counts.add(outcome, hostile, seconds, memory.increase, detail, f"{subject.name} #{i} {mutation}",
                           nonfinite)
                counts.slow += seconds > max_seconds
        results["mutants"] = {name: vars(c) for name, c in per_subject.items()}
        results["by_mutation"] = {name: vars(c) for name, c in sorted(per_mutation.items())}
        for name, data, _ in attacks():
            path = tmp / "attack.safetensors"
            path.write_bytes(data)
            started = time.perf_counter()
            with PeakMemory() as memory:
                outcome, detail, nonfinite = check_file(path, None, MEMORY_BOUND // 2, calls)
            seconds = time.perf_counter() - started
            results["attacks"][name] = {"outcome": outcome, "detail": detail, "seconds": round(seconds, 3),
                                        "memory_increase": memory.increase, "file_bytes": len(data),
                                        "nonfinite": nonfinite}
    total = Counts()
    for c in results["mutants"].values():
        for key in _COUNTED:
            setattr(total, key, getattr(total, key) + c[key])
        total.max_seconds = max(total.max_seconds, c["max_seconds"])
        total.max_memory_increase = max(total.max_memory_increase, c["max_memory_increase"])
    results["total"] = vars(total)
    results["per_call"] = {"max_seconds": calls.max_seconds, "max_memory_increase": calls.max_memory}
    attack_values = results["attacks"].values()
    results["bounds"] = {
        "max_seconds": max_seconds, "memory_bound": MEMORY_BOUND,
        "crashes": total.crash + sum(a["outcome"] == "crash" for a in attack_values),
        "silently_different": total.silently_different,
        "nonfinite": total.nonfinite + sum(a["nonfinite"] for a in attack_values),
        "slow": total.slow + sum(a["seconds"] > max_seconds for a in attack_values),
        "max_memory_increase": max([total.max_memory_increase] + [a["memory_increase"] for a in attack_values]),
        "attacks_decoded": [n for n, a in results["attacks"].items() if a["outcome"] != "rejected"],
    }
    return results


def markdown(results: dict, files: int, seed: int) -> str:
    rows = ["# Format-2 reader fuzzing", "",
            f"Made by `python -m benchmarks.fuzz_format --files {files} --seed {seed}`. Every mutant goes to "
            f"`load_compressed` (+ one forward pass), `decode_state_dict` with and without the skeleton, and "
            f"`read_compressed` (`torch-sinr info`); structure-aware mutants are always re-sealed with a correct "
            f"CRC (the module docstring lists the mutations).", "",
            "| model | files | rejected | identical | valid other file (hostile, CRC fixed) | silently different "
            "| crash | over 10 s | non-finite accepted | max s | max memory increase (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, c):
        return (f"| {name} | {c['files']} | {c['rejected']} | {c['identical']} | {c['valid_other']} | "
                f"{c['silently_different']} | {c['crash']} | {c['slow']} | {c['nonfinite']} | {c['max_seconds']:.2f} | "
                f"{c['max_memory_increase'] / 2**20:.1f} |")

    for name, c in [*results["mutants"].items(), ("**all**", results["total"])]:
        rows.append(row(name, c))
    rows += ["", "By mutation (all bases):", "", rows[4].replace("| model |", "| mutation |", 1), rows[5]]
    for name, c in results["by_mutation"].items():
        rows.append(row(name, c))
    per_call = results["per_call"]
    rows += ["", "Per reader call, the longest and the largest peak resident-size increase (every mutant and attack):",
             "", "| reader | max s | max memory increase (MiB) |", "|---|---|---|"]
    for reader in READERS:
        rows.append(f"| {reader} | {per_call['max_seconds'][reader]:.3f} | "
                    f"{per_call['max_memory_increase'][reader] / 2**20:.1f} |")
    rows += ["", "Hand-made attacks (each a well-formed file as far as the CRC goes):", "",
             "| attack | file bytes | outcome | seconds | memory increase (MiB) |", "|---|---|---|---|---|"]
    for name, a in results["attacks"].items():
        rows.append(f"| {name} | {a['file_bytes']} | {a['outcome']} {a['detail']} | {a['seconds']:.3f} | "
                    f"{a['memory_increase'] / 2**20:.1f} |")
    b = results["bounds"]
    rows += ["", f"Bounds: crashes {b['crashes']}, silently different {b['silently_different']}, accepted with "
                 f"non-finite values {b['nonfinite']}, over {b['max_seconds']:.0f} s {b['slow']}, largest memory "
                 f"increase {b['max_memory_increase'] / 2**20:.1f} MiB (bound {b['memory_bound'] / 2**20:.0f} MiB plus "
                 f"the skeleton). Attacks that decoded: {b['attacks_decoded'] or 'none'}."]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_format", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--files", type=int, default=12000,
                        help="mutated files to check, spread over the base files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mutations")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="a file whose decoding takes longer counts as slow (a failure)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder fuzz_format.{json,md} go to")
    args = parser.parse_args(argv)
    results = run(args.files, args.seed, args.max_seconds, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from benchmarks._common import machine_info

    document = {"name": "fuzz_format", "description": __doc__.strip().splitlines()[0],
                "protocol": {"files": args.files, "seed": args.seed, "machine": machine_info()}, "results": results}
    (args.out / "fuzz_format.json").write_text(json.dumps(document, indent=1))
    text = markdown(results, args.files, args.seed)
    (args.out / "fuzz_format.md").write_text(text)
    print(text)
    b = results["bounds"]
    return 0 if not (b["crashes"] or b["silently_different"] or b["slow"] or b["nonfinite"]) else 1


if __name__ == "__main__":
    sys.exit(main())
