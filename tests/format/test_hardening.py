"""Reader hardening, round 2 (issue 23): every hostile file below is written with the project's
own record writer (``ByteWriter``, ``schema.write_signature``, ``fuzz_format.build``) and must be
refused with ``SINRFormatError`` (or, for ``read_compressed``, described without decoding) within
1 s and 64 MiB of peak resident-size increase."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import brotli
import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import fuzz_format
from tests.format.records import assert_refused_fast, measured, write_payload, zigzag
from tests.model_checks import assert_unchanged, snapshot
from tests.tiny_models import fast_config
from torch_sinr import SINRFormatError, compress_model
from torch_sinr.cli import main as cli_main
from torch_sinr.format import container, schema
from torch_sinr.format import decode_state_dict, load_compressed, read_compressed, save_compressed
from torch_sinr.format.codec import indices as index_codec
from torch_sinr.format.codec.bitpack import pack_uint
from torch_sinr.format.codec.rangecoder import HistogramModel
from torch_sinr.format.codec.wire import ByteWriter

pytestmark = pytest.mark.usefixtures("single_thread")
F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """``x`` rounded to float32 (the record stores float32-exact values only)."""
    return F32.unpack(F32.pack(x))[0]
RANGE, PACKED = 3, 0


def _file(tmp_path, signature, entries, segments=(), ranged=b"", name="h.safetensors"):
    path = tmp_path / name
    path.write_bytes(fuzz_format.build(signature, entries, list(segments), ranged))
    return path


def _model(w: ByteWriter, first: int, span: int, counts) -> None:
    w.u8(RANGE)
    w.varint(first)
    w.varint(span - 1)
    w.varint(len(counts))
    for c in counts:
        w.varint(c)


def _uniform_ranged(bits: int, counts, lo=-1.0, hi=1.0, first=0, span=None) -> bytes:
    w = ByteWriter()
    w.u8(1)
    w.u8(bits)
    w.f32(lo)
    w.f32(hi)
    _model(w, first, span if span is not None else 1 << bits, counts)
    return w.getvalue()


def _integers_ranged(bits: int, counts) -> bytes:
    w = ByteWriter()
    w.u8(4)
    w.varint(zigzag(0))
    w.u8(bits)
    _model(w, 0, 1 << bits, counts)
    return w.getvalue()


def _stepped_ranged(rows: int, bits: int, counts) -> bytes:
    w = ByteWriter()
    w.u8(5)
    w.varint(1)
    w.varint(rows)
    w.f32(0.5)
    w.varint(zigzag(0))
    w.u8(bits)
    _model(w, 0, 1 << bits, counts)
    return w.getvalue()


def _leaky_range_data(symbols: np.ndarray, model: HistogramModel) -> bytes:
    """What a hostile writer codes: ``symbols`` under the model's coder tables, which give every
    symbol of the range (those of empty bins too) a non-zero probability."""
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(np.ascontiguousarray(symbols - model.first, dtype=np.int32), model.entropy_model())
    return encoder.get_compressed().astype("<u4").tobytes()


def _cli_info(path) -> int:
    return cli_main(["info", str(path)])


# ----------------------------------------------------------------------------- 1. range-coder models
def test_a_model_of_2_39_plus_2_39_never_reaches_the_coder(tmp_path, capsys):
    """The 121-byte file whose two-symbol model counts 2**39 + 2**39: the coder would have tried
    to allocate 4 TiB and aborted the process. Decoding refuses it by the budget, even a budget
    of 2**62 bytes refuses it before constriction is called, and ``info`` decodes nothing."""
    path = _file(tmp_path, [("w", torch.float32, (1 << 20, 1 << 20))],
                 [_uniform_ranged(2, (1 << 39, 1 << 39), span=2)], ranged=bytes(8))
    assert path.stat().st_size < 160
    assert_refused_fast(lambda: decode_state_dict(path), "budget")
    assert_refused_fast(lambda: decode_state_dict(path, budget_bytes=1 << 62), "at most 2147483648 at a time")


def test_info_of_the_2_39_plus_2_39_file_decodes_nothing(tmp_path, capsys):
    path = _file(tmp_path, [("w", torch.float32, (1 << 20, 1 << 20))],
                 [_uniform_ranged(2, (1 << 39, 1 << 39), span=2)], ranged=bytes(8))
    summary, seconds, memory = measured(lambda: read_compressed(path))
    assert summary.tensors[0]["shape"] == [1 << 20, 1 << 20] and seconds < 1 and memory < 64 << 20
    assert _cli_info(path) == 0 and "uniform" in capsys.readouterr().out
    # the command line itself, in a process of its own: it exits normally (no SIGABRT)
    done = subprocess.run([sys.executable, "-m", "torch_sinr.cli", "info", str(path)], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-400:]


def test_a_symbol_of_an_empty_bin_is_refused(tmp_path):
    """A (64,) tensor whose 16-bin model says every symbol is in bin 0, and data coding symbol 254
    (the coder gives empty bins a small probability): the decoded histogram is not the model's."""
    model = HistogramModel(0, 255, (64,) + (0,) * 15)
    ranged = _leaky_range_data(np.array([0] * 63 + [254]), model)
    path = _file(tmp_path, [("w", torch.float32, (64,))], [_uniform_ranged(8, model.counts)], ranged=ranged)
    assert path.stat().st_size < 160
    assert_refused_fast(lambda: decode_state_dict(path), "histogram")


