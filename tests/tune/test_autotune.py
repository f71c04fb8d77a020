"""autotune meets a PSNR-drop or byte target on a tiny fitted SIREN, measured on the written file."""

import pytest
import torch

from torch_sinr import ByteBudget, MaxDrop, SINRConfig, SINRError, autotune, compress_model
from torch_sinr.errors import SINRConfigError
from torch_sinr.inr.images import load_image
from torch_sinr.inr.models import INR, INRConfig, fit_image, psnr, render
from torch_sinr.format import load_compressed, save_compressed

from ..model_checks import assert_unchanged, snapshot
from ..tiny_models import SharedMLP, TiedMLP
from tests.tiny_models import fast_config

ARCH = INRConfig(hidden_features=24, hidden_layers=2)
MENUS = {"s_ratios": (0.45, 0.3, 0.2), "value_bits": (16, 10, 8, 6, 4)}


@pytest.fixture(scope="module")
def fitted():
    image = load_image(downscale=16)
    torch.manual_seed(0)
    model = INR(ARCH)
    fit_image(model, image, 150, progress=False)
    return image, model.state_dict()


def _model(state):
    model = INR(ARCH)
    model.load_state_dict(state)
    return model.eval()


def _scorer(image):
    return lambda m: psnr(render(m, *image.shape[1:]), image)


@pytest.mark.parametrize("drop", [0.3, 2.0])
def test_meets_psnr_drop_on_the_written_file(fitted, tmp_path, drop):
    image, state = fitted
    evaluate = _scorer(image)
    model = _model(state)
    reference = evaluate(model)
    result = autotune(model, evaluate, MaxDrop(drop), fast_config(), **MENUS, progress=False)
    assert result.reference_score == reference
    report = save_compressed(model, tmp_path / "tuned.safetensors")
    assert report.file_bytes == result.file_bytes
    restored = load_compressed(tmp_path / "tuned.safetensors", INR(ARCH)).eval()
    assert evaluate(restored) == pytest.approx(result.score, abs=1e-9)
    assert result.score >= reference - drop
    # It chose something cheaper than the richest setting on its menus.
    richest = _model(state)
    compress_model(richest, fast_config(s_ratio=0.45, value_bits=16))
    assert result.file_bytes < save_compressed(richest, tmp_path / "rich.safetensors").file_bytes
    assert result.history and all(h["score"] >= reference - drop for h in result.history)


def test_looser_target_gives_a_smaller_file(fitted):
    image, state = fitted
    tight = autotune(_model(state), _scorer(image), MaxDrop(0.3), fast_config(), **MENUS, progress=False)
    loose = autotune(_model(state), _scorer(image), MaxDrop(2.0), fast_config(), **MENUS, progress=False)
    assert loose.file_bytes < tight.file_bytes


def test_returned_config_reproduces_the_model(fitted):
    image, state = fitted
    model = _model(state)
    result = autotune(model, _scorer(image), MaxDrop(1.0), fast_config(), **MENUS, progress=False)
    again = _model(state)
    compress_model(again, result.config)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert {n: (l.s, l.value_bits) for n, l in ((x.name, x) for x in result.report.layers)} == result.choices
    # printed, the result is a table (a choice row per layer, the report, the outcome), not a dataclass dump
    text = str(result)
    assert "AutotuneResult(" not in text and text.startswith("| layer | coding | s | bits |")
    for name, (s, bits) in result.choices.items():
        assert f"| {name} | SINR | {s} | {bits} |" in text
    assert result.report.table() in text
    assert f"file: {result.file_bytes} B" in text and f"after {result.evaluations} evaluations" in text


def test_byte_budget_is_met(fitted, tmp_path):
    image, state = fitted
    evaluate = _scorer(image)
    rich = _model(state)
    compress_model(rich, fast_config(s_ratio=0.45, value_bits=16))
    budget = int(0.7 * save_compressed(rich, tmp_path / "rich.safetensors").file_bytes)
    model = _model(state)
    result = autotune(model, evaluate, ByteBudget(budget), fast_config(), **MENUS, progress=False)
    assert result.file_bytes <= budget
    assert save_compressed(model, tmp_path / "b.safetensors").file_bytes == result.file_bytes


def test_impossible_targets_raise_and_leave_the_model_unchanged(fitted):
    image, state = fitted
    model = _model(state)
    before = snapshot(model)
    with pytest.raises(SINRError, match="cannot be met"):
        autotune(model, _scorer(image), MaxDrop(0.0), fast_config(), **MENUS, progress=False)
    with pytest.raises(SINRError, match="cannot be met"):
        autotune(model, _scorer(image), ByteBudget(100), fast_config(), **MENUS, progress=False)
    assert_unchanged(model, before)


