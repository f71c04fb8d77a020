"""The pure-torch port of tiny-cuda-nn's hash grid, MLPs and spherical harmonics, against references
written straight from tcnn's rules (Python loops, one point, one corner, one hash at a time), and
the params round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch_sinr import SINRConfigError, SINRInputError
from torch_sinr_nerfstudio.tcnn_port import (TcnnGridConfig, TcnnHashGrid, TcnnNetwork, TcnnNetworkConfig,
                                             TcnnNetworkWithInputEncoding, TcnnSphericalHarmonics)

PRIMES = [1, 2654435761, 805459861]


def reference_grid(params: list[float], dims: int, levels: int, features: int, log2_size: int, base: int,
                   per_level_scale: float, point: list[float], interpolation: str = "Linear",
                   half: bool = True) -> list[float]:
    """tcnn's HashGrid for one point, from the definitions, one level, corner and feature at a time."""
    f32 = np.float32
    log2_scale = np.log2(f32(per_level_scale))
    out, offset = [], 0
    for level in range(levels):
        scale = np.exp2(f32(level) * log2_scale) * f32(base) - f32(1)
        resolution = math.ceil(float(scale)) + 1
        entries = min(-(-resolution**dims // 8) * 8, 2**log2_size)
        pos, lower = [], []
        for d in range(dims):
            p = float(f32(float(scale) * point[d] + 0.5))  # fma, then rounded once to float32
            lower.append(math.floor(p))
            frac = p - math.floor(p)
            pos.append(frac * frac * (3 - 2 * frac) if interpolation == "Smoothstep" else frac)

        def entry(vertex):
            if resolution**dims <= entries:  # dense (tiled) index
                index = sum(vertex[d] * resolution**d for d in range(dims))
            else:
                index = 0
                for d in range(dims):
                    index ^= (vertex[d] * PRIMES[d]) % 2**32
            return index % entries

        def value(row, f):
            v = params[(offset + row) * features + f]
            return float(np.float16(v)) if half else v

        for f in range(features):
            if interpolation == "Nearest":
                out.append(value(entry(lower), f))
                continue
            total = 0.0
            for corner in range(2**dims):
                weight, vertex = 1.0, []
                for d in range(dims):
                    up = (corner >> d) & 1
                    weight *= pos[d] if up else 1 - pos[d]
                    vertex.append(lower[d] + up)
                total += weight * value(entry(vertex), f)
            out.append(total)
        offset += entries
    return out


@pytest.mark.parametrize("dims,levels,log2_size,base,scale,interpolation", [
    (3, 4, 10, 4, 2.0, "Linear"),  # resolutions 4, 8, 16, 32: dense then hashed
    (3, 3, 10, 5, 1.7, "Linear"),  # non-integer scales
    (2, 5, 8, 4, 1.9, "Linear"),  # 2-D, dense and hashed
    (3, 3, 9, 6, 1.5, "Smoothstep"),
    (2, 3, 8, 8, 2.0, "Nearest"),
])
def test_grid_matches_the_definitions_point_by_point(dims, levels, log2_size, base, scale, interpolation):
    config = TcnnGridConfig(dims, levels, 2, log2_size, base, scale, interpolation)
    assert {lv.hashed for lv in config.levels} == {False, True}  # dense and hashed levels
    grid = TcnnHashGrid(config)
    params = torch.randn(config.n_params, generator=torch.Generator().manual_seed(0))
    grid.load_tcnn_params_(params)
    points = torch.rand(12, dims, generator=torch.Generator().manual_seed(1))
    points[0] = 0.0
    points[1] = 0.999  # the far border: a dense level's upper vertex wraps into the next row
    got = grid(points)
    for point, row in zip(points.tolist(), got):
        want = reference_grid(params.tolist(), dims, levels, 2, log2_size, base, scale, point, interpolation)
        assert row.tolist() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_grid_levels_are_tcnns_layout_and_sizes():
    # nerfacto's field and proposal networks (per_level_scale as nerfstudio computes it)
    growth = lambda lo, hi, n: float(np.exp((np.log(hi) - np.log(lo)) / (n - 1)))  # noqa: E731
    field = TcnnGridConfig(3, 16, 2, 19, 16, growth(16, 2048, 16))
    assert [lv.resolution for lv in field.levels][:2] == [16, 23] and field.levels[-1].resolution == 2048
    assert [lv.hashed for lv in field.levels] == [False] * 5 + [True] * 11
    offsets = np.cumsum([0] + [lv.entries for lv in field.levels])[:-1].tolist()
    assert [lv.offset for lv in field.levels] == offsets
    assert all(lv.entries % 8 == 0 and lv.entries <= 2**19 for lv in field.levels)
    # HASHGRIDS.md section 4's counts, computed there from the grid.h rules
    assert field.n_params == 12_196_240
    assert TcnnGridConfig(3, 5, 2, 17, 16, growth(16, 128, 5)).n_params == 766_528
    assert TcnnGridConfig(3, 5, 2, 17, 16, growth(16, 256, 5)).n_params == 860_160


def test_float16_params_and_float32_precision():
    config = TcnnGridConfig(3, 3, 2, 10, 4, 2.0)
    params = torch.randn(config.n_params, generator=torch.Generator().manual_seed(2)).half()
    points = torch.rand(5, 3, generator=torch.Generator().manual_seed(3))
    half = TcnnHashGrid(config).load_tcnn_params_(params)
    assert torch.equal(half.tcnn_params(torch.float16), params)  # float16 in, float16 back, exactly
    full = TcnnHashGrid(config, param_dtype=torch.float32).load_tcnn_params_(params.float() + 1e-4)
    for point, a, b in zip(points.tolist(), half(points), full(points)):
        assert a.tolist() == pytest.approx(reference_grid(params.float().tolist(), 3, 3, 2, 10, 4, 2.0, point),
                                           rel=1e-5, abs=1e-5)
        assert b.tolist() == pytest.approx(reference_grid((params.float() + 1e-4).tolist(), 3, 3, 2, 10, 4, 2.0,
                                                          point, half=False), rel=1e-5, abs=1e-5)


def reference_mlp(params: torch.Tensor, config: TcnnNetworkConfig, x: torch.Tensor) -> torch.Tensor:
    """Matrices cut from the flat params in order, the input padded, a matmul per layer."""
    act = {"ReLU": torch.relu, "None": lambda v: v, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}
    padded_in = -(-config.n_input_dims // 16) * 16
    padded_out = -(-config.n_output_dims // 16) * 16
    shapes = ([(config.n_neurons, padded_in)] + [(config.n_neurons, config.n_neurons)] * (config.n_hidden_layers - 1)
              + [(padded_out, config.n_neurons)]) if config.n_hidden_layers else [(padded_out, padded_in)]
    assert sum(o * i for o, i in shapes) == params.numel()
    h = torch.cat([x, torch.full((x.shape[0], padded_in - x.shape[1]), config.input_padding)], dim=1).double()
    start = 0
    for k, (o, i) in enumerate(shapes):
        w = params[start:start + o * i].view(o, i).half().double()
        start += o * i
        h = h @ w.T
        h = act[config.output_activation if k == len(shapes) - 1 else config.activation](h)
    return h[:, :config.n_output_dims].float()


@pytest.mark.parametrize("config", [
    TcnnNetworkConfig(63, 3, 64, 2, "ReLU", "Sigmoid"),  # nerfacto's color head: one ones-column (a bias)
    TcnnNetworkConfig(10, 1, 16, 1, "ReLU", "None"),  # a proposal network's MLP: six ones-columns
    TcnnNetworkConfig(32, 16, 64, 1, "ReLU", "None", input_padding=0.0),  # nerfacto's base MLP behind its grid
    TcnnNetworkConfig(20, 5, 48, 0, "Tanh", "None", otype="CutlassMLP"),  # no hidden layer: one matrix
])
def test_mlp_matches_a_manual_matmul_with_padding_and_round_trips(config):
    params = torch.randn(config.n_params, generator=torch.Generator().manual_seed(4)) * 0.3
    net = TcnnNetwork(config).load_tcnn_params_(params)
    assert all(layer.bias is None for layer in net.layers)
    x = torch.rand(7, config.n_input_dims, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(net(x), reference_mlp(params, config, x), rtol=1e-5, atol=1e-5)
    # back to tcnn's layout: every kept value exactly, the padded output rows zero, the same function
    back = net.tcnn_params()
    last_rows = config.padded_output - config.n_output_dims
    kept = torch.ones(config.n_params, dtype=torch.bool)
    if last_rows:
        kept[config.n_params - last_rows * config.matrix_shapes()[-1][1]:] = False
    assert net.dropped_params == int((~kept).sum())
    assert torch.equal(back[kept], params[kept]) and not back[~kept].any()
    again = TcnnNetwork(config).load_tcnn_params_(back)
    assert torch.equal(again.tcnn_params(), back)
    torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


def test_network_with_input_encoding_is_network_then_grid():
    grid = TcnnHashGrid(TcnnGridConfig(3, 5, 2, 9, 4, 1.6))
    net = TcnnNetwork(TcnnNetworkConfig(10, 1, 16, 1, input_padding=0.0))
    fused = TcnnNetworkWithInputEncoding(grid, net)
    params = torch.randn(fused.n_params, generator=torch.Generator().manual_seed(6))
    fused.load_tcnn_params_(params)
    assert torch.equal(net.tcnn_params()[:net.config.n_params - 15 * 16], params[:net.config.n_params - 15 * 16])
    assert torch.equal(grid.tcnn_params(), params[net.n_params:])
    x = torch.rand(9, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(fused(x), net(grid(x)))
    # zero padding: the six padded input columns are never read
    with torch.no_grad():
        net.layers[0].weight[:, 10:] = 123.0
    torch.testing.assert_close(fused(x), net(grid(x)))
    assert fused(x).shape == (9, 1)


def test_spherical_harmonics_are_tcnns_on_unit_directions():
    directions = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(8)), dim=-1)
    sh = TcnnSphericalHarmonics(4)((directions + 1) / 2)
    x, y, z = directions.double().unbind(-1)
    # a few terms written out from their closed forms (sqrt(3)/(2 sqrt(pi)) y with tcnn's sign, ...)
    k = 1 / math.sqrt(math.pi)
    torch.testing.assert_close(sh[:, 0].double(), torch.full_like(x, k / 2))
    torch.testing.assert_close(sh[:, 1].double(), -math.sqrt(3) / 2 * k * y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sh[:, 6].double(), math.sqrt(5) / 4 * k * (3 * z * z - 1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sh[:, 15].double(), math.sqrt(70) / 8 * k * x * (3 * y * y - x * x),
                               rtol=1e-5, atol=1e-6)
    # orthonormal: the mean of Y_i Y_j over the sphere is delta_ij / (4 pi)
    many = torch.nn.functional.normalize(torch.randn(200_000, 3, generator=torch.Generator().manual_seed(9)), dim=-1)
    basis = TcnnSphericalHarmonics(4)((many + 1) / 2).double()
    gram = basis.T @ basis / many.shape[0] * 4 * math.pi
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_bad_params_and_configs_are_refused():
    grid = TcnnHashGrid(TcnnGridConfig(3, 2, 2, 8, 4, 2.0))
    with pytest.raises(SINRInputError, match="hold 7 values"):
        grid.load_tcnn_params_(torch.zeros(7))
    bad = torch.zeros(grid.n_params)
    bad[3] = float("nan")
    with pytest.raises(SINRInputError, match="NaN"):
        grid.load_tcnn_params_(bad)
    assert not grid.hash_table.any()  # nothing half-loaded
    with pytest.raises(SINRInputError, match=r"\(\.\.\., 3\)"):
        grid(torch.zeros(4, 2))
    with pytest.raises(SINRConfigError, match="activations"):
        TcnnNetworkConfig(8, 1, 16, 1, "Softplus")
    with pytest.raises(SINRConfigError, match="FullyFusedMLP has 16, 32, 64 or 128"):
        TcnnNetworkConfig(8, 1, 48, 1)
    with pytest.raises(SINRConfigError, match="coherent prime"):
        TcnnGridConfig.from_tcnn(3, {"otype": "HashGrid", "hash": "Prime"})
