"""Format 1 (still read, and written with format_version=1): round trips, container layout, tied
weights, and hostile input.

Every problem with a file must surface as ``SINRFormatError`` (never another exception type,
never a crash, a hang or a giant allocation), and a failed ``load_compressed`` must leave the
target model exactly as it was.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from tests.model_checks import assert_unchanged as _assert_unchanged, snapshot as _snapshot
from tests.tiny_models import SharedMLP, TiedMLP, fast_config

import torch_sinr
from torch_sinr import SINRConfig, SINRError, SINRFormatError, SINRLinear, compress_model
from torch_sinr.format.v1 import read_compressed_v1 as read_compressed
from torch_sinr.format import decode_state_dict, load_compressed, save_compressed

REQUIRED_METADATA = {"format", "format_version", "torch_sinr_version", "dictionary_generator", "layout"}


# ----------------------------------------------------------------------------- models
class Sine(nn.Module):
    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def make_mlp(seed: int = 0, width: int = 64) -> nn.Sequential:
    """A small SIREN-like INR: 2 -> width -> width -> 32 -> 3 (layer "6" is coded "flat")."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), Sine(), nn.Linear(width, width), Sine(1.0),
                         nn.Linear(width, 32), nn.Sigmoid(), nn.Linear(32, 3)).eval()


class BufferMLP(nn.Module):
    """Registered buffers (float and int64) and, optionally, a BatchNorm1d (running stats and a
    0-dim int64 ``num_batches_tracked``) plus a 0-dim float buffer."""

    def __init__(self, seed: int = 0, bn: bool = True) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(2, 64)
        self.bn = nn.BatchNorm1d(64) if bn else nn.Identity()
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, 3)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 3))
        self.register_buffer("steps", torch.zeros(2, dtype=torch.int64))
        if bn:
            self.register_buffer("temperature", torch.tensor(1.0))

    def forward(self, x):
        h = torch.relu(self.bn(self.inp(x)))
        return self.out(torch.tanh(self.hidden(h))) * self.scale


def _inputs(n: int = 64, d: int = 2, seed: int = 123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ----------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """The default-config compressed MLP, its file and the file report."""
    model = make_mlp()
    report = compress_model(model, fast_config())
    path = tmp_path_factory.mktemp("sinr") / "mlp.safetensors"
    file_report = save_compressed(model, path, format_version=1)
    return model, path, report, file_report


@pytest.fixture(scope="module")
def fixed_file(tmp_path_factory):
    """A file written with index_coding="fixed" (so index width follows from k2)."""
    model = make_mlp()
    compress_model(model, fast_config(index_coding="fixed"))
    path = tmp_path_factory.mktemp("sinr") / "fixed.safetensors"
    save_compressed(model, path, format_version=1)
    return model, path


def _read_raw(path):
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {}), f.get_tensor("payload")


def _rewrite(src, dst, *, mutate=None, layout_text=None, metadata=None, tensors=None):
    """Re-save ``src``'s payload with edited metadata (or tensors) as ``dst``."""
    meta, payload = _read_raw(src)
    if mutate is not None:
        layout = json.loads(meta["layout"])
        mutate(layout)
        meta["layout"] = json.dumps(layout)
    if layout_text is not None:
        meta["layout"] = layout_text
    if metadata is not None:
        meta = metadata(meta)
    save_file(tensors(payload) if tensors is not None else {"payload": payload}, str(dst), metadata=meta)
    return dst


def _layer(layout: dict, name: str) -> dict:
    return next(e for e in layout["sinr"] if e["name"] == name)


def _dense(layout: dict, name: str) -> dict:
    return next(e for e in layout["dense"] if e["name"] == name)


def _assert_refused(path, factory=make_mlp) -> None:
    """Every reader refuses ``path`` with SINRFormatError; load leaves its target untouched."""
    model = factory()
    before = _snapshot(model)
    with pytest.raises(SINRFormatError):
        load_compressed(path, model)
    _assert_unchanged(model, before)
    with pytest.raises(SINRFormatError):
        decode_state_dict(path)


