"""Fitting an occupancy INR to a voxel volume, with a cache of fits.

The paper (following WIRE's occupancy code) fits 512^3 volumes with full passes over every voxel
in random order, batches of 2e5 points, Adam at lr 5e-3 decayed to 0.2x, MSE on 0/1, and an MLP
of 3 hidden layers x 128. Two samplers:

* ``"passes"``: WIRE's; consecutive batches walk through a shuffled permutation of all voxels,
  then the next permutation;
* ``"surface"``: half of each batch from a band of voxels around the surface, half uniform over
  the grid. Far from the surface the answer is a constant a network learns in a few steps; on a
  CPU budget the samples spent near the surface are the ones that move the IoU.

Models are ``torch_sinr.inr.models.INR`` (plain ``nn.Linear`` layers), so ``compress`` needs no special
case. ``hidden_layers`` counts hidden x hidden linears, as ``INRConfig`` does everywhere here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ...errors import SINRConfigError, SINRInputError
from ..models import INR, INRConfig
from .band import surface_band
from .metrics import model_iou
from .volume import grid_coordinates

FIT_VERSION = 1  # bump when the fitter changes what it produces for the same settings
SAMPLERS = ("passes", "surface")
OCCUPANCY_ACTIVATIONS = ("gauss", "siren", "wire")


@dataclass(frozen=True)
class OccupancyFitConfig:
    """Everything that determines a fit besides the volume and the seed."""

    # Defaults: the paper's network and WIRE's occupancy settings (for 512^3; see CPU_PROTOCOL).
    activation: str = "gauss"  # the paper's choice for occupancy (Table S1)
    hidden_features: int = 128
    hidden_layers: int = 3
    gauss_scale: float = 40.0  # WIRE's occupancy setting (sigma0)
    wire_omega: float = 10.0  # WIRE's occupancy omega0
    wire_scale: float = 40.0  # WIRE's occupancy sigma0
    siren_w0: float = 30.0
    sampler: str = "surface"
    steps: int = 2000  # Adam steps (batches)
    batch_size: int = 1 << 15
    lr: float = 5e-3
    final_lr_factor: float = 0.2  # lr decays exponentially to this share of lr, as WIRE's
    surface_band: int = 2  # voxels within this many steps of a label change are "near the surface"
    surface_fraction: float = 0.5  # share of each "surface" batch drawn from the band

    def __post_init__(self) -> None:
        if self.activation not in OCCUPANCY_ACTIVATIONS:
            raise SINRConfigError(f"activation must be one of {OCCUPANCY_ACTIVATIONS}, got {self.activation!r}")
        if self.sampler not in SAMPLERS:
            raise SINRConfigError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("hidden_features", "hidden_layers", "steps", "batch_size", "surface_band"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SINRConfigError(f"{name} must be a positive int, got {value!r}")
        if not (self.lr > 0 and 0 < self.final_lr_factor <= 1 and 0 <= self.surface_fraction <= 1):
            raise SINRConfigError(f"need lr > 0, 0 < final_lr_factor <= 1 and 0 <= surface_fraction <= 1, got "
                                  f"{self.lr}, {self.final_lr_factor}, {self.surface_fraction}")

    def inr_config(self) -> INRConfig:
        return INRConfig(in_features=3, out_features=1, hidden_features=self.hidden_features,
                         hidden_layers=self.hidden_layers, activation=self.activation, w0=self.siren_w0,
                         w0_hidden=self.siren_w0, gauss_scale=self.gauss_scale, wire_omega=self.wire_omega,
                         wire_scale=self.wire_scale)

    def to_dict(self) -> dict:
        return asdict(self)


# The reduced CPU protocol. The paper fits 512^3 volumes for 200 full passes on a GPU; on two CPU
# cores the Table S1 study (3 activations x 2 shapes, plus compressing the Gauss fits) must fit in
# about two hours. So: 128^3 volumes and a fixed budget of 4000 batches of 2^14 points, half near
# the surface (65 M points, 31 passes' worth at 128^3). Measured on Lucy at 128^3 (one core, under
# load): 0.15 s a batch for Gauss 3 x 128, so about 10 minutes a fit; 400 batches reach IoU 0.960.
#
# What changes with the resolution: the paper's scale 40 (Gauss) and sigma 40 / omega 10 (WIRE)
# give features about 1/40 wide: 6 voxels at 512^3, 1.6 at 128^3, under one at 64^3. At
# 64^3 (Dragon, 600 batches of 8192) Gauss 40 ends at IoU 0.008 and WIRE 10/40 at 0.004 (the
# network stays constant), while Gauss 10 reaches 0.998 and WIRE 2.5/10 0.998; on Lucy at 128^3
# (400 batches of 2^14) Gauss 40 ends at 0.266 (MSE 0.127) and Gauss 10 at 0.960. So the protocol
# divides them by 512 / 128 = 4, which keeps their width in voxels. SIREN (w0 30) diverges at lr
# 5e-3 on the same run (IoU 0) and reaches 1.000 at 1e-3, so it trains at 1e-3.
CPU_PROTOCOL_RESOLUTION = 128
CPU_PROTOCOL = OccupancyFitConfig(steps=4000, batch_size=1 << 14, sampler="surface", gauss_scale=10.0,
                                  wire_omega=2.5, wire_scale=10.0)
CPU_PROTOCOL_LR = {"gauss": 5e-3, "wire": 5e-3, "siren": 1e-3}


def cpu_protocol(activation: str = "gauss") -> OccupancyFitConfig:
    """The reduced CPU protocol for one activation (its learning rate included)."""
    if activation not in CPU_PROTOCOL_LR:
        raise SINRConfigError(f"activation must be one of {OCCUPANCY_ACTIVATIONS}, got {activation!r}")
    return replace(CPU_PROTOCOL, activation=activation, lr=CPU_PROTOCOL_LR[activation])


class VoxelSampler:
    """Batches of (coordinates (B, 3), labels (B, 1)) drawn from a volume by a seeded generator."""

    def __init__(self, occupancy: np.ndarray, config: OccupancyFitConfig, seed: int) -> None:
        occupancy = np.asarray(occupancy)
        if occupancy.ndim != 3 or len(set(occupancy.shape)) != 1 or occupancy.dtype != bool:
            raise SINRInputError(f"occupancy must be a bool (N, N, N) volume, got {occupancy.dtype} {occupancy.shape}")
        # one byte per voxel (float32 labels would take 512 MB at 512^3); batches convert
        self.labels = torch.from_numpy(occupancy.reshape(-1).view(np.uint8))
        self.axis = torch.from_numpy(grid_coordinates(occupancy.shape[0]).astype(np.float32))
        self.n = occupancy.shape[0]
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self.total = self.labels.numel()
        self.band = None
        if config.sampler == "surface" and config.surface_fraction > 0:
            band = np.flatnonzero(surface_band(occupancy, config.surface_band))
            # An empty or full volume has no surface: sample it uniformly.
            self.band = torch.from_numpy(band) if len(band) else None
        self._order, self._position = None, self.total

    def _next_pass_indices(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self._position >= self.total:
                # int32 halves the permutation (512 MB at 512^3) wherever it can hold the indices
                dtype = torch.int32 if self.total < 2**31 else torch.int64
                self._order = torch.randperm(self.total, generator=self.generator, dtype=dtype)
                self._position = 0
            take = min(count, self.total - self._position)
            parts.append(self._order[self._position:self._position + take])
            self._position += take
            count -= take
        return torch.cat(parts)

    def indices(self) -> torch.Tensor:
        size = self.config.batch_size
        if self.config.sampler == "passes":
            return self._next_pass_indices(size)
        near = round(size * self.config.surface_fraction) if self.band is not None else 0
        uniform = torch.randint(self.total, (size - near,), generator=self.generator)
        if near == 0:
            return uniform
        picks = self.band[torch.randint(len(self.band), (near,), generator=self.generator)]
        return torch.cat([picks, uniform])

    def batch(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        index = (self.indices() if index is None else index).long()
        ix, rest = index // (self.n * self.n), index % (self.n * self.n)
        coords = torch.stack([self.axis[ix], self.axis[rest // self.n], self.axis[rest % self.n]], dim=1)
        return coords, self.labels[index].float().unsqueeze(1)


def fit_occupancy(occupancy: np.ndarray, config: OccupancyFitConfig = CPU_PROTOCOL, *, seed: int = 0,
                  progress: bool = True, device: str | torch.device = "cpu") -> tuple[INR, dict]:
    """Fit a fresh INR to the bool volume; returns it (on the CPU, eval mode) and a record
    (IoU over the full grid, last losses, seconds).

    On a CPU, ``torch.set_flush_denormal(True)`` makes Gauss and WIRE fits about 4x faster (their
    activations underflow to subnormal floats far from the centres); it is a process-wide
    setting, so it is left to the caller (the occupancy benchmark sets it).
    """
    sampler = VoxelSampler(occupancy, config, seed)
    torch.manual_seed(seed)
    model = INR(config.inr_config())  # initialised on the CPU: the same start on any device
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    decay = config.final_lr_factor ** (1.0 / config.steps)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, decay)
    started = time.perf_counter()
    losses = []
    bar = tqdm(range(config.steps), desc=f"fitting {config.activation} occupancy", disable=not progress,
               mininterval=1.0)
    for step in bar:
        coords, labels = sampler.batch()
        loss = ((model(coords.to(device)) - labels.to(device)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(mse=f"{np.mean(losses[-50:]):.4f}")
    seconds = time.perf_counter() - started
    model = model.cpu().eval()
    record = {"iou": model_iou(model, occupancy), "final_mse": float(np.mean(losses[-50:])), "seconds": seconds,
              "env": {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}}
    return model, record


def fit_key(volume_key: dict, config: OccupancyFitConfig, seed: int) -> dict:
    return {"volume": volume_key, "config": config.to_dict(), "seed": seed, "fit_version": FIT_VERSION}


def fit_cache_path(cache_dir: str | Path, key: dict) -> Path:
    from ..fitting import key_digest

    digest = key_digest(key)
    c, v = key["config"], key["volume"]
    stem = Path(v["mesh"]).stem
    shape = f"{c['hidden_layers']}x{c['hidden_features']}"
    return Path(cache_dir) / f"{stem}-{v['resolution']}-{c['activation']}-{shape}-{digest}.safetensors"


def fit_occupancy_cached(volume, config: OccupancyFitConfig = CPU_PROTOCOL, *, cache_dir: str | Path, seed: int = 0,
                         progress: bool = True, device: str | torch.device = "cpu") -> tuple[INR, dict]:
    """``fit_occupancy`` on an ``OccupancyVolume``, stored as .safetensors named by a hash of the
    volume's key (mesh SHA-256, resolution, settings), the fit settings and the seed."""
    from ..fitting import read_fit, write_fit  # the image fits' cache format (fitting imports Pillow)

    key = fit_key(volume.key, config, seed)
    path = fit_cache_path(cache_dir, key)
    cached = read_fit(path, key, config.inr_config())
    if cached is not None:
        return cached
    model, record = fit_occupancy(volume.occupancy, config, seed=seed, progress=progress, device=device)
    record = {"key": key, **record}
    write_fit(path, model, record)
    return model, record


