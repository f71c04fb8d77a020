"""HashGrid: geometry (exact at vertices, continuous, linear on edges), hash, dense/hashed agreement,
gradients, validation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torch_sinr.errors import SINRConfigError, SINRInputError
from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig, hash_coords

from ...import_probe import run_probe

pytestmark = pytest.mark.usefixtures("single_thread")

# 2-D: resolutions 5 and 13 dense (25, 169 <= 256 rows), 41 hashed. 3-D: 5 dense (125 <= 512), 13 hashed.
CONFIG_2D = HashGridConfig(dims=2, levels=3, log2_table=8, latent_dim=2, min_res=4, max_res=40)
CONFIG_3D = HashGridConfig(dims=3, levels=2, log2_table=9, latent_dim=2, min_res=4, max_res=12)


def random_grid(config: HashGridConfig, seed: int = 0) -> HashGrid:
    """A float64 grid with distinct O(1) values in every row, so a wrong row or weight shows."""
    grid = HashGrid(config, dtype=torch.float64)
    with torch.no_grad():
        grid.latents.copy_(torch.randn(grid.latents.shape, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return grid


def all_vertices(res: int, dims: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(res), repeat=dims)), dtype=torch.int64)


def reference(grid: HashGrid, coords: torch.Tensor) -> torch.Tensor:
    """Straightforward d-linear interpolation, level by level and corner by corner, through ``rows``."""
    outs = []
    u = coords.clamp(0, 1)
    for level, res in enumerate(grid.config.resolutions()):
        pos = u * (res - 1)
        cell = pos.floor().clamp(0, res - 2)
        frac = pos - cell
        value = 0
        for corner in itertools.product((0, 1), repeat=grid.dims):
            bits = torch.tensor(corner, dtype=torch.int64)
            weight = torch.where(bits.bool(), frac, 1 - frac).prod(dim=1, keepdim=True)
            value = value + weight * grid.latents[grid.rows(level, cell.long() + bits)]
        outs.append(value)
    return torch.cat(outs, dim=1)


def corners(grid: HashGrid, coords: torch.Tensor):
    """(level, cell, corner offset) of every corner ``reference`` reads for ``coords``."""
    u = coords.double().clamp(0, 1)
    for level, res in enumerate(grid.config.resolutions()):
        cell = (u * (res - 1)).floor().clamp(0, res - 2).long()
        for corner in itertools.product((0, 1), repeat=grid.dims):
            yield level, cell, torch.tensor(corner, dtype=torch.int64)


# --- configuration -------------------------------------------------------------------------------------------

def test_resolutions_follow_the_geometric_rule():
    # b = sqrt(50/16) = 1.76777: 1 + floor(16) = 17, 1 + floor(28.28) = 29, 1 + floor(50) = 51
    assert HashGridConfig(min_res=16, max_res=50, levels=3).resolutions() == [17, 29, 51]
    assert HashGridConfig(min_res=16, max_res=50, levels=1).resolutions() == [17]
    assert HashGridConfig(min_res=8, max_res=8, levels=3).resolutions() == [9, 9, 9]
    # the counts of SHACIRA's configs (HASHGRIDS.md section 1): kodak 40,282 latents, pearl 39,727,145
    # with 12 of 16 levels dense; float64 rounding as in SHACIRA makes kodak end at 512, not 513
    kodak = HashGridConfig(dims=2, levels=24, log2_table=11, min_res=16, max_res=512)
    assert kodak.resolutions()[-1] == 512 and sum(kodak.level_sizes()) == 40282
    pearl = HashGridConfig(dims=2, levels=16, log2_table=23, min_res=16, max_res=10725)
    assert sum(pearl.level_sizes()) == 39727145 and sum(pearl.dense_levels()) == 12


def test_level_sizes_dense_levels_and_layout():
    assert CONFIG_2D.resolutions() == [5, 13, 41]
    assert CONFIG_2D.level_sizes() == [25, 169, 256]
    assert CONFIG_2D.dense_levels() == [True, True, False]
    assert CONFIG_3D.level_sizes() == [125, 512] and CONFIG_3D.dense_levels() == [True, False]
    grid = HashGrid(CONFIG_2D)
    assert grid.latents.shape == (25 + 169 + 256, 2) and grid.out_features == 6
    assert grid.offsets.tolist() == [0, 25, 194]
    assert grid.latents.abs().max() <= CONFIG_2D.init_scale
    assert list(grid.state_dict()) == ["latents"]            # buffers derive from the config
    assert CONFIG_2D.to_dict() == dict(dims=2, levels=3, log2_table=8, latent_dim=2, min_res=4, max_res=40,
                                       init_scale=1e-4)
    assert HashGridConfig(**CONFIG_2D.to_dict()) == CONFIG_2D


@pytest.mark.parametrize("changes, needle", [
    (dict(dims=4), "dims"), (dict(dims=2.0), "dims"), (dict(levels=0), "levels"), (dict(levels=True), "levels"),
    (dict(log2_table=0), "log2_table"), (dict(log2_table=31), "31"), (dict(latent_dim=0), "latent_dim"),
    (dict(min_res=0), "min_res"), (dict(min_res=64, max_res=32), "64"), (dict(init_scale=-1.0), "init_scale"),
    (dict(init_scale=math.nan), "nan"), (dict(max_res=2**30), "max_res"),
])
def test_config_validation(changes, needle):
    with pytest.raises(SINRConfigError, match=needle):
        HashGridConfig(**changes)


def test_grid_arguments_validated():
    with pytest.raises(SINRConfigError, match="HashGridConfig"):
        HashGrid({"dims": 2})
    with pytest.raises(SINRConfigError, match="int64"):
        HashGrid(CONFIG_2D, dtype=torch.int64)


# --- hash ----------------------------------------------------------------------------------------------------

def test_hash_matches_hand_computed_values():
    # (x*1 ^ y*2654435761 [^ z*805459861]) % 2**T, worked out with Python ints
    v2 = torch.tensor([[0, 0], [1, 0], [0, 1], [3, 5], [100, 200]])
    assert hash_coords(v2, 19).tolist() == [0, 1, 489905, 352374, 463404]
    assert hash_coords(torch.tensor([[17, 9]], dtype=torch.int32), 11).tolist() == [1832]
    v3 = torch.tensor([[0, 0, 1], [1, 2, 3], [7, 11, 13], [2047, 2047, 2047]])
    assert hash_coords(v3, 19).tolist() == [153493, 128476, 280589, 285147]
    assert hash_coords(torch.tensor([[600, 700, 800]]), 23).tolist() == [6360068]


def test_hash_input_validation():
    with pytest.raises(SINRInputError, match=r"\(4,\)"):
        hash_coords(torch.zeros(4, dtype=torch.int64), 19)
    with pytest.raises(SINRInputError, match="float32"):
        hash_coords(torch.zeros(4, 2), 19)
    with pytest.raises(SINRConfigError, match="log2_table"):
        hash_coords(torch.zeros(4, 2, dtype=torch.int64), 0)


def test_rows_dense_and_hashed():
    grid = HashGrid(CONFIG_2D)
    v = torch.tensor([[0, 0], [4, 0], [0, 4], [4, 4]])
    assert grid.rows(0, v).tolist() == [0, 4, 20, 24]               # x + 5*y
    assert grid.rows(1, torch.tensor([[12, 12]])).tolist() == [25 + 12 + 13 * 12]
    v41 = torch.tensor([[40, 3], [7, 21]])
    assert grid.rows(2, v41).tolist() == (hash_coords(v41, 8) + 194).tolist()
    with pytest.raises(SINRInputError, match="0..12"):
        grid.rows(1, torch.tensor([[13, 0]]))
    with pytest.raises(SINRInputError, match="level"):
        grid.rows(3, v)
    with pytest.raises(SINRInputError, match=r"\(M, 2\)"):
        grid.rows(0, torch.zeros(2, 3, dtype=torch.int64))


# --- geometry ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [CONFIG_2D, CONFIG_3D], ids=["2d", "3d"])
def test_exact_at_vertices(config):
    grid = random_grid(config)
    f = config.latent_dim
    for level, (res, dense) in enumerate(zip(config.resolutions(), config.dense_levels())):
        v = all_vertices(res, config.dims)
        out = grid(v.double() / (res - 1))
        expected = grid.latents[grid.rows(level, v)]
        torch.testing.assert_close(out[:, level * f:(level + 1) * f], expected, rtol=0, atol=1e-12,
                                   msg=f"level {level} (res {res}, dense {dense})")
    # float32 coordinates land on the same vertices up to float32 rounding
    res = config.resolutions()[-1]
    v = all_vertices(res, config.dims)
    out = grid(v.float() / (res - 1))
    torch.testing.assert_close(out[:, -f:], grid.latents[grid.rows(config.levels - 1, v)], rtol=0, atol=1e-5)


@pytest.mark.parametrize("config", [CONFIG_2D, CONFIG_3D], ids=["2d", "3d"])
def test_matches_reference_interpolation(config):
    grid = random_grid(config)
    coords = torch.rand(500, config.dims, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    coords[:3] = torch.tensor([0.0, 1.0, 0.5])[:, None]          # the corners of the domain and its centre
    with torch.no_grad():
        torch.testing.assert_close(grid(coords), reference(grid, coords), rtol=0, atol=1e-12)


@pytest.mark.parametrize("config", [CONFIG_2D, CONFIG_3D], ids=["2d", "3d"])
def test_continuous_across_cell_borders(config):
    grid = random_grid(config)
    gen = torch.Generator().manual_seed(2)
    for res in config.resolutions():
        for k in (1, res // 2, res - 1):                       # inner borders and the far edge u = 1
            border = k / (res - 1)
            for axis in range(config.dims):
                base = torch.rand(64, config.dims, generator=gen, dtype=torch.float64)
                below, above = base.clone(), base.clone()
                below[:, axis] = border - 1e-9
                above[:, axis] = min(border + 1e-9, 1.0)
                torch.testing.assert_close(grid(below), grid(above), rtol=0, atol=1e-5)


def test_linear_along_a_cell_edge():
    grid = random_grid(CONFIG_3D)
    level, res = 1, CONFIG_3D.resolutions()[1]                 # the hashed level
    y, z, x0 = 4, 7, 9
    ends = grid.latents[grid.rows(level, torch.tensor([[x0, y, z], [x0 + 1, y, z]]))]
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    coords = torch.stack([(x0 + t) / (res - 1), torch.full_like(t, y / (res - 1)),
                          torch.full_like(t, z / (res - 1))], dim=1)
    out = grid(coords)[:, 2:4]
    torch.testing.assert_close(out, (1 - t)[:, None] * ends[0] + t[:, None] * ends[1], rtol=0, atol=1e-12)


def test_output_is_level_major_and_out_of_range_is_clamped():
    grid = HashGrid(CONFIG_2D)
    with torch.no_grad():
        for level, (start, size) in enumerate(zip(grid.offsets.tolist(), CONFIG_2D.level_sizes())):
            grid.latents[start:start + size] = torch.tensor([10.0 * level, 10.0 * level + 1])
        out = grid(torch.rand(7, 2))
    # weights sum to one up to rounding
    torch.testing.assert_close(out, torch.tensor([0.0, 1, 10, 11, 20, 21]).expand(7, 6), rtol=0, atol=1e-5)
    grid = random_grid(CONFIG_2D)
    with torch.no_grad():
        outside = grid(torch.tensor([[-0.5, 1.7], [0.3, -2.0], [-math.inf, math.inf]], dtype=torch.float64))
        inside = grid(torch.tensor([[0.0, 1.0], [0.3, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert torch.equal(outside, inside)
    assert grid(torch.zeros(0, 2)).shape == (0, 6)


@pytest.mark.parametrize("dims, res, log2_table, span", [(2, 17, 8, 8), (3, 9, 9, 5)])
def test_dense_and_hashed_levels_agree(dims, res, log2_table, span):
    """One level at the same resolution, stored dense and hashed. The hashed table cannot hold every
    vertex without collisions, but the ``span**dims`` vertices of a corner region hash to distinct
    rows: with the dense values copied there, both grids agree on every point of that region."""
    dense = random_grid(HashGridConfig(dims=dims, levels=1, log2_table=20, min_res=res - 1, max_res=res - 1))
    hashed = HashGrid(HashGridConfig(dims=dims, levels=1, log2_table=log2_table, min_res=res - 1,
                                     max_res=res - 1), dtype=torch.float64)
    assert dense.config.dense_levels() == [True] and hashed.config.dense_levels() == [False]
    v = all_vertices(span, dims)
    hashed_rows = hashed.rows(0, v)
    assert hashed_rows.unique().numel() == v.shape[0], "region must be collision-free"
    with torch.no_grad():
        hashed.latents.zero_()
        hashed.latents[hashed_rows] = dense.latents[dense.rows(0, v)]
        coords = torch.rand(400, dims, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        coords *= (span - 1) / (res - 1)                       # inside the region's cells
        torch.testing.assert_close(hashed(coords), dense(coords), rtol=0, atol=1e-12)


# --- gradients -----------------------------------------------------------------------------------------------

def test_gradient_reaches_only_the_touched_rows():
    grid = random_grid(CONFIG_2D)
    point = torch.tensor([[0.37, 0.61]], dtype=torch.float64)
    grid(point).sum().backward()
    touched = set()
    for level, res in enumerate(CONFIG_2D.resolutions()):
        cell = (point * (res - 1)).floor().long()
        corners = cell + torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
        touched |= set(grid.rows(level, corners).tolist())
    nonzero = set(grid.latents.grad.abs().sum(dim=1).nonzero().flatten().tolist())
    assert nonzero == touched and len(touched) == 12
    # each level's weights sum to one, per feature
    assert torch.allclose(grid.latents.grad.sum(dim=0), torch.full((2,), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("config", [CONFIG_2D, CONFIG_3D], ids=["2d", "3d"])
def test_gradients_match_reference(config):
    grid = random_grid(config)
    coords = torch.rand(200, config.dims, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    upstream = torch.randn(200, grid.out_features, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    c1 = coords.clone().requires_grad_()
    (grid(c1) * upstream).sum().backward()
    ours = grid.latents.grad.clone(), c1.grad
    grid.latents.grad = None
    c2 = coords.clone().requires_grad_()
    (reference(grid, c2) * upstream).sum().backward()
    torch.testing.assert_close(ours[0], grid.latents.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours[1], c2.grad, rtol=0, atol=1e-9)


# The domain's edge: u = 0, u = 1 and the float just below 1, on every axis. At u = 1 the point is the far
# corner of the last cell (res - 2, frac = 1); a cell index clamped wrongly there reads one row past the
# level (out of range when the finest level is dense; a neighbouring row with weight 0 when hashed), which
# leaves the values right but not the coordinate gradient, so both are compared with the reference.
DENSE_FINEST_2D = HashGridConfig(dims=2, levels=2, log2_table=8, latent_dim=2, min_res=4, max_res=12)  # 5, 13: dense
DENSE_FINEST_3D = HashGridConfig(dims=3, levels=2, log2_table=9, latent_dim=2, min_res=4, max_res=5)  # 5, 6: dense


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", [DENSE_FINEST_2D, CONFIG_2D, DENSE_FINEST_3D, CONFIG_3D],
                         ids=["2d-dense-finest", "2d-hashed-finest", "3d-dense-finest", "3d-hashed-finest"])
def test_values_and_gradients_at_the_edge_of_the_domain(config, dtype):
    assert config.dense_levels()[-1] == (config in (DENSE_FINEST_2D, DENSE_FINEST_3D))
    grid = random_grid(config)
    below_one = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    inner = torch.rand(1, generator=torch.Generator().manual_seed(7), dtype=dtype)
    axis_values = torch.cat([torch.tensor([0.0, 1.0], dtype=dtype), below_one[None], inner])
    coords = torch.cartesian_prod(*[axis_values] * config.dims)     # every mix of edges per axis
    upstream = torch.randn(coords.shape[0], grid.out_features, generator=torch.Generator().manual_seed(8),
                           dtype=torch.float64)
    ours = coords.clone().requires_grad_()
    out = grid(ours)
    (out * upstream).sum().backward()
    latent_grad = grid.latents.grad.clone()
    grid.latents.grad = None
    theirs = coords.double().requires_grad_()
    expected = reference(grid, theirs)
    (expected * upstream).sum().backward()
    # float32 coordinates are placed in float32 vertex units: the same cells, fractions within float32 rounding
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, expected, rtol=0, atol=tol)
    torch.testing.assert_close(ours.grad.double(), theirs.grad, rtol=0, atol=tol * 1e3)
    torch.testing.assert_close(latent_grad, grid.latents.grad, rtol=0, atol=tol)
    # At u = 1 the clamp to [0, 1] passes no gradient to the coordinate, so a row read past the edge with
    # weight 0 shows neither in the values nor in the gradients: every point must read its own cell's
    # corners and nothing else. All other rows are NaN here, and 0 * NaN is NaN.
    poisoned = random_grid(config)
    with torch.no_grad():
        for point in coords:
            rows = torch.cat([grid.rows(level, cell + corner) for level, cell, corner in corners(grid, point[None])])
            poisoned.latents.fill_(math.nan)
            poisoned.latents[rows] = grid.latents[rows]
            torch.testing.assert_close(poisoned(point[None]), grid(point[None]), rtol=0, atol=0,
                                       msg=f"point {point.tolist()} reads a row outside its cell")


def test_gradcheck():
    grid = random_grid(HashGridConfig(dims=3, levels=2, log2_table=6, latent_dim=2, min_res=3, max_res=5))
    coords = torch.rand(6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    coords = ((coords * 4).floor() + 0.2 + 0.6 * (coords * 4).frac()) / 4   # away from borders of both levels
    latents = grid.latents.detach().clone().requires_grad_()

    def f(table, c):
        return torch.func.functional_call(grid, {"latents": table}, (c,))

    assert torch.autograd.gradcheck(f, (latents, coords.requires_grad_()))


# --- input errors, devices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("coords, needle", [
    (torch.rand(5), r"\(5,\)"), (torch.rand(5, 3), r"\(5, 3\)"), (torch.rand(2, 5, 2), r"\(2, 5, 2\)"),
    (torch.zeros(5, 2, dtype=torch.int64), "int64"), (torch.tensor([[0.1, math.nan]]), "NaN"),
])
def test_bad_coordinates(coords, needle):
    with pytest.raises(SINRInputError, match=needle):
        HashGrid(CONFIG_2D)(coords)


def test_float32_and_float64_coordinates_agree():
    grid = HashGrid(CONFIG_3D)
    coords = torch.rand(300, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(grid(coords.float()), grid(coords), rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    grid = random_grid(CONFIG_3D).float()
    coords = torch.rand(1000, 3)
    grid(coords).square().sum().backward()
    cpu_grad = grid.latents.grad.clone()
    grid.latents.grad = None
    cuda = grid.to("cuda")
    out = cuda(coords.cuda())
    out.square().sum().backward()
    torch.testing.assert_close(out.cpu(), grid.cpu()(coords).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cuda.latents.grad.cpu(), cpu_grad, rtol=1e-4, atol=1e-5)


def test_import_torch_sinr_does_not_load_hashgrid():
    probe = run_probe("import json, sys, torch_sinr\n"
                      "print(json.dumps({'loaded': 'torch_sinr.inr.hashgrid' in sys.modules}))")
    assert probe == {"loaded": False}


def test_a_transform_of_the_gathered_rows_equals_transforming_the_table():
    """forward(coords, transform=f) reads f(row) for every row it touches: the same as a grid
    whose table is f(table), with gradients through f to the latents."""
    grid = HashGrid(HashGridConfig(dims=2, levels=4, log2_table=8, min_res=4, max_res=64, init_scale=3.0))
    coords = torch.rand(500, 2, generator=torch.Generator().manual_seed(3))
    rounded = HashGrid(grid.config)
    with torch.no_grad():
        rounded.latents.copy_(torch.round(grid.latents))
    out = grid(coords, transform=torch.round)
    assert torch.allclose(out, rounded(coords), atol=1e-6)
    grid(coords, transform=lambda r: r * r).sum().backward()
    assert grid.latents.grad is not None and grid.latents.grad.abs().sum() > 0


def _reference_hashed_levels(table, positions, scalings, log2_table):
    """nerfstudio's torch HashEncoding written out corner by corner, in float64."""
    from torch_sinr.inr.hashgrid.encoding import HASH_PRIMES

    rows, dims = 2**log2_table, positions.shape[1]
    out = []
    for level, scaling in enumerate(scalings.tolist()):
        pos = positions.double() * scaling
        low = pos.floor()
        frac = pos - low
        feature = 0.0
        for corner in itertools.product((0, 1), repeat=dims):
            vertex = low.long() + torch.tensor(corner)
            h = vertex[:, 0] * HASH_PRIMES[0]
            for axis in range(1, dims):
                h = h ^ (vertex[:, axis] * HASH_PRIMES[axis])
            weight = torch.ones(len(positions), dtype=torch.float64)
            for axis, bit in enumerate(corner):
                weight = weight * (frac[:, axis] if bit else 1 - frac[:, axis])
            feature = feature + weight[:, None] * table.double()[level * rows + (h % rows)]
        out.append(feature)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("dims", [2, 3])