def _only_format_errors(fn) -> bool:
    """Run ``fn``; True if it succeeded, False on SINRFormatError; anything else propagates."""
    try:
        fn()
    except SINRFormatError:
        return False
    return True


# ----------------------------------------------------------------------------- round trips
def test_round_trip_default_is_bit_exact(compressed):
    model, path, _, _ = compressed
    x = _inputs()
    expected = _forward(model, x)
    loaded = load_compressed(path, make_mlp(seed=99))  # different init: everything must come from the file
    for name in ("2", "4", "6"):
        assert isinstance(loaded.get_submodule(name), SINRLinear)
        original, restored = model.get_submodule(name), loaded.get_submodule(name)
        assert restored.spec == original.spec
        assert torch.equal(restored.indices, original.indices)
        assert torch.equal(restored.values, original.values)
        assert torch.equal(restored.bias, original.bias)
    assert type(loaded.get_submodule("0")) is nn.Linear  # input layer stays dense
    assert torch.equal(_forward(loaded, x), expected)


def test_decode_state_dict_loads_into_plain_architecture(compressed):
    model, path, _, _ = compressed
    x = _inputs()
    state = decode_state_dict(path)
    plain = make_mlp(seed=5)
    plain.load_state_dict(state, strict=True)
    assert all(type(m) is nn.Linear for m in plain.modules() if isinstance(m, nn.Linear))
    assert torch.equal(_forward(plain, x), _forward(model, x))
    for name in ("2", "4", "6"):
        assert torch.equal(state[f"{name}.weight"], model.get_submodule(name).weight)


def test_round_trip_fp16_dense_and_8bit_values(tmp_path):
    model = make_mlp(seed=3)
    compress_model(model, fast_config(dense_dtype="float16", value_bits=8))
    path = tmp_path / "fp16.safetensors"
    save_compressed(model, path, format_version=1)
    x = _inputs()
    expected = _forward(model, x)
    loaded = load_compressed(path, make_mlp(seed=3))
    assert loaded.get_submodule("2").spec.quantizer.bits == 8
    assert torch.equal(_forward(loaded, x), expected)
    plain = make_mlp(seed=0)
    plain.load_state_dict(decode_state_dict(path), strict=True)
    assert torch.equal(_forward(plain, x), expected)
    # fp16 storage really happened: dense entries are stored as float16
    meta, _ = _read_raw(path)
    layout = json.loads(meta["layout"])
    assert {e["stored"] for e in layout["dense"]} == {"float16"}
    assert {e["bias"] for e in layout["sinr"]} == {"float16"}


def test_round_trip_value_bits_7(tmp_path):
    model = make_mlp(seed=4)
    compress_model(model, fast_config(value_bits=7))
    path = tmp_path / "seven.safetensors"
    save_compressed(model, path, format_version=1)
    x = _inputs()
    loaded = load_compressed(path, make_mlp(seed=4))
    assert loaded.get_submodule("4").spec.quantizer.bits == 7
    assert torch.equal(_forward(loaded, x), _forward(model, x))


def test_round_trip_fixed_index_coding(fixed_file):
    model, path = fixed_file
    meta, _ = _read_raw(path)
    assert {e["index_coding"][0] for e in json.loads(meta["layout"])["sinr"]} == {"fixed"}
    x = _inputs()
    assert torch.equal(_forward(load_compressed(path, make_mlp()), x), _forward(model, x))


def _buffer_round_trip(tmp_path, bn: bool):
    model = BufferMLP(bn=bn)
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(_inputs(32, seed=i))
        model.steps += torch.tensor([5, 7])
    model.eval()
    compress_model(model, fast_config())
    assert isinstance(model.hidden, SINRLinear) and isinstance(model.out, SINRLinear)
    path = tmp_path / "buffers.safetensors"
    save_compressed(model, path, format_version=1)
    x = _inputs()
    expected = _forward(model, x)

    loaded = load_compressed(path, BufferMLP(seed=1, bn=bn).eval())
    assert torch.equal(_forward(loaded, x), expected)
    assert loaded.steps.dtype == torch.int64 and loaded.steps.tolist() == [5, 7]
    for key, value in model.state_dict().items():
        if key.startswith(("hidden.", "out.")):
            continue
        assert loaded.state_dict()[key].dtype == value.dtype, key
        assert torch.equal(loaded.state_dict()[key], value), key

    plain = BufferMLP(seed=2, bn=bn)
    plain.load_state_dict(decode_state_dict(path), strict=True)
    assert plain.steps.dtype == torch.int64
    assert torch.equal(_forward(plain, x), expected)
    return loaded


