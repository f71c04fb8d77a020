"""The inference path (fast.py) against the training path: bit for bit the same features."""

from __future__ import annotations

import pytest
import torch

from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig, fast, interpolate_hashed_levels
from torch_sinr.inr.hashgrid.quantize import soft_round, soft_round_with_slope

pytestmark = pytest.mark.usefixtures("single_thread")

# 2-D: 2 dense levels then hashed ones; 3-D: 1 dense, 1 hashed (as in test_encoding).
CONFIGS = [HashGridConfig(dims=2, levels=4, log2_table=8, latent_dim=1, min_res=4, max_res=60),
           HashGridConfig(dims=2, levels=3, log2_table=8, latent_dim=2, min_res=4, max_res=40),
           HashGridConfig(dims=3, levels=2, log2_table=9, latent_dim=3, min_res=4, max_res=12)]


def _grid(config: HashGridConfig, dtype: torch.dtype) -> HashGrid:
    grid = HashGrid(config, dtype=dtype)
    with torch.no_grad():
        grid.latents.normal_(generator=torch.Generator().manual_seed(0))
    return grid


def _coords(dims: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Random points, points outside [0, 1] (clamped), and the domain's corners and vertices."""
    g = torch.Generator().manual_seed(1)
    inside = torch.rand(n, dims, generator=g, dtype=dtype)
    outside = torch.rand(16, dims, generator=g, dtype=dtype) * 3 - 1
    edges = torch.tensor([[0.0] * dims, [1.0] * dims, [0.5] * dims, [1.0 / 3] * dims], dtype=dtype)
    return torch.cat([inside, outside, edges])


@pytest.mark.parametrize("config", CONFIGS, ids=["2d-f1", "2d-f2", "3d-f3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hashgrid_inference_path_equals_training_path(config, dtype, monkeypatch):
    monkeypatch.setattr(fast, "CHUNK", 100)  # several chunks and a ragged last one
    grid = _grid(config, dtype)
    x = _coords(config.dims, 300, dtype)
    trained = grid(x)  # autograd records: the training path
    assert trained.grad_fn is not None
    with torch.no_grad():
        no_grad = grid(x)
    with torch.inference_mode():
        inference = grid(x)
    assert no_grad.grad_fn is None and no_grad.shape == trained.shape
    assert torch.equal(no_grad, trained.detach())
    assert torch.equal(inference, trained.detach())


def test_frozen_latents_take_the_inference_path_and_coordinate_gradients_do_not():
    grid = _grid(CONFIGS[0], torch.float32)
    grid.latents.requires_grad_(False)
    x = _coords(2, 50, torch.float32)
    assert grid(x).grad_fn is None
    x.requires_grad_(True)
    out = grid(x)
    assert out.grad_fn is not None  # a gradient of the coordinates still goes through autograd
    out.sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_level_plan_is_built_once_per_device_and_dtype():
    grid = _grid(CONFIGS[0], torch.float32)
    assert grid.level_plan() is grid.level_plan()
    assert grid.level_plan(torch.float64) is not grid.level_plan()
    assert grid.level_plan().scale.dtype == torch.float32


@pytest.mark.parametrize("dims,features", [(2, 1), (3, 2), (3, 3)])
def test_interpolate_hashed_levels_inference_path_equals_training_path(dims, features, monkeypatch):
    monkeypatch.setattr(fast, "CHUNK", 64)
    levels, log2_table = 3, 7
    table = torch.randn(levels * 2**log2_table, features, generator=torch.Generator().manual_seed(2))
    scalings = torch.tensor([4.0, 9.5, 31.0])
    # nerfstudio does not clamp: negative positions and positions past 1 hash like any other
    positions = torch.rand(200, dims, generator=torch.Generator().manual_seed(3)) * 1.4 - 0.2
    trained = interpolate_hashed_levels(table.requires_grad_(True), positions, scalings, log2_table)
    assert trained.grad_fn is not None
    with torch.no_grad():
        fast_out = interpolate_hashed_levels(table, positions, scalings, log2_table)
    assert fast_out.grad_fn is None
    assert torch.equal(fast_out, trained.detach())


@pytest.mark.parametrize("config", CONFIGS[:2], ids=["2d-f1", "2d-f2"])
@pytest.mark.parametrize("temperature,hard", [(0.4, False), (0.0, True)])
def test_fused_rounding_equals_the_autograd_transform(config, temperature, hard):
    """``rounding=`` (gather, rounding and scatter fused) against ``transform=`` (autograd)."""
    grid = _grid(config, torch.float32)
    with torch.no_grad():
        grid.latents.mul_(4.0)  # several integers apart, so rounding matters
    x = _coords(config.dims, 300, torch.float32)
    upstream = torch.randn(x.shape[0], grid.out_features, generator=torch.Generator().manual_seed(4))
    results = []
    for fused in (False, True):
        torch.manual_seed(9)  # soft rounding's draws
        if fused:
            out = grid(x, rounding=lambda rows: soft_round_with_slope(rows, temperature, hard=hard))
        else:
            out = grid(x, transform=lambda rows: soft_round(rows, temperature, hard=hard))
        (out * upstream).sum().backward()
        results.append((out.detach(), grid.latents.grad.clone()))
        grid.latents.grad = None
    (out_ref, grad_ref), (out_fused, grad_fused) = results
    # soft: one sigmoid against softmax / log-sum-exp; both: the addcmul chain against the
    # transform path's sum over corners; float32 rounding apart
    assert float((out_fused - out_ref).abs().max()) <= 1e-5 * float(out_ref.abs().max())
    assert float((grad_fused - grad_ref).abs().max()) <= 1e-5 * float(grad_ref.abs().max())
    assert int((grad_ref != 0).sum()) > 0
