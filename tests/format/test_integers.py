"""Format 2, kind ``integers`` (id 4): float tensors whose values are integers (SHACIRA-style
hash-grid latents), stored as range-coded offsets from their minimum under a stored model."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import fuzz_format
from tests.format.records import (assert_budget_refuses_fast, assert_every_flipped_payload_byte_refused, assert_refused,
                                 decode_bytes, integer_stream, payload_bounds)
from tests.model_checks import assert_same_bytes
from tests.tiny_models import fast_config
from torch_sinr import SINRError, SINRFormatError, compress_model
from torch_sinr.format.codec.wire import ByteWriter
from torch_sinr.format import kinds, model_io, schema
from torch_sinr.format import decode_state_dict, load_compressed, read_compressed, save_compressed
from torch_sinr.nn.storage import INTEGER_STORAGE, get_storage, requantize_dense_, round_to_storage, set_storage

pytestmark = pytest.mark.usefixtures("single_thread")


def discrete_laplace(n: int, decay: float, seed: int) -> torch.Tensor:
    """n integers with P(k) proportional to decay**|k| (a difference of two geometric variables)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(2, n, generator=g, dtype=torch.float64)
    geometric = torch.floor(torch.log1p(-u) / math.log(decay))
    return geometric[0] - geometric[1]


class WithLatents(nn.Module):
    def __init__(self, seed: int = 0, n: int = 5000, decay: float = 0.8, hidden: int = 64) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.hidden, self.out = nn.Linear(2, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 3)
        self.latents = nn.Parameter(discrete_laplace(n, decay, seed).float().reshape(n, 1))

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(torch.tanh(self.inp(x))))) + self.latents[:1, 0]


def compressed(seed: int = 0, **options) -> WithLatents:
    model = WithLatents(seed, **options)
    set_storage(model, "latents", INTEGER_STORAGE)  # before compress_model, which keeps it
    compress_model(model, fast_config())
    return model


def entropy_bits(values: torch.Tensor) -> float:
    _, counts = torch.unique(values, return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(counts.double() * torch.log2(p)).sum())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = compressed()
    path = tmp_path_factory.mktemp("integers") / "m.safetensors"
    save_compressed(model, path)
    return model, path


# ----------------------------------------------------------------------------- storage
def test_integer_storage_rounds_and_trains_straight_through():
    x = torch.tensor([-1.5, -0.4, 0.5, 2.6, 7.0], requires_grad=True)
    assert torch.equal(round_to_storage(x, INTEGER_STORAGE), torch.tensor([-2.0, -0.0, 0.0, 3.0, 7.0]))
    module = nn.Linear(1, 1)
    set_storage(module, "weight", INTEGER_STORAGE)
    with torch.no_grad():
        module.weight.fill_(2.4)
    requantize_dense_(module)
    assert module.weight.item() == 2.0 and get_storage(module, "weight") == INTEGER_STORAGE


def test_compress_model_keeps_integer_storage_and_rounds():
    model = WithLatents()
    with torch.no_grad():
        model.latents.add_(0.3)  # off the integers: compress_model rounds
    set_storage(model, "latents", INTEGER_STORAGE)
    compress_model(model, fast_config())
    assert get_storage(model, "latents") == INTEGER_STORAGE
    assert torch.equal(model.latents, WithLatents().latents)
    assert get_storage(model.inp, "bias") != INTEGER_STORAGE  # nothing else changes


# ----------------------------------------------------------------------------- round trip and bytes
def test_round_trip_is_bit_exact_and_storage_comes_back(saved, tmp_path):
    model, path = saved
    summary = read_compressed(path)
    entry = next(t for t in summary.tensors if t["name"] == "latents")
    assert entry["kind"] == "integers" and entry["value_coding"] == "range"
    assert kinds.KINDS_BY_NAME["integers"].id == 4 and kinds.kind_for_id(4).name == "integers"
    skeleton = WithLatents(seed=9)
    loaded = load_compressed(path, skeleton)
    assert torch.equal(loaded.latents, model.latents) and loaded.latents.dtype == torch.float32
    assert get_storage(loaded, "latents") == INTEGER_STORAGE
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert_same_bytes(model, loaded, path, tmp_path)