def test_round_trip_registered_buffers(tmp_path):
    _buffer_round_trip(tmp_path, bn=False)


def test_round_trip_batchnorm_and_scalar_buffers(tmp_path):
    loaded = _buffer_round_trip(tmp_path, bn=True)
    assert loaded.bn.num_batches_tracked.dtype == torch.int64
    assert int(loaded.bn.num_batches_tracked) == 3


# ----------------------------------------------------------------------------- container
def test_file_is_plain_safetensors_with_metadata(compressed):
    _, path, _, _ = compressed
    with safe_open(str(path), framework="pt") as f:
        assert list(f.keys()) == ["payload"]
        meta = f.metadata()
        payload = f.get_tensor("payload")
    assert payload.dtype == torch.uint8 and payload.ndim == 1
    assert REQUIRED_METADATA <= set(meta)
    assert meta["format"] == "torch_sinr"
    assert meta["format_version"] == "1"
    assert meta["torch_sinr_version"] == torch_sinr.__version__
    assert meta["dictionary_generator"] == "sinr-gauss-v1"
    layout = json.loads(meta["layout"])
    assert isinstance(layout["sinr"], list) and isinstance(layout["dense"], list)
    assert layout["payload_bytes"] == payload.numel()
    assert [e["name"] for e in layout["sinr"]] == ["2", "4", "6"]
    assert {e["name"] for e in layout["dense"]} == {"0.weight", "0.bias"}
    assert {e["mode"] for e in layout["sinr"]} == {"row", "flat"}
    assert not (path.parent / (path.name + ".tmp")).exists()


def test_file_report_parts_sum_to_file_size(compressed):
    _, path, report, file_report = compressed
    assert file_report.file_bytes == path.stat().st_size
    parts = (file_report.values_bytes + file_report.indices_bytes + file_report.bias_bytes
             + file_report.other_bytes + file_report.container_bytes)
    assert parts == file_report.file_bytes
    assert file_report.container_bytes >= 0
    assert min(file_report.values_bytes, file_report.indices_bytes, file_report.bias_bytes,
               file_report.other_bytes) > 0
    assert sum(sum(v.values()) for v in file_report.layers.values()) == (
        file_report.values_bytes + file_report.indices_bytes + file_report.bias_bytes)
    assert "| **file** |" in file_report.table()
    assert json.loads(json.dumps(file_report.to_dict()))["container_bytes"] == file_report.container_bytes
    assert read_compressed(path).file_bytes == file_report.file_bytes


def test_save_uncompressed_model_is_refused(tmp_path):
    with pytest.raises(SINRError):
        save_compressed(make_mlp(), tmp_path / "plain.safetensors")
    assert not (tmp_path / "plain.safetensors").exists()


# ----------------------------------------------------------------------------- tied weights
def test_tied_weights_coded_once_and_stay_tied(tmp_path):
    model = TiedMLP()
    report = compress_model(model, fast_config())
    by_name = {l.name: l for l in report.layers}
    assert by_name["b"].tied_to == "a" and by_name["a"].tied_to is None
    # the tied layer stores only its own bias: no values or indices of its own
    assert by_name["b"].bits_values == 0 and by_name["b"].bits_indices == 0
    assert by_name["b"].bits_bias > 0
    assert model.a.values is model.b.values
    assert not torch.equal(model.a.bias, model.b.bias)

    path = tmp_path / "tied.safetensors"
    file_report = save_compressed(model, path, format_version=1)
    assert file_report.layers["b"]["values"] == 0 and file_report.layers["b"]["indices"] == 0
    layout = json.loads(_read_raw(path)[0]["layout"])
    assert _layer(layout, "b")["tied_to"] == "a" and "values_stream" not in _layer(layout, "b")

    x = _inputs()
    expected = _forward(model, x)
    loaded = load_compressed(path, TiedMLP(seed=7))
    assert isinstance(loaded.a, SINRLinear) and isinstance(loaded.b, SINRLinear)
    assert loaded.a is not loaded.b
    assert loaded.a.values is loaded.b.values
    assert torch.equal(loaded.b.bias, model.b.bias)
    assert torch.equal(_forward(loaded, x), expected)

    plain = TiedMLP(seed=8)
    plain.load_state_dict(decode_state_dict(path), strict=True)
    assert plain.a.weight is plain.b.weight
    assert torch.equal(_forward(plain, x), expected)