def sampled_loss(occupancy: np.ndarray, batch_size: int = 1 << 14, *, surface_fraction: float = 0.5,
                 band: int = 2, seed: int = 0) -> Callable[[nn.Module], torch.Tensor]:
    """``loss_fn(model)``: MSE on a fresh batch of grid points at every call, drawn as the fit
    draws them (half from the surface band by default), from a generator seeded with ``seed``.

    For fine-tuning compressed models (``finetune_codes``, ``finetune_uniform``,
    ``torch_sinr.compress``). A fixed sample was used before and overfitted: 300 steps on one
    2^14-point set lowered the full-grid IoU of every method (uniform+ft 8-bit 0.978 against 0.985
    without fine-tuning, Lucy 128^3). The loss is stochastic, so pick the best iterate by IoU
    (their ``select`` / ``select_by_score``), not by this loss.
    """
    config = replace(CPU_PROTOCOL, sampler="surface", batch_size=batch_size, surface_fraction=surface_fraction,
                     surface_band=band)
    sampler = VoxelSampler(occupancy, config, seed)

    def loss(model: nn.Module) -> torch.Tensor:
        coords, labels = sampler.batch()
        device = _device(model)
        return ((model(coords.to(device)) - labels.to(device)) ** 2).mean()

    return loss


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