def test_entry_is_arithmetic_coded_at_the_entropy(saved):
    model, path = saved
    entry = next(t for t in read_compressed(path).tensors if t["name"] == "latents")
    side_info = entry["bytes"] - entry["segment_bytes"]  # first, width, coding id and the stored model
    ideal = entropy_bits(model.latents.detach()) / 8
    assert entry["bytes"] <= 1.03 * (ideal + side_info)
    assert entry["bytes"] >= ideal  # nothing beats the entropy (the model is the empirical one)
    assert side_info < 0.05 * entry["bytes"]
    latents = model.latents.detach()
    packed = latents.numel() * math.ceil(math.log2(float(latents.max() - latents.min()) + 1)) / 8
    assert entry["bytes"] < 0.75 * packed  # packed at ceil(log2(span)) bits, they would take ~1.5x more


def test_other_dtypes_and_shapes_round_trip(tmp_path):
    model = compressed()
    model.register_parameter("fp16", nn.Parameter(torch.tensor([[-2048.0, 0.0], [65504.0, 3.0]], dtype=torch.float16)))
    model.register_parameter("wide", nn.Parameter(discrete_laplace(300, 0.5, 3).reshape(3, 100)))  # float64
    model.register_parameter("none", nn.Parameter(torch.zeros(4, 0)))
    model.register_buffer("steps", torch.tensor([1e15, 1e15 + 3, 1e15 + 7], dtype=torch.float64))
    with torch.no_grad():
        model.wide.add_(2.0**52)  # large, but a small span
    for name in ("fp16", "wide", "none", "steps"):
        set_storage(model, name, INTEGER_STORAGE)
    with pytest.raises(SINRError, match="'fp16'.*span 67553"):  # more than 2**16 values
        save_compressed(model, tmp_path / "x.safetensors")
    with torch.no_grad():
        model.fp16[0, 0] = -31.0  # span 65536 exactly: 16-bit symbols
    save_compressed(model, tmp_path / "x.safetensors")
    state = decode_state_dict(tmp_path / "x.safetensors")
    for name in ("fp16", "wide", "none", "steps", "latents"):
        assert state[name].dtype == getattr(model, name).dtype and torch.equal(state[name], getattr(model, name)), name
    assert {t["name"]: t["kind"] for t in read_compressed(tmp_path / "x.safetensors").tensors}["steps"] == "integers"


# ----------------------------------------------------------------------------- refused at save
def test_non_integer_values_are_refused_at_save(tmp_path):
    model = compressed()
    with torch.no_grad():
        model.latents[17, 0] += 0.5
    with pytest.raises(SINRError, match="latents.*non-integer"):
        save_compressed(model, tmp_path / "n.safetensors")
    with torch.no_grad():
        model.latents[17, 0] = float("inf")
    with pytest.raises(SINRError, match="latents"):
        save_compressed(model, tmp_path / "n.safetensors")
    assert not (tmp_path / "n.safetensors").exists()


def test_a_span_over_65536_is_refused_at_save(tmp_path):
    model = compressed()
    with torch.no_grad():
        model.latents[0, 0] = model.latents.min() + 65536  # span 65537
    with pytest.raises(SINRError, match="integers span 65537 values, at most 65536"):
        save_compressed(model, tmp_path / "s.safetensors")
    with torch.no_grad():
        model.latents[0, 0] = model.latents[1:].min() + 65535  # span exactly 65536: stored
    save_compressed(model, tmp_path / "s.safetensors")
    assert torch.equal(decode_state_dict(tmp_path / "s.safetensors")["latents"], model.latents)