def test_info_of_the_empty_bin_file_has_no_nan(tmp_path):
    """``info`` attributes the bytes from the model alone: no NaN, no crash."""
    model = HistogramModel(0, 255, (64,) + (0,) * 15)
    ranged = _leaky_range_data(np.array([0] * 63 + [254]), model)
    path = _file(tmp_path, [("w", torch.float32, (64,))], [_uniform_ranged(8, model.counts)], ranged=ranged)
    summary = read_compressed(path)
    assert np.isfinite(summary.tensors[0]["bytes"]) and summary.tensors[0]["segment_bytes"] == len(ranged)


def _range_coded_file(tmp_path):
    """A real file of a small MLP whose 8-bit values are range-coded."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    compress_model(model, fast_config(value_bits=8, symbol_coding="range"))
    path = tmp_path / "m.safetensors"
    save_compressed(model, path)
    return path


def test_histogram_moved_between_bins_with_the_sum_kept_is_refused(tmp_path):
    """A real range-coded file whose model counts are moved between bins (sum kept), re-sealed."""
    path = _range_coded_file(tmp_path)
    parsed = container.parse_payload(container.read_file(path).payload)
    entry = next(e for e in parsed.entries if e.kind == "sinr" and e.params.values.model.span > 1
                 and len(e.params.values.model.counts) > 1)
    counts = list(entry.params.values.model.counts)
    i = next(i for i, c in enumerate(counts) if c)
    j = (i + 1) % len(counts)
    moved = counts.copy()
    moved[i] -= 1
    moved[j] += 1
    old, new = ByteWriter(), ByteWriter()
    for w, c in ((old, counts), (new, moved)):
        for value in c:
            w.varint(value)
    payload = container.read_file(path).payload[:-4]
    if len(old.getvalue()) != len(new.getvalue()) or payload.count(old.getvalue()) != 1:
        pytest.skip("the edited counts do not have the same varint length")
    edited = write_payload(tmp_path, payload.replace(old.getvalue(), new.getvalue()), "moved.safetensors")
    assert_refused_fast(lambda: decode_state_dict(edited), "histogram|corrupt")


# ----------------------------------------------------------------------------- 7. canonical bytes
def test_trailing_words_in_the_range_coded_segment_are_refused(tmp_path):
    path = _range_coded_file(tmp_path)
    payload = container.read_file(path).payload
    assert len(container.parse_payload(payload).ranged) > 0
    assert decode_state_dict(path)  # canonical: accepted
    for extra in (bytes(4), b"\x01\x02\x03\x04", bytes(8)):
        hostile = write_payload(tmp_path, payload[:-4] + extra, "t.safetensors")
        assert_refused_fast(lambda: decode_state_dict(hostile), "trailing or non-canonical")
    # and one word short: the coder reads zeros past the end, the bytes are not the encoder's
    hostile = write_payload(tmp_path, payload[:-8], "s.safetensors")
    with pytest.raises(SINRFormatError):
        decode_state_dict(hostile)


def _uniform_packed(bits: int, count: int, segment: bytes) -> tuple[list, list[bytes], list[bytes]]:
    w = ByteWriter()
    w.u8(1)
    w.u8(bits)
    w.f32(-1.0)
    w.f32(1.0)
    w.u8(PACKED)
    w.varint(len(segment))
    return [("w", torch.float32, (count,))], [w.getvalue()], [segment]


def test_padding_bits_after_packed_values_must_be_zero(tmp_path):
    """Three 10-bit values take 30 of 32 bits: the writer's 2 padding bits are zero, and a file
    setting one (bytes the decoder would ignore) is refused."""
    segment = pack_uint(np.array([1, 2, 3]), 10)
    assert decode_state_dict(_file(tmp_path, *_uniform_packed(10, 3, segment)))["w"].shape == (3,)
    hostile = segment[:-1] + bytes([segment[-1] | 1])
    assert_refused_fast(lambda: decode_state_dict(_file(tmp_path, *_uniform_packed(10, 3, hostile))), "padding")


def _sinr_rice(raw: bytes, k: int, rows=64, s=4, k2=64) -> tuple[list, list[bytes], list[bytes]]:
    """A row-mode SINR entry (rows, 64), values one symbol, indices Rice coded and stored raw."""
    w = ByteWriter()
    w.u8(2)
    w.u8(0)
    w.varint(s)
    w.varint(k2)
    w.varint(0)
    w.u8(8)
    w.f32(-1.0)
    w.f32(1.0)
    _model(w, 7, 1, (rows * s,))
    w.u8(1)  # rice
    w.varint(k)
    w.u8(0)  # stored
    w.varint(len(raw))
    w.varint(len(raw))
    return [("h.weight", torch.float32, (rows, 64))], [w.getvalue()], [raw]


def test_data_after_the_last_rice_code_is_refused(tmp_path):
    idx = np.tile(np.array([0, 16, 32, 48]), (64, 1))
    coding, k, raw = index_codec.encode_indices(idx, 64, "rice")
    assert coding == "rice"
    assert torch.isfinite(decode_state_dict(_file(tmp_path, *_sinr_rice(raw, k)))["h.weight"]).all()
    n_unary = int.from_bytes(raw[:4], "little")
    for extra in (b"\x00", b"\xff"):
        hostile = (n_unary + 1).to_bytes(4, "little") + raw[4:4 + n_unary] + extra + raw[4 + n_unary:]
        assert_refused_fast(lambda: decode_state_dict(_file(tmp_path, *_sinr_rice(hostile, k))),
                            "'h.weight' indices: rice index stream has data after its last code")


# ----------------------------------------------------------------------------- 2. info
@pytest.mark.parametrize("kind", ["uniform", "integers", "stepped"])
def test_info_of_a_huge_declared_tensor_decodes_nothing(tmp_path, kind, capsys):
    """A (2**20, 2**20) tensor in a file of about a hundred bytes: ``info`` reports it from the
    record (no MemoryError, no 4 TiB allocation), and decoding is refused by the budget."""
    n = 1 << 40
    entry = {"uniform": _uniform_ranged(2, (n // 2, n // 2), span=2), "integers": _integers_ranged(1, (n // 2, n // 2)),
             "stepped": _stepped_ranged(1 << 20, 1, (n // 2, n // 2))}[kind]
    path = _file(tmp_path, [("w", torch.float32, (1 << 20, 1 << 20))], [entry], ranged=bytes(8))
    summary, seconds, memory = measured(lambda: read_compressed(path))
    assert not isinstance(summary, Exception), summary
    assert summary.tensors[0]["kind"] == kind and seconds < 1 and memory < 64 << 20
    print(f"info in {seconds * 1000:.0f} ms, peak RSS +{memory / 2**20:.1f} MiB")
    assert _cli_info(path) == 0
    assert_refused_fast(lambda: decode_state_dict(path), "budget")


def test_info_of_a_one_symbol_16384_squared_tensor(tmp_path):
    """The 118-byte file declaring a (16384, 16384) uniform tensor with a one-symbol model took
    2 GiB in ``info``: now a parse."""
    path = _file(tmp_path, [("w", torch.float32, (16384, 16384))], [_uniform_ranged(8, (16384 * 16384,), span=1)])
    summary, seconds, memory = measured(lambda: read_compressed(path))
    assert summary.tensors[0]["segment_bytes"] == 0 and seconds < 1 and memory < 64 << 20
    assert_refused_fast(lambda: decode_state_dict(path), "budget")


def test_info_attributes_bytes_as_the_writer_did(tmp_path):
    """``info``'s shares of the range-coded segment, from the models' counts, are the writer's,
    from the symbols."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    compress_model(model, fast_config(value_bits=8, symbol_coding="range"))
    report = save_compressed(model, tmp_path / "m.safetensors")
    summary = read_compressed(tmp_path / "m.safetensors")
    for t in summary.tensors:
        written = sum(v for k, v in report.entries[t["name"]].items() if k != "index_coding")
        assert t["bytes"] == pytest.approx(written, rel=1e-9, abs=1e-9), t["name"]