def test_same_module_under_two_names(tmp_path):
    model = SharedMLP()
    report = compress_model(model, fast_config())
    assert [l.name for l in report.layers if l.name in ("a", "b")] == ["a"]
    assert isinstance(model.a, SINRLinear) and model.a is model.b

    path = tmp_path / "shared.safetensors"
    save_compressed(model, path, format_version=1)
    x = _inputs()
    expected = _forward(model, x)
    loaded = load_compressed(path, SharedMLP(seed=3))
    assert isinstance(loaded.a, SINRLinear) and loaded.a is loaded.b
    assert torch.equal(_forward(loaded, x), expected)

    plain = SharedMLP(seed=4)
    plain.load_state_dict(decode_state_dict(path), strict=True)
    assert torch.equal(_forward(plain, x), expected)


# ----------------------------------------------------------------------------- wrong architecture
def _with_extra_param():
    model = make_mlp()
    model.register_parameter("extra", nn.Parameter(torch.ones(3)))
    return model


def _missing_last_layer():
    model = make_mlp()
    del model[6]
    return model


def _layer_replaced_by_activation():
    model = make_mlp()
    model[4] = nn.Tanh()
    return model


def _no_bias():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 64), Sine(), nn.Linear(64, 64, bias=False), Sine(1.0),
                         nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 3))


@pytest.mark.parametrize("factory", [
    lambda: make_mlp(width=48),
    _missing_last_layer,
    _with_extra_param,
    _layer_replaced_by_activation,
    _no_bias,
    lambda: TiedMLP(),
], ids=["width", "missing-layer", "extra-param", "not-linear", "no-bias", "other-model"])
def test_load_into_wrong_architecture_leaves_model_untouched(compressed, factory):
    _, path, _, _ = compressed
    model = factory()
    before = _snapshot(model)
    with pytest.raises(SINRFormatError):
        load_compressed(path, model)
    _assert_unchanged(model, before)


# ----------------------------------------------------------------------------- hostile files
def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "nope.safetensors")
    with pytest.raises(SINRFormatError):
        read_compressed(tmp_path / "nope.safetensors")
    with pytest.raises(SINRFormatError):
        read_compressed(tmp_path)  # a directory


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _assert_refused(path)


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "random.safetensors"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([7, 64, 4096]))))
    _assert_refused(path)


def test_plausible_header_with_garbage(tmp_path):
    header = b'{"payload":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}}'
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header[:-5])
    _assert_refused(path)
    path.write_bytes((1 << 60).to_bytes(8, "little") + header)  # absurd header length
    _assert_refused(path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, "len-1"])
def test_truncated_file(compressed, tmp_path, fraction):
    _, path, _, _ = compressed
    data = path.read_bytes()
    cut = len(data) - 1 if fraction == "len-1" else int(len(data) * fraction)
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:max(cut, 1)])
    _assert_refused(bad)


def test_flipped_bytes_only_raise_format_errors(compressed, tmp_path):
    """200 single-byte corruptions across header and payload: each reader succeeds (flips in a
    stream may decode to other valid values) or raises SINRFormatError, never anything else."""
    _, path, _, _ = compressed
    data = path.read_bytes()
    rng = random.Random(20250101)
    positions = sorted(rng.sample(range(len(data)), 200))
    bad = tmp_path / "flipped.safetensors"
    x = _inputs(8)
    refused = 0
    for pos in positions:
        corrupted = bytearray(data)
        corrupted[pos] ^= rng.randrange(1, 256)
        bad.write_bytes(bytes(corrupted))
        ok_read = _only_format_errors(lambda: read_compressed(bad))
        target = make_mlp()
        before = _snapshot(target)
        ok_load = _only_format_errors(lambda: _forward(load_compressed(bad, target), x))
        if not ok_load:
            _assert_unchanged(target, before)
        ok_decode = _only_format_errors(lambda: decode_state_dict(bad))
        if not ok_read:
            assert not ok_load and not ok_decode, pos
        refused += not (ok_read and ok_load and ok_decode)
    assert refused > 10  # corrupt headers and streams are noticed, not silently accepted


