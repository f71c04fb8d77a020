"""compress_model / decompress_model / targeting (peft-style), the report and SINRLinear."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from tests.model_checks import assert_unchanged, snapshot as _snapshot
from tests.tiny_models import SharedMLP, TiedMLP, fast_config

from torch_sinr import (SINRConfig, SINRConfigError, SINRError, SINRInputError, SINRLinear, compress_model,
                        decompress_model, plan_targets)
from torch_sinr.format import load_compressed, save_compressed
from torch_sinr.nn.storage import get_storage

# With default settings (s = 0.45 k1, 16-bit values) every layer's weight error is ~0.05-0.08;
# the outputs of these small tanh/relu/sine nets move by ~0.02-0.17 relative (measured over
# seeds 0-3). 0.25 leaves margin while still failing if a layer is decoded wrongly (errors ~1).
OUTPUT_REL_ERROR_BOUND = 0.25
LAYER_REL_ERROR_BOUND = 0.1


pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- models
def plain_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3))


def no_bias_mlp(seed: int = 0) -> nn.Module:
    """Bias-free hidden layers (as in many NeRF and hash-grid decoders)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64, bias=False), nn.Tanh(),
                         nn.Linear(64, 3, bias=False))


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class Nested(nn.Module):
    """ModuleList of custom modules that hold a Sequential, and a Sequential head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(3, 64)
        self.blocks = nn.ModuleList([Block(64), Block(64)])
        self.head = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 4))

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        for block in self.blocks:
            h = block(h)
        return self.head(h)


class MyLinear(nn.Linear):
    """A subclass of nn.Linear (same computation, extra attribute)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tag = "custom"


class Subclassed(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = MyLinear(2, 64)
        self.hidden = MyLinear(64, 64)
        self.out = nn.Linear(64, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(torch.sin(self.inp(x)))))


class WideInput(nn.Module):
    """Two input-like layers: fan-in 2 and fan-in 16 (both <= input_fan_in_max=16, kept dense);
    the fan-in 17 output layer is coded ("flat", since 17 < flatten_below=50)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.coords = nn.Linear(2, 16)
        self.embed = nn.Linear(16, 64)
        self.hidden = nn.Linear(64, 17)
        self.out = nn.Linear(17, 3)

    def forward(self, x):
        h = torch.tanh(self.embed(torch.sin(self.coords(x))))
        return self.out(torch.tanh(self.hidden(h)))


class Net(nn.Module):
    """Linears: inp (fan-in 2), enc.0, enc.2, dec.0, out."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(2, 64)
        self.enc = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64))
        self.dec = nn.ModuleList([nn.Linear(64, 64)])
        self.out = nn.Linear(64, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.enc(h))
        h = torch.tanh(self.dec[0](h))
        return self.out(h)


NET_LINEARS = ["inp", "enc.0", "enc.2", "dec.0", "out"]


class EmbeddingTied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(64, 64)
        self.inp = nn.Linear(2, 64)
        self.proj = nn.Linear(64, 64)
        self.proj.weight = self.emb.weight


# ----------------------------------------------------------------------------- helpers
def _inputs(d: int, n: int = 128, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1


def _out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _assert_unchanged(model: nn.Module, taken) -> None:
    assert_unchanged(model, taken)
    assert not hasattr(model, "sinr_config")


def _sinr_names(model: nn.Module) -> list[str]:
    return sorted(n for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, SINRLinear))


# ----------------------------------------------------------------------------- the case table
F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
CASES = {  # model, input dim, input layers kept dense, coded layers, the model's dtype
    "sequential-mlp": (plain_mlp, 2, ["0"], ["2", "4", "6"], F32),
    "no-bias": (no_bias_mlp, 2, ["0"], ["2", "4"], F32),
    "nested-containers": (Nested, 3, ["inp"], ["blocks.0.net.0", "blocks.1.net.0", "head.0", "head.2"], F32),
    "linear-subclass": (Subclassed, 2, ["inp"], ["hidden", "out"], F32),
    "input-layers": (WideInput, 2, ["coords", "embed"], ["hidden", "out"], F32),
    "positional-encoding": (lambda seed=0: PEMLP(seed), 2, ["1"], ["3", "5"], F32),
    "sequential-mlp-float64": (plain_mlp, 2, ["0"], ["2", "4", "6"], F64),
    "sequential-mlp-float16": (plain_mlp, 2, ["0"], ["2", "4", "6"], F16),
    "no-bias-bfloat16": (no_bias_mlp, 2, ["0"], ["2", "4"], BF16),
    "nested-containers-float16": (Nested, 3, ["inp"], ["blocks.0.net.0", "blocks.1.net.0", "head.0", "head.2"], F16),
}