def test_info_is_under_the_budget(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 3))
    compress_model(model, fast_config())
    path = tmp_path / "m.safetensors"
    save_compressed(model, path)
    assert_refused_fast(lambda: read_compressed(path, budget_bytes=7), "budget")
    assert read_compressed(path).tensors


# ----------------------------------------------------------------------------- 3. expansions
def _rice_bomb(rows: int) -> tuple[list, bytes, bytes]:
    """SINR (rows, 1), k2 = 2**24, Rice k = 0 over Brotli-compressed zeros of the largest size the
    record allows: a few hundred bytes that expand ~72x while decoding."""
    k2 = 1 << 24
    raw_size = (rows * 24 + 7) // 8 + 4
    segment = brotli.compress(bytes(raw_size), quality=1)
    w = ByteWriter()
    w.u8(2)  # sinr
    w.u8(0)  # row mode: k1 = 1
    w.varint(1)  # s
    w.varint(k2)
    w.varint(0)  # seed
    w.u8(8)
    w.f32(-1.0)
    w.f32(1.0)
    _model(w, 0, 1, (rows,))  # one-symbol values: no range-coded bytes
    w.u8(1)  # rice
    w.varint(0)
    w.u8(1)  # Brotli
    w.varint(raw_size)
    w.varint(len(segment))
    return [("h.weight", torch.float32, (rows, 1))], w.getvalue(), segment


