"""Checks shared by the tests: a failed operation left a model exactly as it was; a model and
its loaded copy write the same bytes."""

import torch
from torch import nn

from torch_sinr import SINRLinear


def snapshot(model: nn.Module):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    kinds = {name: type(m) for name, m in model.named_modules(remove_duplicate=False)}
    return state, kinds


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8))


def assert_unchanged(model: nn.Module, taken) -> None:
    state, kinds = taken
    assert {name: type(m) for name, m in model.named_modules(remove_duplicate=False)} == kinds
    assert not any(isinstance(m, SINRLinear) for m in model.modules())
    now = model.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert same(now[key], value), key


def assert_same_bytes(model: nn.Module, loaded: nn.Module, path, tmp_path) -> None:
    """Same model, same bytes; and a loaded model re-saves to them (settings travel in the file).
    Each save encodes from scratch, not from the payload cache."""
    from torch_sinr.format import model_io
    from torch_sinr.format import save_compressed

    model_io.forget_payload()
    save_compressed(model, tmp_path / "again.safetensors")
    model_io.forget_payload()
    save_compressed(loaded, tmp_path / "reloaded.safetensors")
    expected = path.read_bytes()
    assert (tmp_path / "again.safetensors").read_bytes() == expected
    assert (tmp_path / "reloaded.safetensors").read_bytes() == expected