def test_bad_arguments_are_named(fitted):
    image, state = fitted
    with pytest.raises(SINRConfigError, match="MaxDrop"):
        MaxDrop(-1.0)
    with pytest.raises(SINRConfigError, match="ByteBudget"):
        ByteBudget(0)
    with pytest.raises(SINRConfigError, match="target"):
        autotune(_model(state), _scorer(image), 0.5, fast_config())
    with pytest.raises(SINRConfigError, match="value_bits"):
        autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(), value_bits=(40,))
    with pytest.raises(SINRError, match="finite"):
        autotune(_model(state), lambda m: float("nan"), MaxDrop(1.0), fast_config())


@pytest.mark.parametrize("factory", [TiedMLP, SharedMLP], ids=["tied-weights", "shared-module"])
def test_tied_and_shared_layers_stay_linked(factory, tmp_path):
    """A tied weight is coded once: a setting chosen for it applies to every user of the codes."""
    x = torch.rand(256, 2) * 2 - 1
    target = factory()(x).detach()

    def evaluate(m):  # negative output error: higher is better
        return -float(((m(x) - target) ** 2).mean().sqrt())

    model = factory()
    result = autotune(model, evaluate, MaxDrop(0.02), fast_config(), **MENUS, progress=False)
    assert result.score >= result.reference_score - 0.02
    assert model.a.values is model.b.values and model.a.spec == model.b.spec
    save_compressed(model, tmp_path / "t.safetensors")
    restored = load_compressed(tmp_path / "t.safetensors", factory(seed=3))
    assert torch.equal(restored(x), model(x))


def _on_a_grid(state, name: str, bits: int) -> dict:
    """``state`` with one weight rounded to its own ``bits``-bit uniform grid: a layer a uniform
    grid of that width codes exactly (refitting keeps the grid: its ends are grid points)."""
    from torch_sinr.core.quantization import UniformQuantizer

    state = {k: v.clone() for k, v in state.items()}
    weight = state[name]
    state[name] = UniformQuantizer.fit(weight, bits).round_trip(weight).reshape(weight.shape)
    return state


def test_a_layer_a_uniform_grid_codes_better_is_coded_uniformly(fitted, tmp_path):
    from torch_sinr.nn.storage import get_storage

    image, state = fitted
    state = _on_a_grid(state, "net.2.weight", 4)
    sinr_only = autotune(_model(state), _scorer(image), MaxDrop(0.3), fast_config(), **MENUS, progress=False)
    model = _model(state)
    result = autotune(model, _scorer(image), MaxDrop(0.3), fast_config(), **MENUS, progress=False,
                      uniform_bits=(8, 6, 4))
    assert result.uniform["net.2"] == 4  # exact at 4 bits: every narrowing was free
    assert set(result.uniform) | set(result.choices) == {"net.2", "net.4", "net.6"}
    assert result.choices and not set(result.uniform) & set(result.choices)  # one layer at least stays SINR
    assert result.score >= result.reference_score - 0.3
    assert result.file_bytes < sinr_only.file_bytes
    assert "| net.2 | uniform | - | 4 |" in str(result)
    assert not any(move.get("start") for move in result.history)  # the SINR start met the floor: kept
    # the model holds what the file holds: a dense linear on its 4-bit grid, the rest SINR
    assert type(model.net[2]) is torch.nn.Linear and get_storage(model.net[2], "weight").bits == 4
    assert torch.equal(model.net[2].weight, state["net.2.weight"])
    assert save_compressed(model, tmp_path / "m.safetensors").file_bytes == result.file_bytes
    restored = load_compressed(tmp_path / "m.safetensors", INR(ARCH)).eval()
    assert _scorer(image)(restored) == result.score
    # and the config alone reproduces it
    again = _model(state)
    compress_model(again, result.config)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_a_sinr_start_that_misses_the_floor_moves_layers_to_grids(fitted, tmp_path):
    # SINR at its richest with 10-bit values loses 0.14 dB here: with SINR only a 0.1 dB target
    # cannot be met, while a 12-bit grid on a layer can meet it
    image, state = fitted
    menus = {"s_ratios": (0.45,), "value_bits": (10,)}
    with pytest.raises(SINRError, match="cannot be met"):
        autotune(_model(state), _scorer(image), MaxDrop(0.1), fast_config(), **menus, progress=False)
    model = _model(state)
    result = autotune(model, _scorer(image), MaxDrop(0.1), fast_config(), **menus, progress=False,
                      uniform_bits=(12, 8))
    started = [move for move in result.history if move.get("start")]
    assert started and all(move["coding"] == "uniform" and move["bits"] == 12 for move in started)
    assert started[0]["score"] >= result.reference_score - 0.1  # moved until the floor was met, no further
    assert result.choices and result.uniform  # one layer at least stays SINR
    assert result.score >= result.reference_score - 0.1
    assert save_compressed(model, tmp_path / "m.safetensors").file_bytes == result.file_bytes
    # a floor no start can reach still raises, naming the grids it tried
    with pytest.raises(SINRError, match="widest grid"):
        autotune(_model(state), _scorer(image), MaxDrop(0.0), fast_config(), **menus, progress=False,
                 uniform_bits=(12, 8))