def test_rice_expansion_is_counted_in_the_budget(tmp_path):
    signature, entry, segment = _rice_bomb(1 << 23)
    path = _file(tmp_path, signature, [entry], [segment])
    assert path.stat().st_size < 64 << 10
    assert_refused_fast(lambda: decode_state_dict(path, budget_bytes=300_000_000), "budget")
    assert_refused_fast(lambda: decode_state_dict(path), "budget")


def test_expansions_are_in_the_decode_costs():
    """Rice: 72 bytes per stored byte of unary bits; bit mask: a byte per bit; packed symbols:
    9 bytes per bit."""
    assert index_codec.decode_cost("rice", 0, 1 << 20, 1, 1, 2) >= 72 << 20
    assert index_codec.decode_cost("bitmask", 0, 1 << 17, 1024, 1, 1 << 10) >= 1 << 20
    from torch_sinr.format import symbols as sym

    assert sym.decode_cost(sym.SymbolParams(sym.PACKED), 16, 1000) >= 1000 * 16 * 9
    assert sym.decode_cost(sym.SymbolParams(sym.BROTLI_PACKED), 16, 1000) >= 1000 * (2 + 16 * 9)


# ----------------------------------------------------------------------------- 4. format 1
@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    compress_model(model, fast_config())
    path = tmp_path_factory.mktemp("v1") / "v1.safetensors"
    save_compressed(model, path, format_version=1)
    return path