def test_finetune_trains_integer_latents_through_their_rounding():
    from torch_sinr.tune.finetune import finetune_codes

    model = compressed(n=64, hidden=24)
    target = model.latents.detach() + 3.0
    finetune_codes(model, lambda m: ((m.latents - target) ** 2).mean(), steps=16, lr=0.25, train_dense=True)
    assert get_storage(model, "latents") == INTEGER_STORAGE
    assert torch.equal(model.latents, torch.round(model.latents))
    assert float(((model.latents.detach() - target) ** 2).mean()) < 1.0  # it moved to the target, on the integers


# ----------------------------------------------------------------------------- corrupt and hostile files
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = compressed(n=300, hidden=24)
    path = tmp_path_factory.mktemp("small") / "s.safetensors"
    save_compressed(model, path)
    return model, path


def test_every_flipped_payload_byte_is_refused(small, tmp_path):
    assert_every_flipped_payload_byte_refused(small[1], tmp_path)


def _integers_record_and_ranges(model: nn.Module, data: bytes) -> range:
    """Positions (in ``data``) of the ``latents`` entry's record, and of the head and tail of the
    range-coded segment (latents come first in it: the head codes them)."""
    from torch_sinr.format import container

    start, end = payload_bounds(data)
    parsed = container.parse_payload(data[start:], None)
    assert parsed.entries[0].name == "latents" and parsed.entries[0].kind == "integers"
    prefix = ByteWriter()  # version, flags, entry count, settings and the signature precede the first entry
    prefix.raw(bytes(2))
    prefix.varint(len(parsed.entries))
    prefix.u8(0)
    schema.write_signature(prefix, model_io.dense_signature(model))
    record = range(start + len(prefix), start + len(prefix) + 1 + parsed.entries[0].side_bytes)
    ranged = end - 4 - len(parsed.ranged)
    return list(record), [*range(ranged, ranged + 48), *range(end - 12, end - 4)]


def test_resealed_edits_are_refused_or_decode_to_valid_tensors(small, tmp_path):
    """A hostile writer (CRC recomputed) edits the integers entry's record or the range-coded
    segment: each edit is refused with SINRFormatError or decodes to finite tensors of the
    declared shapes (a valid file with other content); never another error."""
    model, path = small
    data = path.read_bytes()
    start, end = payload_bounds(data)
    mutant = tmp_path / "m.safetensors"
    refused = {"record": 0, "ranges": 0}
    record, ranges = _integers_record_and_ranges(model, data)
    for part, position in [("record", p) for p in record] + [("ranges", p) for p in ranges]:
        for value in (0x00, 0xFF, data[position] ^ 0x02):
            if value == data[position]:
                continue
            edited = bytearray(data)
            edited[position] = value
            body = bytes(edited[start : end - 4])
            mutant.write_bytes(bytes(edited[: end - 4]) + struct.pack("<I", zlib.crc32(body)))
            try:
                state = decode_state_dict(mutant, budget_bytes=64 << 20)
            except SINRFormatError:
                refused[part] += 1
                continue
            assert state["latents"].shape == model.latents.shape
            assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert refused["record"] >= len(record)  # most record edits break a field (counts, widths, models)
    assert refused["ranges"] >= 1  # a range coder rarely notices an edit; some run out of data


F32 = schema.DTYPE_IDS[torch.float32]


def _integers_entry(first: int, bits: int, coding: int | None = None, *params: int, zigzag: bool = True) -> bytes:
    w = ByteWriter()
    w.u8(4)
    integer_stream(w, first, bits, coding, params, zigzagged=zigzag)
    return w.getvalue()


_decode = decode_bytes