# -- edited metadata, written with safetensors.torch.save_file ------------------------------
def _drop(key):
    def edit(meta):
        meta.pop(key)
        return meta
    return edit


def _set(key, value):
    def edit(meta):
        meta[key] = value
        return meta
    return edit


@pytest.mark.parametrize("edit", [
    _set("format", "torch_sinr2"),
    _set("format", "gguf"),
    _drop("format"),
    _set("format_version", "2"),
    _set("format_version", "01"),
    _drop("format_version"),
    _set("dictionary_generator", "sinr-gauss-v0"),
    _drop("dictionary_generator"),
    _set("layout", "{not json"),
    _set("layout", ""),
    _set("layout", "[]"),
    _set("layout", "null"),
    _drop("layout"),
    lambda meta: {},
], ids=["format", "format-other", "no-format", "version-2", "version-01", "no-version", "generator",
        "no-generator", "layout-not-json", "layout-empty", "layout-list", "layout-null", "no-layout",
        "no-metadata"])
def test_bad_top_level_metadata(compressed, tmp_path, edit):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", metadata=edit)
    _assert_refused(bad)


def test_metadata_free_file(compressed, tmp_path):
    _, path, _, _ = compressed
    _, payload = _read_raw(path)
    bad = tmp_path / "nometa.safetensors"
    save_file({"payload": payload}, str(bad))
    _assert_refused(bad)


def _del(*keys):
    def mutate(layout):
        for key in keys:
            layout.pop(key)
    return mutate


def _edit_layer(name, field, value):
    def mutate(layout):
        if value is _DELETE:
            _layer(layout, name).pop(field)
        else:
            _layer(layout, name)[field] = value
    return mutate


def _edit_dense(name, field, value):
    def mutate(layout):
        if value is _DELETE:
            _dense(layout, name).pop(field)
        else:
            _dense(layout, name)[field] = value
    return mutate


_DELETE = object()


def _stream_past_end(layout):
    entry = _layer(layout, "4")
    entry["values_stream"][0] = layout["payload_bytes"] - entry["values_stream"][1] + 1


def _stream_offset_huge(layout):
    _layer(layout, "2")["indices_stream"][0] = 2**62


def _values_decoded_size(layout):
    _layer(layout, "2")["values_stream"][2] += 1


def _indices_decoded_size(layout):
    _layer(layout, "2")["indices_stream"][2] += 7


def _dense_shape_and_size_agree_but_stream_does_not(layout):
    entry = _dense(layout, "0.bias")
    entry["shape"] = [63]
    entry["stream"][2] = 63 * 4


def _bias_stream_swapped(layout):
    # bias of layer "2" now points at layer "4"'s (shorter) bias stream with the declared size
    _layer(layout, "2")["bias_stream"][:2] = _layer(layout, "4")["bias_stream"][:2]


def _tied_to_missing(layout):
    entry = _layer(layout, "4")
    entry["tied_to"] = "nope"


def _tied_to_self(layout):
    _layer(layout, "4")["tied_to"] = "4"


def _tied_to_other_shape(layout):
    _layer(layout, "4")["tied_to"] = "2"  # (32, 64) tied to (64, 64)


def _duplicate_layer(layout):
    layout["sinr"].append(copy.deepcopy(layout["sinr"][0]))


def _layer_named_like_dense(layout):
    _layer(layout, "6")["name"] = "0"


def _dense_tied_to_missing(layout):
    entry = _dense(layout, "0.bias")
    entry.pop("stream")
    entry["tied_to"] = "ghost"


