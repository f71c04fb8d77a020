"""The torch port against tiny-cuda-nn itself: the same configs built with tcnn on a GPU, their
``params`` loaded into the port, outputs compared. Skipped without CUDA or tinycudann."""

from __future__ import annotations

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
tcnn = pytest.importorskip("tinycudann", reason="needs tiny-cuda-nn's torch bindings (tinycudann)")

from torch_sinr_nerfstudio.tcnn_port import (TcnnGridConfig, TcnnHashGrid, TcnnNetwork,  # noqa: E402
                                             TcnnNetworkConfig, TcnnNetworkWithInputEncoding,
                                             TcnnSphericalHarmonics)

# a reduced nerfacto field grid: dense coarse levels, hashed fine ones
GRID = {"otype": "HashGrid", "n_levels": 8, "n_features_per_level": 2, "log2_hashmap_size": 15,
        "base_resolution": 16, "per_level_scale": float(np.exp((np.log(512) - np.log(16)) / 7))}
RELATIVE = 1e-3  # tcnn computes in float16; the port in float32 from the same float16-rounded params


def _close(port: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.float().cpu()
    return float((port.cpu() - reference).abs().max() / reference.abs().max().clamp_min(1e-6))


def _points(n: int = 4096, dims: int = 3) -> torch.Tensor:
    return torch.rand(n, dims, generator=torch.Generator().manual_seed(0))


def _randomize(module) -> torch.Tensor:
    """Params at trained-scene scales (tcnn's own init makes a near-zero grid)."""
    with torch.no_grad():
        module.params.copy_(torch.randn_like(module.params) * 0.3)
    return module.params.detach().cpu()


@pytest.mark.parametrize("dims", [2, 3])
def test_hash_grid_equals_tcnns(dims):
    encoding = tcnn.Encoding(dims, GRID, dtype=torch.float16)
    params = _randomize(encoding)
    port = TcnnHashGrid(TcnnGridConfig.from_tcnn(dims, GRID)).load_tcnn_params_(params)
    x = _points(dims=dims)
    assert port.n_params == params.numel()
    assert _close(port(x), encoding(x.cuda())) <= RELATIVE


@pytest.mark.parametrize("network", [
    {"otype": "FullyFusedMLP", "activation": "ReLU", "output_activation": "Sigmoid", "n_neurons": 64,
     "n_hidden_layers": 2},
    {"otype": "CutlassMLP", "activation": "ReLU", "output_activation": "None", "n_neurons": 48,
     "n_hidden_layers": 1},
])
def test_network_equals_tcnns(network):
    n_in, n_out = 63, 3  # nerfacto's color head: one padded input (tcnn pads with ones)
    net = tcnn.Network(n_in, n_out, network)
    params = _randomize(net)
    port = TcnnNetwork(TcnnNetworkConfig.from_tcnn(n_in, n_out, network, input_padding=1.0)).load_tcnn_params_(params)
    x = torch.rand(4096, n_in, generator=torch.Generator().manual_seed(1))
    assert _close(port(x), net(x.cuda())) <= RELATIVE


def test_network_with_input_encoding_equals_tcnns():
    network = {"otype": "FullyFusedMLP", "activation": "ReLU", "output_activation": "None", "n_neurons": 64,
               "n_hidden_layers": 1}
    fused = tcnn.NetworkWithInputEncoding(3, 16, GRID, network)
    params = _randomize(fused)
    grid = TcnnHashGrid(TcnnGridConfig.from_tcnn(3, GRID))
    mlp = TcnnNetwork(TcnnNetworkConfig.from_tcnn(grid.n_output_dims, 16, network, input_padding=0.0))
    port = TcnnNetworkWithInputEncoding(grid, mlp).load_tcnn_params_(params)
    x = _points()
    assert _close(port(x), fused(x.cuda())) <= RELATIVE


def test_spherical_harmonics_equal_tcnns():
    sh = tcnn.Encoding(3, {"otype": "SphericalHarmonics", "degree": 4}, dtype=torch.float32)
    directions = torch.nn.functional.normalize(torch.randn(4096, 3, generator=torch.Generator().manual_seed(2)),
                                               dim=-1)
    u = (directions + 1) / 2
    assert _close(TcnnSphericalHarmonics(4)(u), sh(u.cuda())) <= 1e-5