def test_without_uniform_bits_every_target_is_sinr(fitted):
    image, state = fitted
    result = autotune(_model(_on_a_grid(state, "net.2.weight", 4)), _scorer(image), MaxDrop(0.3), fast_config(),
                      **MENUS, progress=False)
    assert result.uniform == {} and set(result.choices) == {"net.2", "net.4", "net.6"}


@pytest.mark.parametrize("factory", [TiedMLP, SharedMLP], ids=["tied-weights", "shared-module"])
def test_tied_and_shared_codes_are_never_split_into_uniform(factory):
    x = torch.rand(256, 2) * 2 - 1
    target = factory()(x).detach()
    model = factory()
    result = autotune(model, lambda m: -float(((m(x) - target) ** 2).mean().sqrt()), MaxDrop(0.05), fast_config(),
                      **MENUS, progress=False, uniform_bits=(8, 6, 4))
    assert not {"a", "b"} & set(result.uniform)
    assert model.a.values is model.b.values


def test_bad_uniform_bits_are_named(fitted):
    image, state = fitted
    for bad in ((1,), (17,), (True,)):
        with pytest.raises(SINRConfigError, match="uniform_bits"):
            autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(), uniform_bits=bad)
    with pytest.raises(SINRConfigError, match="choose one"):
        autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(dense_dtype="float16"), uniform_bits=(8,))


def test_dense_tensors_get_their_own_widths(fitted, tmp_path):
    from torch_sinr.nn.storage import get_storage

    image, state = fitted
    state = _on_a_grid(state, "net.0.bias", 4)  # exact at 4 bits: every narrowing of it is free
    model = _model(state)
    result = autotune(model, _scorer(image), MaxDrop(0.3), fast_config(), **MENUS, progress=False,
                      dense_bits=(16, 12, 8, 6, 4))
    # every float parameter SINR does not code was searched: the input layer and every bias
    assert set(result.dense) == {"net.0.weight", "net.0.bias", "net.2.bias", "net.4.bias", "net.6.bias"}
    assert result.dense["net.0.bias"] == 4
    assert get_storage(model.net[0], "bias").bits == 4 and torch.equal(model.net[0].bias, state["net.0.bias"])
    assert get_storage(model.net[2], "bias").bits == result.dense["net.2.bias"]
    assert "| net.0.weight | dense tensor | - |" in str(result) and result.seconds > 0
    assert result.score >= result.reference_score - 0.3
    assert save_compressed(model, tmp_path / "m.safetensors").file_bytes == result.file_bytes
    restored = load_compressed(tmp_path / "m.safetensors", INR(ARCH)).eval()
    assert _scorer(image)(restored) == result.score
    again = _model(state)
    compress_model(again, result.config)  # the widths are in the config: it alone reproduces the model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_sinr_off_is_mixed_precision_uniform_quantization(fitted, tmp_path):
    from torch_sinr.nn.layer import SINRLinear

    image, state = fitted
    model = _model(state)
    result = autotune(model, _scorer(image), MaxDrop(1.0), fast_config(), **MENUS, progress=False,
                      uniform_bits=(8, 6, 4), dense_bits=(16, 10, 8), sinr=False)
    assert result.choices == {} and set(result.uniform) == {"net.2", "net.4", "net.6"}
    assert not any(isinstance(m, SINRLinear) for m in model.modules())
    assert result.history and result.score >= result.reference_score - 1.0
    # the same container and reader as every SINR file: written, read back, the same score
    assert save_compressed(model, tmp_path / "u.safetensors").file_bytes == result.file_bytes
    restored = load_compressed(tmp_path / "u.safetensors", INR(ARCH)).eval()
    assert _scorer(image)(restored) == result.score
    # searched from its widest grids: 8-bit uniform everywhere is the start, and the search went below it
    widest = autotune(_model(state), _scorer(image), ByteBudget(2**40), fast_config(), **MENUS, progress=False,
                      uniform_bits=(8, 6, 4), dense_bits=(16, 10, 8), sinr=False)
    assert set(widest.uniform.values()) == {8} and set(widest.dense.values()) == {16}
    assert result.file_bytes < widest.file_bytes


def test_sinr_off_needs_grids_and_refuses_tied_codes(fitted):
    image, state = fitted
    with pytest.raises(SINRConfigError, match="uniform_bits"):
        autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(), sinr=False)
    for bad in ((1,), (17,), (True,), "8"):
        with pytest.raises(SINRConfigError, match="dense_bits"):
            autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(), dense_bits=bad)
    with pytest.raises(SINRConfigError, match="choose one"):
        autotune(_model(state), _scorer(image), MaxDrop(1.0), fast_config(dense_dtype="float16"), dense_bits=(8,))
    x = torch.rand(64, 2) * 2 - 1
    model = TiedMLP()
    before = snapshot(model)
    with pytest.raises(SINRConfigError, match="tied or shared"):
        autotune(model, lambda m: -float(m(x).square().mean()), MaxDrop(0.05), fast_config(), **MENUS,
                 progress=False, uniform_bits=(8,), sinr=False)
    assert_unchanged(model, before)