def _dense_tied_to_other_shape(layout):
    entry = _dense(layout, "0.bias")
    entry.pop("stream")
    entry["tied_to"] = "0.weight"


def _huge_dense(layout):
    entry = _dense(layout, "0.weight")
    entry["shape"] = [2**24, 2**7]
    entry["stream"][2] = 2**31 * 4


def _too_many_decoded_bytes(layout):
    # each entry is under the per-stream bound, together they are not
    for i in range(12):
        layout["dense"].append({"name": f"big{i}", "dtype": "float32", "stored": "float32",
                                "shape": [2**24, 2**3], "stream": [0, 1, 2**27 * 4]})


_LAYOUT_EDITS = {
    "missing-sinr": _del("sinr"),
    "missing-dense": _del("dense"),
    "missing-payload_bytes": _del("payload_bytes"),
    "payload_bytes+1": lambda l: l.update(payload_bytes=l["payload_bytes"] + 1),
    "payload_bytes-str": lambda l: l.update(payload_bytes=str(l["payload_bytes"])),
    "sinr-not-list": lambda l: l.update(sinr={"a": 1}),
    "sinr-entry-not-object": lambda l: l["sinr"].append([1, 2]),
    "dense-entry-not-object": lambda l: l["dense"].append("x"),
    "name-missing": _edit_layer("2", "name", _DELETE),
    "name-not-str": _edit_layer("2", "name", 2),
    "k2=0": _edit_layer("2", "k2", 0),
    "k2=-5": _edit_layer("2", "k2", -5),
    "k2-float": _edit_layer("2", "k2", 1024.0),
    "k2-bool": _edit_layer("2", "k2", True),
    "s>k1": _edit_layer("2", "s", 65),
    "s>k2": _edit_layer("2", "k2", 20),
    "s=0": _edit_layer("2", "s", 0),
    "s-negative": _edit_layer("2", "s", -1),
    "s-str": _edit_layer("2", "s", "29"),
    "shape-negative": _edit_layer("2", "shape", [-64, 64]),
    "shape-huge": _edit_layer("2", "shape", [2**40, 2]),
    "shape-huge-flat": _edit_layer("6", "shape", [2**24, 2**24]),
    "shape-1d": _edit_layer("2", "shape", [4096]),
    "shape-3d": _edit_layer("2", "shape", [64, 8, 8]),
    "shape-zero": _edit_layer("2", "shape", [0, 64]),
    "shape-float": _edit_layer("2", "shape", [64.0, 64]),
    "shape-deep": _edit_layer("2", "shape", [1] * 100),
    "shape-not-list": _edit_layer("2", "shape", "64x64"),
    "mode-unknown": _edit_layer("2", "mode", "column"),
    "mode-flat-mismatch": _edit_layer("2", "mode", "flat"),
    "seed=-1": _edit_layer("2", "seed", -1),
    "seed=2**32": _edit_layer("2", "seed", 2**32),
    "seed-missing": _edit_layer("2", "seed", _DELETE),
    "value_bits=17": _edit_layer("2", "value_bits", 17),
    "value_bits=1": _edit_layer("2", "value_bits", 1),
    "value_bits=7-size-mismatch": _edit_layer("2", "value_bits", 7),
    "value_bits=32-size-mismatch": _edit_layer("2", "value_bits", 32),
    "lo=NaN": _edit_layer("2", "lo", float("nan")),
    "lo=inf": _edit_layer("2", "lo", float("inf")),
    "hi=-inf": _edit_layer("2", "hi", float("-inf")),
    "lo='x'": _edit_layer("2", "lo", "x"),
    "lo=null": _edit_layer("2", "lo", None),
    "lo>hi": _edit_layer("2", "lo", 10.0),
    "bias-dtype": _edit_layer("2", "bias", "float64"),
    "bias-not-str": _edit_layer("2", "bias", 1),
    "bias-stream-missing": _edit_layer("2", "bias_stream", _DELETE),
    "bias-stream-swapped": _bias_stream_swapped,
    "index_coding-zzz": _edit_layer("2", "index_coding", ["zzz", 5]),
    "index_coding-str": _edit_layer("2", "index_coding", "rice"),
    "index_coding-short": _edit_layer("2", "index_coding", ["rice"]),
    "index_coding-param-str": _edit_layer("2", "index_coding", ["rice", "5"]),
    "index_coding-rice-param-huge": _edit_layer("2", "index_coding", ["rice", 99]),
    "index_coding-rice-param-negative": _edit_layer("2", "index_coding", ["rice", -1]),
    "index_coding-bitmask": _edit_layer("2", "index_coding", ["bitmask", 0]),
    "index_coding-fixed": _edit_layer("2", "index_coding", ["fixed", 10]),
    "values-stream-missing": _edit_layer("2", "values_stream", _DELETE),
    "values-stream-short": _edit_layer("2", "values_stream", [0, 10]),
    "values-stream-negative": _edit_layer("2", "values_stream", [-1, 10, 3712]),
    "values-stream-float": _edit_layer("2", "values_stream", [0.0, 3667, 3712]),
    "values-stream-empty": _edit_layer("2", "values_stream", [0, 0, 3712]),
    "stream-past-end": _stream_past_end,
    "stream-offset-huge": _stream_offset_huge,
    "stream-decoded-huge": _edit_layer("2", "indices_stream", [0, 10, 2**40]),
    "values-decoded-size": _values_decoded_size,
    "indices-decoded-size": _indices_decoded_size,
    "dense-decoded-size": _dense_shape_and_size_agree_but_stream_does_not,
    "tied-to-missing": _tied_to_missing,
    "tied-to-self": _tied_to_self,
    "tied-to-other-shape": _tied_to_other_shape,
    "duplicate-layer": _duplicate_layer,
    "huge-dictionary": _edit_layer("2", "k2", 2**24),  # 64 * 2**24 = 2**30 > 2**29 entries
    "huge-dictionary-flat": _edit_layer("6", "k2", 2**23),  # 96 * 2**23 > 2**29
    "dense-complex64": _edit_dense("0.weight", "dtype", "complex64"),
    "dense-stored-complex64": _edit_dense("0.weight", "stored", "complex64"),
    "dense-int-stored-as-float": _edit_dense("0.weight", "dtype", "int64"),
    "dense-stored-float-as-int8": _edit_dense("0.weight", "stored", "int8"),
    "dense-shape-huge": _edit_dense("0.weight", "shape", [2**40, 2]),
    "dense-shape-negative": _edit_dense("0.weight", "shape", [-64, 2]),
    "dense-too-many-elements": _huge_dense,
    "dense-stream-missing": _edit_dense("0.weight", "stream", _DELETE),
    "dense-tied-to-missing": _dense_tied_to_missing,
    "dense-tied-to-other-shape": _dense_tied_to_other_shape,
    "too-many-decoded-bytes": _too_many_decoded_bytes,
}


