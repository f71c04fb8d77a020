"""Baselines write real files, decode back to what they claim, and fine-tune fairly."""

import copy

import pytest
import torch
from torch import nn

from torch_sinr.errors import SINRError
from torch_sinr.tune.baselines import (finetune_pruned, finetune_uniform, read_baseline, uniform_round_trip, write_cast,
                                       write_low_rank, write_pruned, write_uniform)


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


def _wide_regression(points: int):
    """As _toy_regression, with a hidden 32x32 matrix worth pruning."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    x = torch.rand(points, 2)
    y = torch.sin(6 * x).sum(1, keepdim=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):  # a fitted start, as a user's model would be
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return model, lambda m: ((m(x) - y) ** 2).mean()


def test_finetune_pruned_lowers_loss_keeps_positions_and_file_holds_the_result(tmp_path):
    model, loss = _wide_regression(256)
    skip = lambda n: n == "0.weight"  # noqa: E731  (the input layer stays dense, as SINR leaves it)
    write_pruned(model.state_dict(), tmp_path / "plain.safetensors", keep=0.25, bits=5, skip=skip)
    plain = copy.deepcopy(model)
    plain.load_state_dict(read_baseline(tmp_path / "plain.safetensors"))
    state, plan = finetune_pruned(model, loss, keep=0.25, bits=5, steps=150, lr=1e-2, skip=skip)
    assert set(plan.kept) == {"2.weight", "4.weight"}
    for name, idx in plan.kept.items():  # the positions write_pruned picks from the fitted model, fixed
        assert torch.equal(idx, model.state_dict()[name].abs().topk(idx.shape[1], dim=1).indices.sort(1).values)
        mask = torch.zeros_like(state[name], dtype=torch.bool).scatter(1, idx, True)
        assert not state[name][~mask].any()
    tuned = copy.deepcopy(model)
    tuned.load_state_dict(state)
    with torch.no_grad():
        assert loss(tuned).item() < 0.9 * loss(plain).item()
    write_pruned(state, tmp_path / "ft.safetensors", keep=0.25, bits=5, plan=plan)
    decoded = read_baseline(tmp_path / "ft.safetensors")
    assert all(torch.equal(decoded[k], v) for k, v in state.items())


def test_finetune_pruned_never_ends_worse_and_refuses_a_bad_keep():
    model, loss = _wide_regression(64)
    state0, _ = finetune_pruned(model, loss, keep=0.5, bits=8, steps=0)
    state, _ = finetune_pruned(model, loss, keep=0.5, bits=8, steps=5, lr=10.0)  # absurd lr: every step hurts
    start, tuned = copy.deepcopy(model), copy.deepcopy(model)
    start.load_state_dict(state0)
    tuned.load_state_dict(state)
    with torch.no_grad():
        assert loss(tuned).item() <= loss(start).item()
    for keep in (0, 1.5, -0.1):
        with pytest.raises(SINRError, match="keep"):
            finetune_pruned(model, loss, keep=keep, bits=8, steps=1)
