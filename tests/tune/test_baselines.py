"""Baselines write real files, decode back to what they claim, and fine-tune fairly."""

import copy

import pytest
import torch
from torch import nn

from torch_sinr.tune.baselines import (finetune_uniform, read_baseline, uniform_round_trip, write_cast, write_low_rank,
                                  write_pruned, write_uniform)


@pytest.fixture
def state():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).state_dict()


def test_cast_and_uniform_files(state, tmp_path):
    size16 = write_cast(state, tmp_path / "h.safetensors", "float16")
    size32 = write_cast(state, tmp_path / "f.safetensors", "float32")
    assert size16 < size32
    decoded = read_baseline(tmp_path / "h.safetensors")
    assert all(torch.equal(decoded[k], v.half().float()) for k, v in state.items())
    sizes = {b: write_uniform(state, tmp_path / f"u{b}.safetensors", b) for b in (6, 8, 16)}
    assert sizes[6] < sizes[8] < sizes[16]
    decoded = read_baseline(tmp_path / "u8.safetensors")
    expected = uniform_round_trip(state, 8)
    assert all(torch.equal(decoded[k], expected[k]) for k in state)


def test_pruned_and_low_rank_files(state, tmp_path):
    write_pruned(state, tmp_path / "p.safetensors", keep=0.25, bits=8)
    decoded = read_baseline(tmp_path / "p.safetensors")
    w = decoded["2.weight"]
    assert ((w != 0).sum(1) == 8).all()  # 25% of 32 per row
    kept = state["2.weight"].abs().topk(8, dim=1).indices
    assert torch.equal((w != 0), torch.zeros_like(w, dtype=torch.bool).scatter(1, kept, True))
    write_low_rank(state, tmp_path / "r.safetensors", rank=4)
    decoded = read_baseline(tmp_path / "r.safetensors")
    assert torch.linalg.matrix_rank(decoded["2.weight"]) == 4
    u, s, vh = torch.linalg.svd(state["2.weight"])
    best = (u[:, :4] * s[:4]) @ vh[:4]
    assert torch.allclose(decoded["2.weight"], best, atol=1e-5)


def _toy_regression(points: int):
    """A small MLP and the MSE of fitting sin(6x) summed over two inputs at ``points`` random inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    x = torch.rand(points, 2)
    y = torch.sin(6 * x).sum(1, keepdim=True)
    return model, lambda m: ((m(x) - y) ** 2).mean()


def test_finetune_uniform_lowers_loss_and_file_holds_the_result(tmp_path):
    model, loss = _toy_regression(256)
    plain = copy.deepcopy(model)
    plain.load_state_dict(uniform_round_trip(model.state_dict(), 4))
    with torch.no_grad():
        before = loss(plain).item()  # 4-bit quantization without fine-tuning
    state, grids = finetune_uniform(model, loss, bits=4, steps=200, lr=1e-2)
    model.load_state_dict(state)
    with torch.no_grad():
        assert loss(model).item() < 0.9 * before
    write_uniform(state, tmp_path / "ft.safetensors", 4, grids)
    decoded = read_baseline(tmp_path / "ft.safetensors")
    assert all(torch.equal(decoded[k], v) for k, v in state.items())


def test_finetune_uniform_never_ends_worse_than_plain_quantization():
    model, loss = _toy_regression(64)
    plain = copy.deepcopy(model)
    plain.load_state_dict(uniform_round_trip(model.state_dict(), 10))
    state, _ = finetune_uniform(model, loss, bits=10, steps=5, lr=10.0)  # absurd lr: every step hurts
    tuned = copy.deepcopy(model)
    tuned.load_state_dict(state)
    with torch.no_grad():
        assert loss(tuned).item() <= loss(plain).item()


def test_finetune_uniform_select_keeps_the_best_scored_iterate():
    """As finetune_codes: with ``select`` the score picks the iterate (here the start, scored best)."""
    model, loss = _toy_regression(64)
    plain = copy.deepcopy(model)
    plain.load_state_dict(uniform_round_trip(model.state_dict(), 6))
    calls = []

    def worse_every_time(m):
        calls.append(1)
        return -float(len(calls))

    state, _ = finetune_uniform(model, loss, bits=6, steps=20, lr=1e-2, select=worse_every_time, select_every=5)
    assert len(calls) == 5  # steps 0, 5, 10, 15, 20
    assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())