@pytest.mark.parametrize("mutate", list(_LAYOUT_EDITS.values()), ids=list(_LAYOUT_EDITS))
def test_bad_layout(compressed, tmp_path, mutate):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=mutate)
    _assert_refused(bad)


def test_huge_dictionary_refused_before_generation(compressed, tmp_path, monkeypatch):
    import torch_sinr.core.dictionary as dictionary

    def boom(*args, **kwargs):
        raise AssertionError("a dictionary was generated for a hostile file")

    monkeypatch.setattr(dictionary, "generate_dictionary", boom)
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("2", "k2", 2**24))
    with pytest.raises(SINRFormatError, match="dictionary"):
        read_compressed(bad)
    _assert_refused(bad)


def test_indices_out_of_range_for_lowered_k2(fixed_file, tmp_path):
    """Fixed-width indices stay decodable when k2 drops within the same bit width; the decoder
    must still notice indices >= k2."""
    model, path = fixed_file
    layer = model.get_submodule("2")
    top = int(layer.indices.max())
    assert 512 < top < 1024  # same 10-bit width for k2 = top
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("2", "k2", top))
    read_compressed(bad)  # the metadata alone is consistent
    _assert_refused(bad)


def test_fixed_width_mismatch_for_lowered_k2(fixed_file, tmp_path):
    _, path = fixed_file
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("2", "k2", 300))
    _assert_refused(bad)