def _v1_edit(src, dst, edit):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta, payload = dict(f.metadata()), f.get_tensor("payload")
    layout = json.loads(meta["layout"])
    edit(layout)
    meta["layout"] = json.dumps(layout)
    save_file({"payload": payload}, str(dst), metadata=meta)
    return dst


def test_format1_reading_obeys_the_budget(v1_file, tmp_path):
    """One declared 16384**2 layer (s = 1, k2 = 1) in a small format-1 file: 3.3 GiB and 10.6 s
    before; now refused by the budget (and by the default one) before anything is decoded."""

    def edit(layout):
        layer = layout["sinr"][0]
        layer.update(shape=[16384, 16384], mode="row", s=1, k2=1, value_bits=8, lo=-1.0, hi=1.0,
                     values_stream=[0, 1, 16384], index_coding=["fixed", 1], indices_stream=[0, 1, 2048])
        layer.pop("bias", None)
        layer.pop("bias_stream", None)

    path = _v1_edit(v1_file, tmp_path / "big.safetensors", edit)
    assert_refused_fast(lambda: decode_state_dict(path, budget_bytes=2**20), "budget")
    assert_refused_fast(lambda: decode_state_dict(path), "budget")
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    before = snapshot(model)
    assert_refused_fast(lambda: load_compressed(path, model), "budget|does not match|shape")
    assert_unchanged(model, before)
    assert decode_state_dict(v1_file, budget_bytes=10 << 20)  # the real file fits a small budget


@pytest.mark.parametrize("lo,hi", [(-1.7e308, 1.7e308), (-1.0, 3.5e38), (1.0, -1.0)])
def test_format1_value_ranges_are_finite_float32(v1_file, tmp_path, lo, hi):
    def edit(layout):
        layout["sinr"][0].update(lo=lo, hi=hi)

    path = _v1_edit(v1_file, tmp_path / "range.safetensors", edit)
    assert_refused_fast(lambda: decode_state_dict(path), "value range")


# ----------------------------------------------------------------------------- 5. finiteness
def _sinr_packed(rows: int, cols: int, s: int, k2: int, bits: int, lo: float, hi: float, symbols: np.ndarray,
                 dtype=torch.float32) -> tuple[list, list[bytes], list[bytes]]:
    """A row-mode SINR entry with packed values and fixed-width indices 0..s-1 in every row."""
    values = pack_uint(symbols, bits)
    indices = pack_uint(np.tile(np.arange(s), (rows, 1)), index_codec.index_width(k2))
    w = ByteWriter()
    w.u8(2)
    w.u8(0)
    w.varint(s)
    w.varint(k2)
    w.varint(0)
    w.u8(bits)
    w.f32(lo)
    w.f32(hi)
    w.u8(PACKED)
    w.varint(len(values))
    w.u8(0)  # fixed
    w.varint(index_codec.index_width(k2))
    w.u8(0)  # stored
    w.varint(len(indices))
    w.varint(len(indices))
    return [("h.weight", dtype, (rows, cols))], [w.getvalue()], [values, indices]


def test_a_float16_layer_range_is_checked_against_float16(tmp_path):
    """A range of +-1e6 in a float16 layer decoded to 10,204 Inf; float32 could hold it."""
    signature, entries, segments = _sinr_packed(64, 64, 16, 64, 8, -1e6, 1e6, np.full(64 * 16, 200),
                                                dtype=torch.float16)
    path = _file(tmp_path, signature, entries, segments)
    assert_refused_fast(lambda: decode_state_dict(path), "representable in torch.float16")


def test_the_dense_weight_a_x_is_checked_finite(tmp_path):
    """Values within float16 whose sums A x are not: refused, whatever the layer's dtype is
    told; near FLT_MAX, the same in float32."""
    for dtype, lo, hi in ((torch.float16, 60000.0, 65000.0), (torch.float32, f32(3.0e38), f32(3.4e38))):
        signature, entries, segments = _sinr_packed(64, 64, 64, 64, 8, lo, hi, np.full(64 * 64, 255), dtype=dtype)
        path = _file(tmp_path, signature, entries, segments)
        assert_refused_fast(lambda: decode_state_dict(path), "A x")
    # the same codes at a sane range decode
    signature, entries, segments = _sinr_packed(64, 64, 64, 64, 8, -1.0, 1.0, np.full(64 * 64, 255),
                                                dtype=torch.float16)
    state = decode_state_dict(_file(tmp_path, signature, entries, segments))
    assert torch.isfinite(state["h.weight"]).all()


