import numpy as np
import pytest
import torch

from torch_sinr.errors import SINRConfigError, SINRInputError
from torch_sinr.inr.models import INR
from torch_sinr.inr.occupancy.fit import (CPU_PROTOCOL, CPU_PROTOCOL_RESOLUTION, OccupancyFitConfig, VoxelSampler,
                                      cpu_protocol, fit_occupancy, fit_occupancy_cached, sampled_loss)
from torch_sinr.inr.occupancy.band import surface_band
from torch_sinr.inr.occupancy.mesh import Normalization
from torch_sinr.inr.occupancy.metrics import model_iou
from torch_sinr.inr.occupancy.store import OccupancyVolume

from .shapes import inside_ball

BALL = inside_ball(16, 0.6)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(**changes) -> OccupancyFitConfig:
    settings = dict(hidden_features=32, hidden_layers=2, steps=200, batch_size=1024)
    settings.update(changes)
    return OccupancyFitConfig(**settings)


@pytest.mark.parametrize("config", [tiny(activation="siren"), tiny(activation="gauss", gauss_scale=5.0),
                                    tiny(activation="siren", sampler="passes"),
                                    tiny(activation="wire", wire_omega=2.0, wire_scale=5.0)],
                         ids=["siren-surface", "gauss-surface", "siren-passes", "wire-surface"])
def test_fitting_improves_iou_on_a_tiny_grid(config):
    torch.manual_seed(0)
    untrained = model_iou(INR(config.inr_config()), BALL)
    model, record = fit_occupancy(BALL, config, seed=0, progress=False)
    assert record["iou"] == model_iou(model, BALL)
    assert untrained < 0.5 and record["iou"] > 0.99


def test_passes_visit_every_voxel_once_per_pass():
    sampler = VoxelSampler(BALL, tiny(sampler="passes", batch_size=1000), seed=3)
    seen = torch.cat([sampler.indices() for _ in range(8)])  # 8000 of 4096 voxels: two passes minus 192
    assert torch.equal(seen[:4096].sort().values, torch.arange(4096))
    assert len(set(seen[4096:].tolist())) == 8000 - 4096


def test_surface_batches_draw_half_from_the_band():
    sampler = VoxelSampler(BALL, tiny(batch_size=1000), seed=0)
    band = surface_band(BALL, 2).reshape(-1)
    index = sampler.indices()
    assert band[index[:500].numpy()].all()
    coords, labels = sampler.batch(index)
    assert torch.equal(labels[:, 0] > 0.5, torch.from_numpy(BALL.reshape(-1)[index.numpy()]))
    assert torch.equal(coords.pow(2).sum(dim=1) < 0.36, labels[:, 0] > 0.5)  # coordinates match labels


def test_fits_are_cached_by_settings(tmp_path):
    volume = OccupancyVolume(BALL, Normalization((0.0, 0.0, 0.0), 1.0),
                             {"mesh": "ball.ply", "mesh_sha256": "0" * 64, "resolution": 16}, 0.0)
    config = tiny(activation="siren", steps=20)
    model, record = fit_occupancy_cached(volume, config, cache_dir=tmp_path, progress=False)
    again, cached = fit_occupancy_cached(volume, config, cache_dir=tmp_path, progress=False)
    assert cached == record
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    fit_occupancy_cached(volume, tiny(activation="siren", steps=21), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("ball-16-siren-2x32-*.safetensors"))) == 2


def test_sampled_loss_draws_fresh_seeded_batches_and_falls_with_fitting():
    torch.manual_seed(0)
    config = tiny(activation="siren")
    untrained = INR(config.inr_config())
    first, second = sampled_loss(BALL, 2000, seed=1), sampled_loss(BALL, 2000, seed=1)
    a, b = [first(untrained).item() for _ in range(3)], [second(untrained).item() for _ in range(3)]
    assert a == b  # the same seed, the same sequence of batches
    assert len(set(a)) == 3  # a fresh batch at every call
    model, _ = fit_occupancy(BALL, config, progress=False)
    assert first(model).item() < 0.1 * first(untrained).item()


def test_the_cpu_protocol_is_the_paper_network_at_128_with_scales_for_128():
    assert CPU_PROTOCOL_RESOLUTION == 128
    assert (CPU_PROTOCOL.hidden_layers, CPU_PROTOCOL.hidden_features, CPU_PROTOCOL.activation) == (3, 128, "gauss")
    paper = OccupancyFitConfig()
    assert (paper.gauss_scale, paper.wire_omega, paper.wire_scale) == (40.0, 10.0, 40.0)
    shrink = 512 / CPU_PROTOCOL_RESOLUTION  # the same feature width in voxels as at the paper's 512^3
    assert CPU_PROTOCOL.gauss_scale == paper.gauss_scale / shrink
    assert (CPU_PROTOCOL.wire_scale, CPU_PROTOCOL.wire_omega) == (paper.wire_scale / shrink, paper.wire_omega / shrink)
    assert cpu_protocol("siren").lr == 1e-3 and cpu_protocol("wire").activation == "wire"
    with pytest.raises(SINRConfigError, match="activation"):
        cpu_protocol("relu")


def test_bad_settings_are_refused():
    with pytest.raises(SINRConfigError, match="activation must be one of"):
        OccupancyFitConfig(activation="relu")
    with pytest.raises(SINRConfigError, match="sampler"):
        OccupancyFitConfig(sampler="random")
    with pytest.raises(SINRConfigError, match="steps must be a positive int"):
        OccupancyFitConfig(steps=0)
    with pytest.raises(SINRInputError, match="bool"):
        fit_occupancy(BALL.astype(np.float32), tiny(), progress=False)