def test_hand_built_integer_entries_decode(tmp_path):
    from torch_sinr.format.codec.bitpack import pack_uint

    one = [("w", torch.float32, (4,))]
    packed = pack_uint(np.array([0, 1, 2, 3]), 2)
    state = _decode(tmp_path, fuzz_format.build(one, [_integers_entry(-1, 2, 0, len(packed))], [packed]))
    assert torch.equal(state["w"], torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    # one symbol, range coded: a model of span 1 and no coded bytes
    state = _decode(tmp_path, fuzz_format.build(one, [_integers_entry(-7, 1, 3, 0, 0, 1, 4)], []))
    assert torch.equal(state["w"], torch.full((4,), -7.0))
    empty = [("w", torch.float32, (0, 3))]
    assert _decode(tmp_path, fuzz_format.build(empty, [_integers_entry(0, 0)], []))["w"].shape == (0, 3)


HOSTILE = {
    # name: (signature, entry record, segments)
    "first beyond 2**53": ([("w", torch.float32, (4,))], _integers_entry(1 << 60, 1, 3, 0, 0, 1, 4), []),
    "overlong first varint": ([("w", torch.float32, (4,))], b"\x04" + b"\xff" * 11, []),
    "non-minimal first varint": ([("w", torch.float32, (4,))], b"\x04\x80\x00\x01\x03\x00\x00\x01\x04", []),
    "width 0 for a non-empty tensor": ([("w", torch.float32, (4,))], _integers_entry(0, 0), []),
    "width 17": ([("w", torch.float32, (4,))], _integers_entry(0, 17, 0, 9), [bytes(9)]),
    "width 255": ([("w", torch.float32, (4,))], _integers_entry(0, 255, 0, 128), [bytes(128)]),
    "empty tensor with a width": ([("w", torch.float32, (0,))], _integers_entry(0, 3, 0, 0), []),
    "empty tensor with a first value": ([("w", torch.float32, (0,))], _integers_entry(5, 0), []),
    "model not starting at 0": ([("w", torch.float32, (4,))], _integers_entry(0, 2, 3, 1, 2, 1, 4), []),
    "model span narrower than the width": ([("w", torch.float32, (4,))], _integers_entry(0, 8, 3, 0, 3, 1, 4), []),
    "model span wider than the width": ([("w", torch.float32, (4,))], _integers_entry(0, 2, 3, 0, 4, 1, 4), []),
    "model counts not the tensor's size": ([("w", torch.float32, (4,))], _integers_entry(0, 1, 3, 0, 1, 1, 5), []),
    "packed symbols not starting at 0": ([("w", torch.float32, (4,))], _integers_entry(0, 2, 0, 1), [b"\x55"]),
    "packed symbols narrower than the width": ([("w", torch.float32, (4,))], _integers_entry(0, 3, 0, 2), [bytes(2)]),
    "packed segment of the wrong size": ([("w", torch.float32, (4,))], _integers_entry(0, 2, 0, 5), [bytes(5)]),
    "unknown symbol coding": ([("w", torch.float32, (4,))], _integers_entry(0, 2, 9, 1), [bytes(1)]),
    "float16 values beyond 65504": ([("w", torch.float16, (2,))], _integers_entry(65504, 1, 0, 1), [b"\x40"]),
    "float16 values below -65504": ([("w", torch.float16, (2,))], _integers_entry(-70000, 1, 0, 1), [b"\x40"]),
    "an int64 tensor": ([("w", torch.int64, (4,))], _integers_entry(0, 2, 0, 1), [b"\x1b"]),
    "range model without range-coded bytes": ([("w", torch.float32, (64,))], _integers_entry(0, 4, 3, 0, 15, 1, 64),
                                              []),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_integer_entries_are_refused(tmp_path, name):
    assert_refused(tmp_path, *HOSTILE[name])


def test_a_hostile_count_cannot_allocate_past_the_budget(tmp_path):
    # 2**40 latents declared in a file of a few bytes: a one-bin range model over 16 bits
    huge = [("w", torch.float32, (1 << 20, 1 << 20))]
    data = fuzz_format.build(huge, [_integers_entry(0, 16, 3, 0, 65535, 1, 1 << 40)], [], ranged=bytes(8))
    assert_budget_refuses_fast(tmp_path, data)
    assert kinds.KINDS_BY_NAME["integers"].decoded_bytes(
        schema.Entry("w", torch.float32, (1000,), params=kinds._IntegerParams(0, 8, None))) >= 1000 * (8 + 4)