def test_the_atom_bound_holds_at_the_generators_extremes():
    """``ATOM_BOUND`` (the A x check skips computing A x under it) bounds every value the
    dictionary generator can give, at both ends of its uniform input."""
    from torch_sinr.core.dictionary import _inverse_normal_cdf
    from torch_sinr.format.kinds import ATOM_BOUND

    ints = torch.tensor([0.0, 1.0, 2.0**53 - 2, 2.0**53 - 1], dtype=torch.float64)
    extremes = _inverse_normal_cdf((ints + 0.5) * 2.0**-53)
    assert extremes.abs().max() <= ATOM_BOUND and extremes.abs().max() > 8.7


def _low_rank(left: torch.Tensor, right: torch.Tensor) -> tuple[bytes, list[bytes]]:
    w = ByteWriter()
    w.u8(17)
    w.varint(left.shape[1])
    segments = []
    for factor in (left, right):
        segment = brotli.compress(factor.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes())
        w.varint(len(segment))
        segments.append(segment)
    return w.getvalue(), segments


@pytest.mark.parametrize("case", ["nan factor", "inf factor", "overflowing product"])
def test_low_rank_entries_are_checked_finite(tmp_path, case):
    """The 123-byte low_rank file with one NaN factor decoded to 64 NaNs."""
    left, right = torch.ones(8, 1), torch.ones(1, 8)
    if case == "nan factor":
        left[3, 0] = float("nan")
    elif case == "inf factor":
        right[0, 2] = float("inf")
    else:
        left.fill_(3e38)
        right.fill_(3e38)
    entry, segments = _low_rank(left, right)
    path = _file(tmp_path, [("w", torch.float32, (8, 8))], [entry], segments)
    assert_refused_fast(lambda: decode_state_dict(path), "NaN or Inf")


def _pruned(rows, cols, s, bits, lo, hi, symbols, dtype=torch.float32):
    values = pack_uint(symbols, bits)
    idx = np.tile(np.arange(s), (rows, 1))
    raw = pack_uint(idx, index_codec.index_width(cols))
    segment = brotli.compress(raw)
    w = ByteWriter()
    w.u8(16)
    w.u8(bits)
    w.f32(lo)
    w.f32(hi)
    w.varint(s)
    w.u8(PACKED)
    w.varint(len(values))
    w.u8(0)
    w.varint(index_codec.index_width(cols))
    w.varint(len(raw))
    w.varint(len(segment))
    return [("w", dtype, (rows, cols))], [w.getvalue()], [values, segment]


def test_pruned_entries_are_checked_against_their_dtype(tmp_path):
    signature, entries, segments = _pruned(8, 8, 2, 8, -1e6, 1e6, np.full(16, 255), dtype=torch.float16)
    path = _file(tmp_path, signature, entries, segments)
    assert_refused_fast(lambda: decode_state_dict(path), "representable in torch.float16")
    signature, entries, segments = _pruned(8, 8, 2, 8, -1.0, 1.0, np.full(16, 255))
    assert torch.equal(decode_state_dict(_file(tmp_path, signature, entries, segments))["w"][:, :2], torch.ones(8, 2))