def test_value_bits_7_is_accepted_17_is_not(tmp_path):
    model = make_mlp(seed=6)
    compress_model(model, fast_config(value_bits=7))
    path = tmp_path / "seven.safetensors"
    save_compressed(model, path, format_version=1)
    read_compressed(path)
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("2", "value_bits", 17))
    _assert_refused(bad)


def test_extra_tensor(compressed, tmp_path):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors",
                   tensors=lambda p: {"payload": p, "extra": torch.zeros(3)})
    _assert_refused(bad)


def test_renamed_payload(compressed, tmp_path):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", tensors=lambda p: {"data": p})
    _assert_refused(bad)


@pytest.mark.parametrize("convert", [
    lambda p: p.to(torch.float32),
    lambda p: p.to(torch.int8),
    lambda p: p.reshape(1, -1),
    lambda p: p[: p.numel() // 4 * 4].view(torch.int32),
], ids=["float32", "int8", "2-d", "int32-view"])
def test_payload_of_wrong_dtype_or_rank(compressed, tmp_path, convert):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", tensors=lambda p: {"payload": convert(p).contiguous()})
    _assert_refused(bad)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_layout(compressed, tmp_path, depth):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", layout_text="[" * depth + "]" * depth)
    _assert_refused(bad)
    nested = '{"sinr":' + "[" * depth + "]" * depth + ',"dense":[],"payload_bytes":0}'
    bad = _rewrite(path, tmp_path / "bad2.safetensors", layout_text=nested)
    _assert_refused(bad)


@pytest.mark.parametrize("field", ["lo", "hi"])
def test_float_field_with_huge_integer(compressed, tmp_path, field):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("2", field, 10**400))
    _assert_refused(bad)


def test_layout_with_overlong_integer(compressed, tmp_path):
    _, path, _, _ = compressed
    text = '{"sinr":[],"dense":[],"payload_bytes":' + "1" * 5000 + "}"
    bad = _rewrite(path, tmp_path / "bad.safetensors", layout_text=text)
    _assert_refused(bad)


@pytest.mark.parametrize("field,value", [("s", 10), ("k2", 100)])
def test_tied_layer_spec_must_match_its_source(tmp_path, field, value):
    model = TiedMLP()
    compress_model(model, fast_config())
    path = tmp_path / "tied.safetensors"
    save_compressed(model, path, format_version=1)
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("b", field, value))
    target = TiedMLP()
    before = _snapshot(target)
    # load_compressed only (no forward, no decode_state_dict): decoding the k2 case reads out of bounds
    with pytest.raises(SINRFormatError):
        load_compressed(bad, target)
    _assert_unchanged(target, before)


def test_tied_file_tie_to_wrong_layer_is_refused(tmp_path):
    model = TiedMLP()
    compress_model(model, fast_config())
    path = tmp_path / "tied.safetensors"
    save_compressed(model, path, format_version=1)
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_edit_layer("b", "tied_to", "out"))
    _assert_refused(bad, TiedMLP)
    bad = _rewrite(path, tmp_path / "bad2.safetensors", mutate=_edit_layer("b", "tied_to", "missing"))
    _assert_refused(bad, TiedMLP)


def test_layer_keys_colliding_with_dense_tensors(compressed, tmp_path):
    _, path, _, _ = compressed
    bad = _rewrite(path, tmp_path / "bad.safetensors", mutate=_layer_named_like_dense)
    with pytest.raises(SINRFormatError):
        decode_state_dict(bad)


def test_extra_metadata_is_stored_and_cannot_override_the_format(compressed, tmp_path):
    model = compressed[0]
    path = tmp_path / "meta.safetensors"
    save_compressed(model, path, metadata={"source": "run 7"}, format_version=1)
    cf = read_compressed(path)
    assert cf.metadata["source"] == "run 7" and cf.metadata["format"] == "torch_sinr"
    for bad in ({"format_version": "9"}, {"layout": "{}"}, {"source": 7}):
        with pytest.raises(SINRError):
            save_compressed(model, tmp_path / "bad.safetensors", metadata=bad, format_version=1)
    assert not (tmp_path / "bad.safetensors").exists()