def test_interpolate_hashed_levels_matches_the_corner_by_corner_reference(dims):
    from torch_sinr.inr.hashgrid import interpolate_hashed_levels

    torch.manual_seed(0)
    scalings = torch.tensor([4.0, 9.0, 37.0])
    table = torch.randn(3 * 2**6, 2, dtype=torch.float64, requires_grad=True)
    positions = torch.rand(500, dims, dtype=torch.float64)
    positions[0] = 0.0
    positions[1] = 1.0
    out = interpolate_hashed_levels(table, positions, scalings, 6)
    torch.testing.assert_close(out, _reference_hashed_levels(table.detach(), positions, scalings, 6))
    x = torch.rand(4, dims, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, p: interpolate_hashed_levels(t, p, scalings, 6), (table, x))


def test_interpolate_hashed_levels_validates_its_inputs():
    from torch_sinr.inr.hashgrid import interpolate_hashed_levels

    table = torch.zeros(2 * 16, 2)
    with pytest.raises(SINRInputError, match="positions"):
        interpolate_hashed_levels(table, torch.zeros(5, 4), torch.ones(2), 4)
    with pytest.raises(SINRInputError, match="floating"):
        interpolate_hashed_levels(table, torch.zeros(5, 3, dtype=torch.int64), torch.ones(2), 4)
    with pytest.raises(SINRInputError, match="table must have shape"):
        interpolate_hashed_levels(table, torch.zeros(5, 3), torch.ones(3), 4)