class PEMLP(nn.Sequential):
    """A ReLU MLP on a positional encoding (fan-in 2 + 2 * 2 * 8 = 34): the first linear is an
    input layer although its fan-in is past input_fan_in_max."""

    def __init__(self, seed: int = 0, frequencies: int = 8) -> None:
        torch.manual_seed(seed)
        super().__init__(PositionalEncoding(frequencies), nn.Linear(2 + 4 * frequencies, 64), nn.ReLU(),
                         nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))


class PositionalEncoding(nn.Module):
    def __init__(self, frequencies: int) -> None:
        super().__init__()
        self.register_buffer("scales", 2.0 ** torch.arange(frequencies) * torch.pi, persistent=False)

    def forward(self, x):
        angles = (x[..., None] * self.scales.to(x)).flatten(-2)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


def _close_enough(dtype) -> float:
    """How far two evaluations of one model may differ once rounded to ``dtype`` (float16 /
    bfloat16 keep 11 / 8 significant bits; summation order differs between paths)."""
    return {F32: 1e-5, F64: 1e-5, F16: 2e-3, BF16: 2e-2}[dtype]


@pytest.mark.parametrize("factory,in_dim,dense,coded,dtype", list(CASES.values()), ids=list(CASES))
def test_compress_case(tmp_path, factory, in_dim, dense, coded, dtype):
    model = factory().to(dtype)
    original = copy.deepcopy(model)
    x = _inputs(in_dim).to(dtype)
    reference = _out(original, x)

    plan = compress_model(model, fast_config(), dry_run=True)
    assert sorted(plan.matched) == sorted(coded)
    assert sorted(plan.kept_dense) == sorted(dense)
    assert plan.excluded == [] and plan.unmatched == []

    report = compress_model(model, fast_config())
    # every targeted linear became SINRLinear, the input layers stayed what they were
    assert _sinr_names(model) == sorted(coded)
    for name in dense:
        # input layers are not SINR-coded, only stored on a 16-bit grid (the default value_bits)
        assert type(model.get_submodule(name)) is type(original.get_submodule(name))
        kept, before = model.get_submodule(name).weight, original.get_submodule(name).weight.detach()
        step = float(before.max() - before.min()) / (2**16 - 1)
        ulp = float(before.abs().max()) * torch.finfo(dtype).eps
        assert (kept - before).abs().max() <= step / 2 + ulp + 1e-7
        assert get_storage(model.get_submodule(name), "weight").bits == 16
    assert sorted(l.name for l in report.layers) == sorted(coded)
    for layer_report in report.layers:
        assert 0 < layer_report.rel_error < LAYER_REL_ERROR_BOUND, layer_report
        if dtype in (F32, F64):  # 16-bit codes of a 16-bit model's tiny layer can outgrow it in memory
            assert layer_report.ratio > 1
    assert model.sinr_config == fast_config()

    # the model runs in its own dtype, its parameters keep it, the codes stay float32
    compressed = _out(model, x)
    assert compressed.dtype == dtype and compressed.shape == reference.shape
    for name in coded:
        layer = model.get_submodule(name)
        assert layer.weight.dtype == dtype and layer.values.dtype == torch.float32
        assert layer.bias is None or layer.bias.dtype == dtype
    assert _rel(compressed, reference) < OUTPUT_REL_ERROR_BOUND

    # save / load round trip into a skeleton of the same dtype is bit-exact, and saves the same bytes
    path = tmp_path / "model.safetensors"
    save_compressed(model, path)
    loaded = load_compressed(path, factory(seed=11).to(dtype))
    assert _sinr_names(loaded) == sorted(coded)
    assert torch.equal(_out(loaded, x), compressed)
    save_compressed(loaded, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()

    # .to(float64) / .half() / .bfloat16() work after compression (the dictionary and cache follow)
    for other in (F64, F16, BF16):
        moved = copy.deepcopy(model).to(other)
        for name in coded:
            assert moved.get_submodule(name).weight.dtype == other
        out = _out(moved, x.to(other))
        assert out.dtype == other
        tolerance = max(_close_enough(dtype), _close_enough(other))
        torch.testing.assert_close(out.double(), compressed.double(), rtol=20 * tolerance, atol=20 * tolerance)

    # decompress_model gives plain nn.Linear with identical outputs
    restored = decompress_model(copy.deepcopy(model))
    assert _sinr_names(restored) == []
    for name in coded:
        assert type(restored.get_submodule(name)) is nn.Linear
        assert restored.get_submodule(name).weight.dtype == dtype
    assert not hasattr(restored, "sinr_config")
    assert torch.equal(_out(restored, x), compressed)


def test_decompress_keeps_tied_weights_and_shared_modules():
    x = _inputs(2)
    tied = TiedMLP()
    compress_model(tied, fast_config())
    expected = _out(tied, x)
    decompress_model(tied)
    assert type(tied.a) is nn.Linear and type(tied.b) is nn.Linear
    assert tied.a.weight is tied.b.weight
    assert not torch.equal(tied.a.bias, tied.b.bias)
    assert torch.equal(_out(tied, x), expected)

    shared = SharedMLP()
    compress_model(shared, fast_config())
    assert isinstance(shared.a, SINRLinear) and shared.a is shared.b
    expected = _out(shared, x)
    decompress_model(shared)
    assert type(shared.a) is nn.Linear and shared.a is shared.b
    assert torch.equal(_out(shared, x), expected)


def test_tied_weights_are_coded_once():
    model = TiedMLP()
    report = compress_model(model, fast_config())
    by_name = {l.name: l for l in report.layers}
    assert set(by_name) == {"a", "b", "out"}
    assert by_name["b"].tied_to == "a" and by_name["a"].tied_to is None
    assert model.a.values is model.b.values and model.a.indices is model.b.indices
    assert torch.equal(model.a.weight, model.b.weight)


# ----------------------------------------------------------------------------- targeting
PLANS = {
    "all-linear": (dict(), ["enc.0", "enc.2", "dec.0", "out"], [], ["inp"], []),
    "exact-names": (dict(target_modules=["enc.0", "out"]), ["enc.0", "out"], [], [], ["inp", "enc.2", "dec.0"]),
    "suffix": (dict(target_modules=["0"]), ["enc.0", "dec.0"], [], [], ["inp", "enc.2", "out"]),
    "suffix-and-exact": (dict(target_modules=["2", "out"]), ["enc.2", "out"], [], [], ["inp", "enc.0", "dec.0"]),
    "regex": (dict(target_modules=r"re:enc\.\d+"), ["enc.0", "enc.2"], [], [], ["inp", "dec.0", "out"]),
    "regex-alternation": (dict(target_modules=r"re:(enc|dec)\.0"), ["enc.0", "dec.0"], [], [],
                          ["inp", "enc.2", "out"]),
    "regex-everything": (dict(target_modules="re:.*"), ["enc.0", "enc.2", "dec.0", "out"], [], ["inp"], []),
    "exclude-list": (dict(exclude_modules=["enc.2"]), ["enc.0", "dec.0", "out"], ["enc.2"], ["inp"], []),
    "exclude-regex": (dict(exclude_modules=r"re:enc\..*"), ["dec.0", "out"], ["enc.0", "enc.2"], ["inp"], []),
    "exclude-first": (dict(target_modules=["enc.0", "out"], exclude_modules=["enc.0"]), ["out"], ["enc.0"], [],
                      ["inp", "enc.2", "dec.0"]),
    "exclude-input-layer": (dict(exclude_modules=["inp"]), ["enc.0", "enc.2", "dec.0", "out"], ["inp"], [], []),
    "code-input-layers": (dict(input_fan_in_max=0, keep_first_linear=False), NET_LINEARS, [], [], []),
    "fan-in-rule-only": (dict(keep_first_linear=False), ["enc.0", "enc.2", "dec.0", "out"], [], ["inp"], []),
    "one-pattern-string": (dict(target_modules="enc.2"), ["enc.2"], [], [], ["inp", "enc.0", "dec.0", "out"]),
}


@pytest.mark.parametrize("kwargs,matched,excluded,kept_dense,unmatched", list(PLANS.values()), ids=list(PLANS))
def test_targeting(kwargs, matched, excluded, kept_dense, unmatched):
    config = fast_config(**kwargs)
    model = Net()
    before = _snapshot(model)
    plan = compress_model(model, config, dry_run=True)
    assert sorted(plan.matched) == sorted(matched)
    assert sorted(plan.excluded) == sorted(excluded)
    assert sorted(plan.kept_dense) == sorted(kept_dense)
    assert sorted(plan.unmatched) == sorted(unmatched)
    assert sorted(plan.matched + plan.excluded + plan.kept_dense + plan.unmatched) == sorted(NET_LINEARS)
    _assert_unchanged(model, before)  # the dry run touches nothing
    assert plan_targets(model, config) == plan
    text = str(plan)
    assert all(name in text for name in NET_LINEARS)

    report = compress_model(model, config)
    assert _sinr_names(model) == sorted(matched)
    assert sorted(l.name for l in report.layers) == sorted(matched)
    for name in excluded + kept_dense + unmatched:
        assert type(model.get_submodule(name)) is nn.Linear


def test_regex_uses_fullmatch():
    model = Net()
    before = _snapshot(model)
    for target in (r"re:nc\.0", "nc.0", ["nc.0"]):  # whole names or dotted suffixes, never a substring
        with pytest.raises(SINRConfigError, match="not found"):
            compress_model(model, fast_config(target_modules=target), dry_run=True)
    _assert_unchanged(model, before)


def test_an_unmarked_regex_is_a_name_and_the_error_says_so():
    model = Net()
    with pytest.raises(SINRConfigError, match=r"re:enc\\.\\d\+"):
        compress_model(model, fast_config(target_modules=r"enc\.\d+"))


class Twelve(nn.Module):
    """``net.2`` and ``net12`` side by side: a name pattern must not match both."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(2, 64)
        self.net = nn.ModuleList([nn.Linear(64, 64) for _ in range(3)])
        self.net12 = nn.Linear(64, 64)


def test_one_matcher_for_targets_and_patterns():
    plan = plan_targets(Twelve(), fast_config(target_modules=["net.2"]))
    assert plan.matched == ["net.2"]
    model = Twelve()
    compress_model(model, fast_config(s_pattern={"net.2": 5, "re:net1.": 7}, value_bits_pattern={"2": 9}))
    assert model.net[2].spec.s == 5 and model.net12.spec.s == 7
    assert model.net[2].spec.quantizer.bits == 9 and model.net12.spec.quantizer.bits == 16
    assert model.net[0].spec.s == model.net[1].spec.s == 29


def test_unknown_exclusion_is_reported():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError, match="encoder"):
        compress_model(model, fast_config(exclude_modules=["enc.0", "encoder"]))
    with pytest.raises(SINRConfigError, match="encoder"):
        compress_model(model, fast_config(exclude_modules=["encoder"]), dry_run=True)
    _assert_unchanged(model, before)


def test_nothing_matched():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError, match="matched nothing"):
        compress_model(model, fast_config(target_modules=["out"], exclude_modules=["out"]))
    with pytest.raises(SINRConfigError):
        compress_model(model, fast_config(target_modules=r"re:decoder\..*"))
    with pytest.raises(SINRConfigError, match="matched nothing"):  # only input layers are targeted
        compress_model(model, fast_config(target_modules=r"re:inp"))
    _assert_unchanged(model, before)


def test_listed_target_not_found_is_named():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError, match="missing_layer"):
        compress_model(model, fast_config(target_modules=["enc.0", "missing_layer"]))
    with pytest.raises(SINRConfigError, match="missing_layer"):
        compress_model(model, fast_config(target_modules=["enc.0", "missing_layer"]), dry_run=True)
    _assert_unchanged(model, before)


@pytest.mark.parametrize("target", [["enc"], ["dec"], ["enc.1"], ["out", "enc"]],
                         ids=["sequential", "modulelist", "activation", "mixed"])
def test_listed_target_that_is_not_linear(target):
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError):
        compress_model(model, fast_config(target_modules=target))
    _assert_unchanged(model, before)


def test_model_that_is_a_linear():
    with pytest.raises(SINRConfigError):
        compress_model(nn.Linear(64, 64))


@pytest.mark.parametrize("factory,config", [
    (TiedMLP, fast_config(target_modules=["a"])),
    (TiedMLP, fast_config(exclude_modules=["b"])),
    (EmbeddingTied, fast_config()),
    (SharedMLP, fast_config(target_modules=["a"])),
], ids=["tied-linear-not-targeted", "tied-linear-excluded", "tied-to-embedding", "shared-module-half-targeted"])
def test_weight_shared_with_non_targeted_module(factory, config):
    model = factory()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError):
        compress_model(model, config)
    _assert_unchanged(model, before)


# ----------------------------------------------------------------------------- atomicity
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_bad_weight_in_second_layer_changes_nothing(bad):
    model = Net()
    with torch.no_grad():
        model.enc[2].weight[3, 5] = bad
    before = _snapshot(model)
    first_layer = model.enc[0]
    with pytest.raises(SINRInputError) as info:
        compress_model(model, fast_config())
    assert isinstance(info.value, SINRError) and isinstance(info.value, ValueError)
    assert "enc.2" in str(info.value)
    assert model.enc[0] is first_layer and type(model.enc[0]) is nn.Linear
    _assert_unchanged(model, before)


def test_s_too_large_changes_nothing():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError):
        compress_model(model, fast_config(s=65))
    _assert_unchanged(model, before)


def test_target_error_out_of_reach_changes_nothing():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError, match="out of reach"):
        compress_model(model, fast_config(target_error=1e-6, dict_ratio=1))
    _assert_unchanged(model, before)


def _with_buffer(dtype, shape):
    def factory(values: bool = True):
        model = Net()
        extra = torch.zeros(shape, dtype=dtype)
        if values:  # distinct non-zero entries, so a buffer lost or rewritten on the way shows
            extra = (torch.arange(extra.numel()) * 3 + 1).reshape(shape).to(dtype)
            if dtype.is_complex:
                extra = extra + 0.5j
        model.register_buffer("extra", extra)
        return model
    return factory


def _with_batchnorm(values: bool = True):
    model = Net()
    model.enc.insert(1, nn.BatchNorm1d(64))  # adds a 0-dim int64 num_batches_tracked
    if values:
        model.enc[1](torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))  # running stats and count move
    return model


@pytest.mark.parametrize("factory, coded", [
    (_with_buffer(torch.complex64, (4,)), ["dec.0", "enc.0", "enc.2", "out"]),
    (_with_buffer(torch.uint16, (4,)), ["dec.0", "enc.0", "enc.2", "out"]),
    (_with_buffer(torch.float32, ()), ["dec.0", "enc.0", "enc.2", "out"]),
    (_with_batchnorm, ["dec.0", "enc.0", "enc.3", "out"]),
], ids=["complex64-buffer", "uint16-buffer", "scalar-float-buffer", "batchnorm"])
def test_unusual_buffers_are_stored_exactly(factory, coded, tmp_path):
    """Every buffer dtype the format stores (complex64, uint16, 0-dim, BatchNorm's int64 count) is
    compressed around, kept bit for bit and written to the file: no refusal (the old version of
    this test accepted a refusal as long as nothing changed)."""
    model = factory()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    compress_model(model, fast_config())
    assert _sinr_names(model) == coded
    save_compressed(model, tmp_path / "m.safetensors")
    loaded = load_compressed(tmp_path / "m.safetensors", factory(values=False))
    for where in (model, loaded):
        now = dict(where.named_buffers())
        for name, b in buffers.items():
            assert now[name].dtype == b.dtype and torch.equal(now[name], b), name


# ----------------------------------------------------------------------------- configs
BAD_CONFIGS = {
    "value_bits=1": dict(value_bits=1),
    "value_bits=17": dict(value_bits=17),
    "dense_dtype=int8": dict(dense_dtype="int8"),
    "s_ratio=0": dict(s_ratio=0),
    "s_ratio=1.5": dict(s_ratio=1.5),
    "target_error=2": dict(target_error=2),
    "target_error=0": dict(target_error=0),
    "invalid-regex": dict(target_modules="re:enc["),
    "invalid-exclude-regex": dict(exclude_modules="re:(out"),
    "empty-pattern": dict(target_modules=[""]),
    "keep_first_linear-not-bool": dict(keep_first_linear=1),
    "target-not-str": dict(target_modules=5),
    "target-list-of-ints": dict(target_modules=[1, 2]),
    "exclude-all-linear": dict(exclude_modules="all-linear"),
    "s=0": dict(s=0),
    "k2=0": dict(k2=0),
    "dict_ratio=0": dict(dict_ratio=0),
    "seed=-1": dict(seed=-1),
    "mode": dict(mode="column"),
    "coder": dict(coder="lasso"),
    "index_coding": dict(index_coding="zzz"),
    "input_fan_in_max=-1": dict(input_fan_in_max=-1),
    "s_pattern-zero": dict(s_pattern={"out": 0}),
    "version": dict(version=2),
}


@pytest.mark.parametrize("kwargs", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config(kwargs):
    config = fast_config(**kwargs)
    with pytest.raises(SINRConfigError):
        config.validate()
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError):
        compress_model(model, config)
    with pytest.raises(SINRConfigError):
        compress_model(model, config, dry_run=True)
    _assert_unchanged(model, before)


def test_invalid_s_pattern_regex():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(SINRConfigError):
        compress_model(model, fast_config(s_pattern={"re:enc(": 4}))
    _assert_unchanged(model, before)


# ----------------------------------------------------------------------------- sparsity
def test_target_error_is_met():
    default = {l.name: l for l in compress_model(Net(), fast_config()).layers}
    model = Net()
    report = compress_model(model, fast_config(target_error=0.1))
    assert len(report.layers) == 4
    for layer in report.layers:
        # the target is met before quantization; 16-bit values add a hair
        assert layer.rel_error <= 0.105, layer
        assert model.get_submodule(layer.name).spec.s == layer.s
        assert layer.s < default[layer.name].s  # a looser target needs fewer non-zeros
    tighter = compress_model(Net(), fast_config(target_error=0.07))
    for loose, tight in zip(report.layers, tighter.layers):
        assert tight.rel_error <= 0.0735
        assert tight.s > loose.s


def test_explicit_s_and_s_pattern():
    model = Net()
    compress_model(model, fast_config(s=5))
    assert {name: model.get_submodule(name).spec.s for name in _sinr_names(model)} == \
        {"enc.0": 5, "enc.2": 5, "dec.0": 5, "out": 5}
    assert model.enc[0].indices.shape == (64, 5) and model.enc[0].values.shape == (64, 5)

    model = Net()
    compress_model(model, fast_config(s_pattern={"enc.0": 7, r"re:dec\.\d": 9}))
    auto = model.enc[2].spec.s
    assert auto == 29  # ceil(0.45 * 64)
    assert model.enc[0].spec.s == 7 and model.dec[0].spec.s == 9 and model.out.spec.s == auto

    model = Net()
    compress_model(model, fast_config(s=11, s_pattern={"out": 3}))
    assert model.out.spec.s == 3
    assert model.enc[0].spec.s == model.enc[2].spec.s == model.dec[0].spec.s == 11


def test_value_bits_pattern_and_exact_names_win():
    model = Net()
    compress_model(model, fast_config(value_bits=12, value_bits_pattern={r"re:enc\.\d": 6, "enc.2": 9}))
    bits = {name: model.get_submodule(name).spec.quantizer.bits for name in _sinr_names(model)}
    assert bits == {"enc.0": 6, "enc.2": 9, "dec.0": 12, "out": 12}
    with pytest.raises(SINRConfigError, match="value_bits_pattern"):
        fast_config(value_bits_pattern={"out": 40}).validate()


# ----------------------------------------------------------------------------- report
def test_report_table_and_json():
    model = Net()
    report = compress_model(model, fast_config())
    text = str(report)
    assert text == report.table()
    assert text.startswith("| layer |")
    for name in ["enc.0", "enc.2", "dec.0", "out"]:
        assert f"| {name} |" in text
    assert "**file**" in text and "| container (header, names, CRC) |" in text
    data = json.loads(report.to_json())
    assert [l["name"] for l in data["layers"]] == [l.name for l in report.layers]
    assert data["total_coded_bytes"] == report.total_coded_bytes
    assert data["total_dense_bytes"] == report.total_dense_bytes
    assert sorted(report.dense_names) == ["inp.bias", "inp.weight"]
    assert report.total_coded_bytes == (sum(l.coded_bytes for l in report.layers) + report.coded_bytes_other
                                        + report.container_bytes) == report.file_bytes
    # the bytes no tensor claims are exactly what the file writer counts as container (header, names, CRC);
    # measured 217 here (0 < ... < 400 let 140 bytes of a dense bias counted as container pass)
    assert report.container_bytes == report.file_parts["container"]
    assert 200 < report.container_bytes < 240
    for l in report.layers:  # a layer's bytes: its coded streams plus their side info
        assert 8 * l.coded_bytes >= l.bits_values + l.bits_indices + l.bits_bias - 16
        assert l.dense_bytes == 4 * l.params
    assert report.ratio > 1


def test_report_totals_count_tied_layers_bias_only():
    model = TiedMLP()
    report = compress_model(model, fast_config())
    assert "(tied to a)" in str(report)
    json.loads(report.to_json())
    untied = [l for l in report.layers if l.tied_to is None]
    assert len(untied) == len(report.layers) - 1
    # a tied layer adds only its own bias stream to the total
    assert report.total_coded_bytes == (sum(l.coded_bytes for l in report.layers) + report.coded_bytes_other
                                        + report.container_bytes)
    assert all(l.bits_values == l.bits_indices == 0 for l in report.layers if l.tied_to)
    # likewise its dense size is its bias alone (the shared weight is counted once)
    assert report.total_dense_bytes == sum(l.dense_bytes for l in report.layers) + report.dense_bytes_other
    assert all(l.dense_bytes == 4 * l.shape[0] for l in report.layers if l.tied_to)


# ----------------------------------------------------------------------------- SINRLinear
@pytest.fixture
def layer() -> SINRLinear:
    model = Net()
    compress_model(model, fast_config())
    return model.enc[0]


def test_training_gives_gradients_on_values(layer):
    layer.train()
    layer.values.requires_grad_(True)
    x = _inputs(64, n=16)
    out = layer(x)
    out.square().sum().backward()
    assert layer.values.grad is not None
    assert layer.values.grad.shape == layer.values.shape
    assert layer.values.grad.abs().sum() > 0
    assert layer.bias.grad is not None
    assert not layer.indices.requires_grad
    # matches the gradient through the dense weight: dL/dX = dL/dW @ A
    weight = layer.weight.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x, weight, layer.bias.detach()).square().sum().backward()
    dense_rows = weight.grad.double() @ layer.dictionary().double()  # (out, k2)
    expected = dense_rows.gather(1, layer.indices)
    torch.testing.assert_close(layer.values.grad.double(), expected, rtol=1e-4, atol=1e-4)


def test_trainable_config_sets_requires_grad():
    model = Net()
    compress_model(model, fast_config(trainable=True))
    assert model.enc[0].values.requires_grad
    model = Net()
    compress_model(model, fast_config())
    assert not model.enc[0].values.requires_grad


def test_eval_mode_caches_weight(layer):
    layer.eval()
    first = layer.weight
    assert layer.weight is first
    assert torch.equal(first, layer.decoded_weight())
    layer.train()  # training without requires_grad still uses the cache
    assert layer.weight is first


def test_in_place_edit_invalidates_cache(layer):
    layer.eval()
    first = layer.weight
    with torch.no_grad():
        layer.values.mul_(2)
    second = layer.weight
    assert second is not first
    assert torch.equal(second, layer.decoded_weight())
    torch.testing.assert_close(second, 2 * first)
    # moving one support index (kept sorted and distinct) invalidates it too
    i0, i1 = int(layer.indices[0, 0]), int(layer.indices[0, 1])
    moved = i0 + 1 if i0 + 1 < i1 else i0 - 1
    assert moved >= 0 and moved != i0
    with torch.no_grad():
        layer.indices[0, 0] = moved
    third = layer.weight
    assert third is not second
    assert torch.equal(third, layer.decoded_weight())
    assert not torch.equal(third[0], second[0]) and torch.equal(third[1:], second[1:])
    with torch.no_grad():
        layer.values.zero_()
    assert torch.count_nonzero(layer.weight) == 0


def test_in_place_edit_through_data_invalidates_cache(layer):
    layer.eval()
    first = layer.weight.clone()
    layer.values.data.mul_(2)
    assert torch.equal(layer.weight, layer.decoded_weight())
    assert not torch.equal(layer.weight, first)


def test_dtype_move_drops_cache(layer):
    layer.eval()
    first = layer.weight
    layer.to(torch.float64)
    assert layer.weight.dtype == torch.float64
    torch.testing.assert_close(layer.weight.float(), first)


def test_repr(layer):
    text = repr(layer)
    assert text.startswith("SINRLinear(")
    assert f"s={layer.spec.s}" in text and f"k2={layer.spec.k2}" in text
    assert "in_features=64" in text and "out_features=64" in text


# ----------------------------------------------------------------------------- first-use checks
@pytest.mark.parametrize("where", ["coded-bias", "input-weight", "input-bias", "output-bias"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_or_inf_anywhere_it_would_be_stored_is_refused(where, bad):
    model = Net()
    tensor = {"coded-bias": model.enc[0].bias, "input-weight": model.inp.weight, "input-bias": model.inp.bias,
              "output-bias": model.out.bias}[where]
    with torch.no_grad():
        tensor.view(-1)[1] = bad
    before = _snapshot(model)
    with pytest.raises(SINRInputError, match="NaN/Inf"):
        compress_model(model, fast_config())
    _assert_unchanged(model, before)


@pytest.mark.parametrize("where", ["bias", "dense"])
def test_nan_after_compression_is_not_saved(tmp_path, where):
    model = Net()
    compress_model(model, fast_config())
    with torch.no_grad():
        (model.enc[0].bias if where == "bias" else model.inp.weight).view(-1)[0] = float("nan")
    with pytest.raises(SINRInputError, match="NaN or Inf"):
        save_compressed(model, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_already_compressed_is_reported_as_such():
    from torch_sinr import SINRAlreadyCompressedError

    model = Net()
    compress_model(model, fast_config())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SINRAlreadyCompressedError, match="already SINR-compressed"):
        compress_model(model, fast_config())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # untouched by the refusal
    # a dry run after compression lists the SINR layers instead of an empty plan
    plan = compress_model(model, dry_run=True)
    assert sorted(plan.already_compressed) == ["dec.0", "enc.0", "enc.2", "out"]
    assert "already compressed (SINR layers) (4)" in str(plan) and "enc.2" in str(plan)
    # after decompress_model it compresses again
    decompress_model(model)
    assert len(compress_model(model, fast_config()).layers) == 4


def test_coding_an_input_layer_explicitly_warns():
    with pytest.warns(UserWarning, match="'inp' looks like an input layer"):
        compress_model(Net(), fast_config(target_modules=["inp", "enc.0"]))
    model = PEMLP()
    with pytest.warns(UserWarning, match="'1' looks like an input layer"):
        compress_model(model, fast_config(target_modules=["1", "3"]))
    assert isinstance(model[1], SINRLinear)


def test_a_regex_over_an_input_layer_keeps_it_dense_and_says_so():
    model = PEMLP()  # model[1] is the first linear, fed by the positional encoding
    with pytest.warns(UserWarning, match=r"\['1'\] matched the target regex but is kept dense as input layer") as seen:
        report = compress_model(model, fast_config(target_modules=r"re:[13]"))
    assert [w for w in seen if "looks like an input layer" in str(w.message)] == []  # not coded, so no cost warning
    assert isinstance(model[1], nn.Linear) and isinstance(model[3], SINRLinear)
    assert [l.name for l in report.layers] == ["3"]
    # the warning points at the caller's line, not into the library
    assert seen[0].filename == __file__


def test_store_dense_puts_every_tensor_on_its_grid_and_writes_a_file(tmp_path):
    from torch_sinr.nn.transform import store_dense

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2))
    original = copy.deepcopy(model)
    config = SINRConfig(value_bits=8, dense_bits_pattern={r"re:2\.weight": 4})
    report = store_dense(model, config)
    assert report.layers == [] and model.sinr_config is config
    assert get_storage(model[2], "weight").bits == 4 and get_storage(model[0], "weight").bits == 8
    for key, tensor in model.state_dict().items():
        grid = get_storage(model[int(key[0])], key.split(".")[1])
        assert torch.equal(grid.round_trip(original.state_dict()[key]).reshape(tensor.shape), tensor)
    size = save_compressed(model, tmp_path / "u.safetensors").file_bytes
    restored = load_compressed(tmp_path / "u.safetensors", copy.deepcopy(original))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
    assert size < 4 * sum(t.numel() for t in model.state_dict().values())
    coded = copy.deepcopy(original)
    compress_model(coded, fast_config(target_modules=["2"]))
    with pytest.raises(SINRError, match="already SINR-compressed"):
        store_dense(coded, config)