# ----------------------------------------------------------------------------- 6. record parsing
def _name_bomb(count: int, length: int = 1024) -> bytes:
    """``count`` distinct names of ``length`` bytes, each after the first in 5 record bytes (front
    coding: all but 2 bytes shared with the previous name), as raw float32 scalars."""
    record = ByteWriter()
    record.varint(count)
    record.u8(0xB0)  # settings: auto, auto, quality 11
    record.varint(0)
    record.varint(length)
    record.raw(b"a" * length)
    for i in range(1, count):
        record.varint(length - 2)
        record.varint(2)
        record.raw(bytes((65 + i % 26, 65 + (i // 26) % 26)) if i < 26 * 26 else bytes((97, 98)))
    for _ in range(count):
        record.u8(schema.DTYPE_IDS[torch.float32])
        record.varint(0)
    for _ in range(count):
        record.raw(bytes((0, 0, 0, 4)))  # raw, float32, stored, 4 bytes
    body = bytes((schema.VERSION, schema.FLAG_NAMES)) + record.getvalue() + bytes(4 * count)
    return body


def test_front_coded_name_bombs_are_refused_fast(tmp_path):
    """2**18 names of 1 KiB from 5 bytes each (a 2.6 MB file): 10.7 s and 1 GiB before."""
    path = write_payload(tmp_path, _name_bomb(1 << 18))
    assert path.stat().st_size > 2_000_000
    assert_refused_fast(lambda: decode_state_dict(path), "names expand")
    assert_refused_fast(lambda: read_compressed(path), "names expand")
    assert_refused_fast(lambda: decode_state_dict(path, budget_bytes=7), "budget")
    # the same names at a sane length decode
    ok = write_payload(tmp_path, _name_bomb(600, length=8), "ok.safetensors")
    assert len(decode_state_dict(ok)) == 600


def test_an_entry_count_is_bounded_by_the_record_and_the_budget(tmp_path):
    path = write_payload(tmp_path, _name_bomb(2000, length=8))
    assert_refused_fast(lambda: decode_state_dict(path, budget_bytes=1000 * schema.ENTRY_COST), "budget")
    data = bytearray(_name_bomb(2000, length=8))
    data[2:4] = bytes((0xFF, 0x7F))  # 16383 entries declared, the record holds 2000
    assert_refused_fast(lambda: decode_state_dict(write_payload(tmp_path, bytes(data), "c.safetensors")), "cannot fit")


def _stepped_groups(declared: int, groups: int) -> bytes:
    """A stepped entry declaring ``declared`` groups and holding ``groups`` of one row each."""
    w = ByteWriter()
    w.u8(5)
    w.varint(declared)
    for _ in range(groups):
        w.varint(1)
        w.f32(0.5)
        w.varint(0)
        w.u8(1)
        w.u8(PACKED)
        w.varint(1)
    return w.getvalue()


@pytest.mark.parametrize("declared,held", [(1 << 13, 1 << 13), (1 << 20, 16)])
def test_huge_group_counts_are_refused_fast(tmp_path, declared, held):
    """2**13 groups of one row each (over the 4096 a file may have), and 2**20 declared in a
    record that holds 16 (a 12.6 MB file with 2**20 groups took 20 s a call): refused before
    the groups are parsed."""
    path = _file(tmp_path, [("w", torch.float32, (1 << 20, 2))], [_stepped_groups(declared, held)], [b"\x40"] * held)
    assert_refused_fast(lambda: decode_state_dict(path), "group count")
    assert_refused_fast(lambda: read_compressed(path), "group count")


# ----------------------------------------------------------------------------- the fuzzer's structure
def test_the_fuzzer_takes_every_base_apart_and_rebuilds_it_byte_for_byte(tmp_path):
    """``fuzz_format.layout`` (a tracing parse of a base file) and ``rebuild`` with no edit give
    the base file back, so each structure-aware mutant differs from its base only where meant."""
    import random

    for subject in fuzz_format.subjects():
        fuzz_format.prepare(subject, tmp_path)
        data = subject.path.read_bytes()
        signature = None if subject.names else fuzz_format.dense_signature(subject.factory())
        lay = fuzz_format.layout(data, signature)
        assert fuzz_format.rebuild(lay, {}) == data, subject.name
        assert {f.kind for f in lay.fields} >= {"varint", "u8"} and len(lay.entries) == len(lay.entry_segments)
    rng = random.Random(0)
    kinds = {fuzz_format.mutate_structure(lay, [lay], rng)[1].split()[0] for _ in range(200)}
    assert kinds == set(fuzz_format.STRUCTURED)
