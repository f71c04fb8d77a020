"""Fuzz the format-2 reader: mutated and hand-made hostile files must be refused or decode
exactly, within bounded time and memory.

``python -m benchmarks.fuzz_format --files 10000`` mutates the files of several compressed models
and feeds each mutant to ``load_compressed`` (into a fresh skeleton, then one forward pass, so
lazily built dictionaries count too) and to ``decode_state_dict`` (skeleton given, and for
self-describing files also without one, under an explicit budget). Each file lands in one
category:

- ``rejected``: every reader raised ``SINRFormatError``;
- ``identical``: it decodes to exactly the original weights (e.g. a flip in the header's padding);
- ``valid-other``: a *hostile* mutant (CRC recomputed after the mutation, so it is a well-formed
  file with other content) decoded to other weights. That is what a valid file may do;
  it is counted apart from
- ``silently-different``: a *corrupted* mutant (CRC left as it was) decoded to other weights.
  Must be 0;
- ``crash``: any exception other than ``SINRFormatError``. Must be 0;
- ``slow``: over ``--max-seconds`` (10). Must be 0.

Peak memory is sampled from /proc/self/statm while each file decodes; the largest increase over
the resident size before it is reported against the bound (256 MiB plus the skeleton's size).
Results: ``benchmarks/results/fuzz_format.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
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
from torch_sinr.format.codec.wire import ByteWriter
from torch_sinr.format import container, schema
from torch_sinr.format.model_io import dense_signature
from torch_sinr.format import decode_state_dict, load_compressed, save_compressed

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
    ]


def prepare(subject: Subject, directory: Path) -> Subject:
    model = subject.factory()
    model.eval()
    compress_model(model, subject.config)
    subject.path = directory / f"{subject.name}.safetensors"
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


def attacks() -> list[tuple[str, bytes, object]]:
    """(name, file bytes, skeleton factory or None): files a hostile writer could make, each
    well formed as far as the CRC goes."""
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
    long_name = [("n" * (50 << 20), torch.float32, (64,))]
    out[[n for n, _, _ in out].index("50 MB name")] = ("50 MB name", build(long_name, [_raw_entry(f32, 0, 256)],
                                                                           [bytes(256)]), None)
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


def check_file(path: Path, subject: Subject | None, budget: int) -> tuple[str, str]:
    """Feed one file to every reader. Returns (outcome, detail): outcome is "rejected",
    "identical", "other" or "crash"."""
    outcomes = []
    try:
        if subject is not None:
            model = subject.factory()
            try:
                load_compressed(path, model)
                with torch.no_grad():
                    model.eval()(torch.zeros(4, 2))  # the first forward builds what decoding needs
                outcomes.append("ok")
            except SINRFormatError:
                outcomes.append("rejected")
            try:
                state = decode_state_dict(path, skeleton=subject.factory(), budget_bytes=budget)
                outcomes.append("identical" if _same(state, subject.state) else "other")
            except SINRFormatError:
                outcomes.append("rejected")
        try:
            state = decode_state_dict(path, budget_bytes=budget)
            outcomes.append("identical" if subject is not None and _same(state, subject.state) else "other")
        except SINRFormatError:
            outcomes.append("rejected")
    except Exception as exc:  # noqa: BLE001 - the point is to catch everything else
        return "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    decoded = [o for o in outcomes if o != "rejected"]
    if not decoded:
        return "rejected", ""
    if all(o in ("identical", "ok") for o in decoded) and "identical" in decoded:
        return "identical", ""
    return "other", ",".join(outcomes)


@dataclass
class Counts:
    files: int = 0
    rejected: int = 0
    identical: int = 0
    valid_other: int = 0
    silently_different: int = 0
    crash: int = 0
    slow: int = 0
    max_seconds: float = 0.0
    max_memory_increase: int = 0
    examples: list = field(default_factory=list)

    def add(self, outcome: str, hostile: bool, seconds: float, memory: int, detail: str, name: str) -> None:
        self.files += 1
        self.max_seconds = max(self.max_seconds, seconds)
        self.max_memory_increase = max(self.max_memory_increase, memory)
        if outcome == "other":
            outcome = "valid_other" if hostile else "silently_different"
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome in ("crash", "silently_different") and len(self.examples) < 20:
            self.examples.append({"file": name, "outcome": outcome, "detail": detail})


def run(n_files: int, seed: int = 0, max_seconds: float = 10.0, progress: bool = False) -> dict:
    torch.set_num_threads(1)
    rng = random.Random(seed)
    results = {"mutants": {}, "attacks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = [prepare(s, tmp) for s in subjects()]
        from tqdm.auto import tqdm

        per_subject = {s.name: Counts() for s in prepared}
        for i in tqdm(range(n_files), desc="fuzz", disable=not progress, mininterval=2):
            subject = prepared[i % len(prepared)]
            data, hostile = mutate(subject.path.read_bytes(), rng)
            path = tmp / "mutant.safetensors"
            path.write_bytes(data)
            budget = 2 * skeleton_bytes(subject.factory()) + MEMORY_BOUND // 2
            started = time.perf_counter()
            with PeakMemory() as memory:
                outcome, detail = check_file(path, subject, budget)
            seconds = time.perf_counter() - started
            counts = per_subject[subject.name]
            counts.add(outcome, hostile, seconds, memory.increase, detail, f"{subject.name} #{i}")
            counts.slow += seconds > max_seconds
        results["mutants"] = {name: vars(c) for name, c in per_subject.items()}
        for name, data, _ in attacks():
            path = tmp / "attack.safetensors"
            path.write_bytes(data)
            started = time.perf_counter()
            with PeakMemory() as memory:
                outcome, detail = check_file(path, None, MEMORY_BOUND // 2)
            seconds = time.perf_counter() - started
            results["attacks"][name] = {"outcome": outcome, "detail": detail, "seconds": round(seconds, 3),
                                        "memory_increase": memory.increase, "file_bytes": len(data)}
    total = Counts()
    for c in results["mutants"].values():
        for key in ("files", "rejected", "identical", "valid_other", "silently_different", "crash", "slow"):
            setattr(total, key, getattr(total, key) + c[key])
        total.max_seconds = max(total.max_seconds, c["max_seconds"])
        total.max_memory_increase = max(total.max_memory_increase, c["max_memory_increase"])
    results["total"] = vars(total)
    attack_values = results["attacks"].values()
    results["bounds"] = {
        "max_seconds": max_seconds, "memory_bound": MEMORY_BOUND,
        "crashes": total.crash + sum(a["outcome"] == "crash" for a in attack_values),
        "silently_different": total.silently_different,
        "slow": total.slow + sum(a["seconds"] > max_seconds for a in attack_values),
        "max_memory_increase": max([total.max_memory_increase] + [a["memory_increase"] for a in attack_values]),
        "attacks_decoded": [n for n, a in results["attacks"].items() if a["outcome"] != "rejected"],
    }
    return results


def markdown(results: dict, files: int, seed: int) -> str:
    rows = ["# Format-2 reader fuzzing", "",
            f"Made by `python -m benchmarks.fuzz_format --files {files} --seed {seed}`.", "",
            "| model | files | rejected | identical | valid other file (hostile, CRC fixed) | silently different "
            "| crash | over 10 s | max s | max memory increase (MiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in [*results["mutants"].items(), ("**all**", results["total"])]:
        rows.append(f"| {name} | {c['files']} | {c['rejected']} | {c['identical']} | {c['valid_other']} | "
                    f"{c['silently_different']} | {c['crash']} | {c['slow']} | {c['max_seconds']:.2f} | "
                    f"{c['max_memory_increase'] / 2**20:.1f} |")
    rows += ["", "Hand-made attacks (each a well-formed file as far as the CRC goes):", "",
             "| attack | file bytes | outcome | seconds | memory increase (MiB) |", "|---|---|---|---|---|"]
    for name, a in results["attacks"].items():
        rows.append(f"| {name} | {a['file_bytes']} | {a['outcome']} {a['detail']} | {a['seconds']:.3f} | "
                    f"{a['memory_increase'] / 2**20:.1f} |")
    b = results["bounds"]
    rows += ["", f"Bounds: crashes {b['crashes']}, silently different {b['silently_different']}, over "
                 f"{b['max_seconds']:.0f} s {b['slow']}, largest memory increase {b['max_memory_increase'] / 2**20:.1f} MiB "
                 f"(bound {b['memory_bound'] / 2**20:.0f} MiB plus the skeleton). Attacks that decoded: "
                 f"{b['attacks_decoded'] or 'none'}."]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_format", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--files", type=int, default=10000,
                        help="mutated files to check, spread over the compressed models")
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
    return 0 if not (b["crashes"] or b["silently_different"] or b["slow"]) else 1


if __name__ == "__main__":
    sys.exit(main())
