"""The C++ inference kernel (torch_sinr/native/hashgrid.cpp) against the pure-torch inference path.

Bit equality: same rows, same weights, same order of the sums. The torch path is itself checked
against the training path (test_fast.py), so the kernel computes what training computes.
"""

from __future__ import annotations

import pytest
import torch

from torch_sinr.errors import SINRInputError
from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig, fast, interpolate_hashed_levels

pytestmark = pytest.mark.skipif(not fast.native_available(), reason="the C++ kernel is not built here")


def _grid(config: HashGridConfig) -> HashGrid:
    grid = HashGrid(config)
    with torch.no_grad():
        grid.latents.normal_(generator=torch.Generator().manual_seed(0))
    return grid


def _coords(dims: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    edges = torch.tensor([[0.0] * dims, [1.0] * dims, [0.5] * dims, [1.0 / 3] * dims])
    return torch.cat([torch.rand(n, dims, generator=g), torch.rand(16, dims, generator=g) * 3 - 1, edges])


# dense and hashed levels, 1..4 features, 2-D and 3-D; the last one at the image model's size
CONFIGS = [HashGridConfig(dims=2, levels=4, log2_table=8, latent_dim=1, min_res=4, max_res=60),
           HashGridConfig(dims=2, levels=3, log2_table=8, latent_dim=4, min_res=4, max_res=40),
           HashGridConfig(dims=3, levels=3, log2_table=9, latent_dim=2, min_res=4, max_res=40),
           HashGridConfig(dims=3, levels=2, log2_table=9, latent_dim=3, min_res=4, max_res=12),
           HashGridConfig(dims=2, levels=16, log2_table=16, latent_dim=1, min_res=16, max_res=2604)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config", CONFIGS, ids=["2d-f1", "2d-f4", "3d-f2", "3d-f3", "2d-image"])
def test_kernel_equals_the_torch_path(config, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grid = _grid(config)
        x = _coords(config.dims, 5003)  # not a multiple of the kernel's block of points
        with torch.no_grad():
            native = grid(x)
            with fast.torch_only():
                reference = grid(x)
            assert torch.equal(grid(x), native)  # torch_only ends with its block
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(native, reference)


def test_nerfstudio_layout_equals_the_torch_path():
    """Every level hashed, unclamped positions, nerfstudio's scalings."""
    levels, log2 = 6, 10
    table = torch.randn(levels * 2**log2, 2, generator=torch.Generator().manual_seed(2))
    scalings = torch.tensor([16.0 * 1.6**level for level in range(levels)])
    x = torch.rand(3001, 3, generator=torch.Generator().manual_seed(3))
    native = interpolate_hashed_levels(table, x, scalings, log2)
    with fast.torch_only():
        assert torch.equal(native, interpolate_hashed_levels(table, x, scalings, log2))


def test_returns_per_point_features_without_a_copy():
    grid = _grid(CONFIGS[1])
    with torch.no_grad():
        levels_first = grid.interpolate(torch.rand(10, 2), grid.latents)
        per_point = grid(torch.rand(10, 2))
    assert levels_first.shape == (3, 10, 4)
    assert levels_first.permute(1, 0, 2).is_contiguous()  # the reshape in forward is free
    assert per_point.shape == (10, 12)


def test_no_points():
    grid = _grid(CONFIGS[0])
    with torch.no_grad():
        assert grid(torch.empty(0, 2)).shape == (0, 4)


def test_a_row_outside_the_table_is_refused_not_read():
    """The kernel checks every row against the table's size: a plan for a larger table than the
    one passed stops with an error instead of reading past the end."""
    grid = _grid(CONFIGS[0])
    plan = grid.level_plan()
    too_small = grid.latents.detach()[:10]
    with pytest.raises(SINRInputError, match="outside the table"):
        fast.interpolate_levels(plan, too_small, torch.rand(100, 2), torch.float32)


def test_shapes_are_checked_before_the_kernel_reads():
    grid = _grid(CONFIGS[2])  # 3-D
    with pytest.raises(SINRInputError, match=r"\(N, 3\)"):
        fast.interpolate_levels(grid.level_plan(), grid.latents.detach(), torch.rand(10, 2), torch.float32)


def test_other_dtypes_take_the_torch_path():
    """float64 coordinates and float16 tables are not the kernel's: the torch path answers."""
    grid = _grid(CONFIGS[0])
    plan = grid.level_plan(torch.float64)
    assert fast._native_interpolate(plan, grid.latents.detach().double(), torch.rand(5, 2).double(),
                                    torch.float64) is None
    plan32 = grid.level_plan()
    assert fast._native_interpolate(plan32, grid.latents.detach().half(), torch.rand(5, 2), torch.float32) is None


def test_torch_only_turns_the_kernel_off_within_its_block():
    grid = _grid(CONFIGS[0])
    plan, table, x = grid.level_plan(), grid.latents.detach(), torch.rand(5, 2)
    assert fast._native_interpolate(plan, table, x, torch.float32) is not None
    with fast.torch_only():
        assert fast._native_interpolate(plan, table, x, torch.float32) is None
    assert fast._native_interpolate(plan, table, x, torch.float32) is not None
