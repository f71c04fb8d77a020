"""Format 2: round trips, reproducible bytes, the container, bare files, the integrity check and
what a hostile file can make the reader do."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from benchmarks import fuzz_format
from tests.model_checks import assert_same_bytes, assert_unchanged, snapshot
from tests.tiny_models import SharedMLP, TiedMLP, fast_config
from torch_sinr import SINRConfig, SINRError, SINRFormatError, SINRLinear, compress_model
from torch_sinr.format import container, kinds, model_io, schema
from torch_sinr.format import decode_state_dict, load_compressed, read_compressed, save_compressed
from torch_sinr.nn.storage import get_storage


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(30.0 * x)


def siren(seed: int = 0, width: int = 64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), Sine(), nn.Linear(width, width), Sine(), nn.Linear(width, 32),
                         Sine(), nn.Linear(32, 3)).eval()


class WithBuffers(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.bn, self.hidden, self.out = nn.Linear(2, 64), nn.BatchNorm1d(64), nn.Linear(64, 64), nn.Linear(64, 3)
        self.register_buffer("steps", torch.arange(4, dtype=torch.int64))
        self.register_buffer("scale", torch.tensor(0.3))

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(torch.relu(self.bn(self.inp(x)))))) * self.scale


X = torch.linspace(-1, 1, 64).reshape(32, 2)


def _out(model):
    model.eval()
    with torch.no_grad():
        return model(X)


CONFIGS = {
    "default": fast_config(),
    "8-bit-range": fast_config(value_bits=8, symbol_coding="range"),
    "brotli-only": fast_config(value_bits=10, symbol_coding="brotli", index_coding="fixed"),
    "dense-float16": fast_config(dense_dtype="float16"),
    "dense-6-bit": fast_config(value_bits=12, dense_bits=6),
    "32-bit-values": fast_config(value_bits=32),
    "bare": fast_config(store_names=False, brotli_quality=5),
}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("factory", [siren, WithBuffers, TiedMLP, SharedMLP], ids=["siren", "buffers", "tied", "shared"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_is_bit_exact_and_load_then_save_gives_the_same_bytes(tmp_path, factory, name):
    model = factory()
    compress_model(model, CONFIGS[name])
    path = tmp_path / "a.safetensors"
    report = save_compressed(model, path)
    assert report.file_bytes == path.stat().st_size
    loaded = load_compressed(path, factory())
    assert torch.equal(_out(loaded), _out(model))
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert_same_bytes(model, loaded, path, tmp_path)
    # without torch_sinr layers: a plain state_dict loads into the original architecture
    plain = factory()
    plain.load_state_dict(decode_state_dict(path, skeleton=factory() if name == "bare" else None))
    torch.testing.assert_close(_out(plain), _out(model), rtol=0, atol=1e-5)


def test_payload_cache_serves_only_the_state_it_was_encoded_from(tmp_path):
    model = siren()
    report = compress_model(model, fast_config())  # measures the file: the payload is cached
    path = tmp_path / "a.safetensors"
    assert save_compressed(model, path).file_bytes == report.file_bytes == path.stat().st_size
    model_io.forget_payload()
    save_compressed(model, tmp_path / "fresh.safetensors")
    assert path.read_bytes() == (tmp_path / "fresh.safetensors").read_bytes()
    # an in-place edit that stays on the storage grid (a permutation) must reach the file
    hidden = model[2]
    with torch.no_grad():
        hidden.bias.copy_(hidden.bias.flip(0))
    save_compressed(model, tmp_path / "edited.safetensors")
    loaded = load_compressed(tmp_path / "edited.safetensors", siren())
    assert torch.equal(loaded[2].bias, hidden.bias)
    assert not torch.equal(loaded[2].bias, load_compressed(path, siren())[2].bias)
    # so must other settings (the quality is recorded in the file)
    save_compressed(model, tmp_path / "q5.safetensors", brotli_quality=5)
    assert (tmp_path / "q5.safetensors").read_bytes() != (tmp_path / "edited.safetensors").read_bytes()


def test_started_compressions_give_the_bytes_of_sequential_encoding(monkeypatch):
    """prefetch only starts work early (on threads): skipping it must not change one byte."""
    model = WithBuffers()
    compress_model(model, fast_config(value_bits=10))
    items = model_io.model_items(model)
    settings = model_io.save_settings(model, None, None, None, None)
    args = dict(names=True, quality=settings["quality"], index_policy="auto", symbol_policy="auto")
    started, _ = container.encode_payload(items, **args)
    monkeypatch.setattr(kinds.Kind, "prefetch", lambda self, item, ctx: None)
    for kind in kinds.KINDS_BY_NAME.values():
        monkeypatch.setattr(type(kind), "prefetch", lambda self, item, ctx: None)
    sequential, _ = container.encode_payload(items, **args)
    assert started == sequential


def test_every_parameter_is_quantized_and_buffers_are_exact():
    model = WithBuffers()
    original = WithBuffers()
    compress_model(model, fast_config(value_bits=8))
    for name in ("inp.weight", "inp.bias", "bn.weight", "bn.bias"):
        owner, _, leaf = name.rpartition(".")
        grid = get_storage(model.get_submodule(owner), leaf)
        assert grid.bits == 8, name
        tensor = model.state_dict()[name]
        assert torch.equal(grid.round_trip(tensor.reshape(-1)).reshape(tensor.shape), tensor)
    assert get_storage(model.hidden, "bias").bits == 8
    for name in ("bn.running_mean", "bn.running_var", "scale", "steps"):
        assert torch.equal(model.state_dict()[name], original.state_dict()[name]), name


def test_file_is_minimal_valid_safetensors(tmp_path):
    model = siren()
    compress_model(model, fast_config())
    path = tmp_path / "m.safetensors"
    save_compressed(model, path)
    with safe_open(str(path), framework="pt") as f:
        assert list(f.keys()) == [schema.TENSOR] and not f.metadata()
        payload = f.get_tensor(schema.TENSOR)
    # byte-identical to what safetensors itself writes for that tensor
    save_file({schema.TENSOR: payload}, str(tmp_path / "ref.safetensors"))
    assert path.read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    (header_size,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert header_size <= 72


def test_user_metadata_is_sorted_kept_and_never_read(tmp_path):
    model = siren()
    compress_model(model, fast_config())
    save_compressed(model, tmp_path / "a.safetensors", metadata={"z": "1", "a": "run 7"})
    save_compressed(model, tmp_path / "b.safetensors", metadata={"a": "run 7", "z": "1"})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert read_compressed(tmp_path / "a.safetensors").metadata == {"a": "run 7", "z": "1"}
    with pytest.raises(SINRError):
        save_compressed(model, tmp_path / "c.safetensors", metadata={"a": 1})


def test_bare_files_need_the_skeleton_and_check_it(tmp_path):
    model = siren()
    compress_model(model, fast_config(store_names=False))
    path = tmp_path / "bare.safetensors"
    bare = save_compressed(model, path).file_bytes
    named = save_compressed(model, tmp_path / "named.safetensors", names=True).file_bytes
    assert bare < named
    with pytest.raises(SINRFormatError, match="bare file"):
        decode_state_dict(path)
    wrong = siren(width=48)
    before = snapshot(wrong)
    with pytest.raises(SINRFormatError, match="does not match"):
        load_compressed(path, wrong)
    assert_unchanged(wrong, before)
    assert read_compressed(path, skeleton=siren()).names_stored is False


def test_shared_and_tied_tensors_are_stored_once(tmp_path):
    for factory in (TiedMLP, SharedMLP):
        model = factory()
        compress_model(model, fast_config())
        summary = read_compressed(save_compressed(model, tmp_path / "t.safetensors").path)
        kinds = {t["name"]: t["kind"] for t in summary.tensors}
        assert kinds["b.weight"] == "alias" and kinds["a.weight"] == "sinr"
        loaded = load_compressed(tmp_path / "t.safetensors", factory(seed=5))
        assert loaded.a.values is loaded.b.values
        assert (loaded.a is loaded.b) == (factory is SharedMLP)


def test_decompress_cli_handles_shared_tensors(tmp_path):
    from torch_sinr.cli import main

    model = SharedMLP()
    compress_model(model, fast_config())
    save_compressed(model, tmp_path / "s.safetensors")
    assert main(["decompress", str(tmp_path / "s.safetensors"), "-o", str(tmp_path / "d.safetensors")]) == 0
    plain = SharedMLP(seed=3)
    from safetensors.torch import load_file

    plain.load_state_dict(load_file(str(tmp_path / "d.safetensors")))
    torch.testing.assert_close(_out(plain), _out(model), rtol=0, atol=1e-5)


def test_nan_is_refused_on_save(tmp_path):
    model = siren()
    compress_model(model, fast_config())
    with torch.no_grad():
        model[0].bias[0] = float("nan")
    with pytest.raises(SINRError, match="NaN"):
        save_compressed(model, tmp_path / "n.safetensors")
    assert not (tmp_path / "n.safetensors").exists()


# ----------------------------------------------------------------------------- integrity
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 2))
    compress_model(model, fast_config(value_bits=6))
    path = tmp_path_factory.mktemp("small") / "s.safetensors"
    save_compressed(model, path)
    return path, {k: v.clone() for k, v in decode_state_dict(path).items()}


def test_every_flipped_payload_byte_is_refused(small_file, tmp_path):
    path, _ = small_file
    data = path.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]
    assert len(data) - start > 200
    mutant = tmp_path / "m.safetensors"
    for position in range(start, len(data)):
        for mask in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[position] ^= mask
            mutant.write_bytes(flipped)
            with pytest.raises(SINRFormatError):
                decode_state_dict(mutant)


def test_header_edits_are_refused_or_harmless(small_file, tmp_path):
    path, state = small_file
    data = path.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]
    mutant = tmp_path / "m.safetensors"
    for position in range(start):
        flipped = bytearray(data)
        flipped[position] ^= 0x04
        mutant.write_bytes(flipped)
        try:
            decoded = decode_state_dict(mutant)
        except SINRFormatError:
            continue
        assert all(torch.equal(decoded[k], v) for k, v in state.items())  # e.g. a space in the padding


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(small_file, tmp_path, keep):
    path, _ = small_file
    data = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: int(keep * len(data))])
    with pytest.raises(SINRFormatError):
        decode_state_dict(tmp_path / "t.safetensors")


# ----------------------------------------------------------------------------- hostile files
@pytest.mark.parametrize("name", [n for n, _, _ in fuzz_format.attacks()])
def test_hand_made_attacks_are_refused_fast(tmp_path, name):
    data = dict((n, d) for n, d, _ in fuzz_format.attacks())[name]
    path = tmp_path / "attack.safetensors"
    path.write_bytes(data)
    started = time.perf_counter()
    with fuzz_format.PeakMemory() as memory:
        if name.startswith("k2 = 2**23"):
            # legal, if odd: the decoder builds only the 16 atoms the codes use, whatever k2 is
            state = decode_state_dict(path)
            assert state["h.weight"].shape == (64, 64) and torch.isfinite(state["h.weight"]).all()
        else:
            with pytest.raises(SINRFormatError):
                decode_state_dict(path)
    assert time.perf_counter() - started < 2.0
    assert memory.increase < 128 << 20


def test_decode_budget_is_checked_before_anything_is_decoded(tmp_path):
    model = siren()
    compress_model(model, fast_config())
    path = tmp_path / "m.safetensors"
    save_compressed(model, path)
    with pytest.raises(SINRFormatError, match="budget"):
        decode_state_dict(path, budget_bytes=1000)
    assert decode_state_dict(path, budget_bytes=10 << 20).keys()


def _resealed(data: bytes, edit) -> bytes:
    """``data`` with its payload edited by ``edit`` and the CRC recomputed (a hostile writer)."""
    start = 8 + struct.unpack("<Q", data[:8])[0]
    payload = bytearray(data[start:-4])
    edit(payload)
    return data[:start] + bytes(payload) + struct.pack("<I", zlib.crc32(bytes(payload)))


def test_resealed_bad_version_and_flags_are_refused(small_file, tmp_path):
    path, _ = small_file
    data = path.read_bytes()
    for edit in (lambda p: p.__setitem__(0, 3), lambda p: p.__setitem__(1, 0x81)):
        (tmp_path / "h.safetensors").write_bytes(_resealed(data, edit))
        with pytest.raises(SINRFormatError):
            decode_state_dict(tmp_path / "h.safetensors")


def test_wrong_architecture_leaves_the_model_untouched(tmp_path):
    model = siren()
    compress_model(model, fast_config())
    save_compressed(model, tmp_path / "m.safetensors")
    for wrong in (siren(width=48), WithBuffers(), TiedMLP()):
        before = snapshot(wrong)
        with pytest.raises(SINRFormatError):
            load_compressed(tmp_path / "m.safetensors", wrong)
        assert_unchanged(wrong, before)


def test_fuzz_slice(tmp_path):
    """A fast slice of ``python -m benchmarks.fuzz_format``: no crash, no silent corruption."""
    results = fuzz_format.run(240, seed=7)
    bounds = results["bounds"]
    assert bounds["crashes"] == 0 and bounds["silently_different"] == 0 and bounds["slow"] == 0
    assert bounds["nonfinite"] == 0 and results["by_mutation"].keys() - {"bytes", "bytes (CRC fixed)"}
    assert results["total"]["rejected"] > 100
    assert bounds["max_memory_increase"] < fuzz_format.MEMORY_BOUND
