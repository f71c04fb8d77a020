"""A SHACIRA-style image model: a 2-D hash grid of integer latents, one shared latent decoder,
and a small ReLU MLP to RGB.

- ``grid.latents``: one latent per table row (``latent_dim`` = 1), trained as floats and made
  integers by annealed soft rounding, then straight-through rounding (``quantize``); the file
  stores them as integers, range-coded (format kind ``integers``).
- ``latent_decoder``: one ``nn.Linear(latent_dim, features)`` shared by every level (SHACIRA's
  ``(q / div) @ scale + shift``); being affine, it commutes with the interpolation, so it is
  applied to the interpolated latents (N x levels rows instead of every table row).
- ``mlp``: levels * features -> hidden (ReLU) x hidden_layers -> 3, no output activation.
- ``prior``: the learned factorized entropy model of the latents, trained with the rate term;
  it is not part of the decoded model's file (the file's range coder stores its own model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from torch_sinr.errors import SINRConfigError
from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig
from torch_sinr.inr.hashgrid.entropy import FactorizedPrior
from torch_sinr.inr.hashgrid.quantize import soft_round


@dataclass(frozen=True)
class ImageModelConfig:
    """The model's shape. SHACIRA's gigapixel config: 16 levels, log2 T 23, 4 features, finest
    resolution 10725 (half the image's long side), MLP 64 -> 96 -> 96 -> 3."""

    levels: int = 16
    log2_table: int = 20
    min_res: int = 16
    max_res: int = 2048
    latent_dim: int = 1
    features: int = 4
    hidden: int = 96
    hidden_layers: int = 2  # hidden x hidden linears count one less: 64 -> 96 -> 96 -> 3 has 2
    latent_init: float = 0.5  # latents start U(-latent_init, latent_init)

    def __post_init__(self) -> None:
        for name in ("levels", "log2_table", "min_res", "max_res", "latent_dim", "features", "hidden", "hidden_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SINRConfigError(f"{name} must be a positive int, got {value!r}")

    def grid_config(self) -> HashGridConfig:
        return HashGridConfig(dims=2, levels=self.levels, log2_table=self.log2_table, latent_dim=self.latent_dim,
                              min_res=self.min_res, max_res=self.max_res, init_scale=self.latent_init)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_image(cls, height: int, width: int, **overrides) -> "ImageModelConfig":
        """SHACIRA's rule for the finest level: half the image's longer side."""
        max_res = max(16, max(height, width) // 2)
        return cls(**{"max_res": max_res, **overrides})


class ImageModel(nn.Module):
    def __init__(self, config: ImageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.grid = HashGrid(config.grid_config())
        self.latent_decoder = nn.Linear(config.latent_dim, config.features)
        with torch.no_grad():  # SHACIRA's N(0, 0.1) scale: integer latents map to small features
            self.latent_decoder.weight.normal_(0.0, 0.1)
            self.latent_decoder.bias.zero_()
        layers: list[nn.Module] = []
        width = config.levels * config.features
        for _ in range(config.hidden_layers):
            layers += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        layers.append(nn.Linear(width, 3))
        self.mlp = nn.Sequential(*layers)
        # How latents are read in forward: "float" (as trained, no rounding), "soft" (annealed
        # soft rounding at ``temperature``), "hard" (straight-through rounding: the file's values).
        self.rounding = "hard"
        self.temperature = 1.0

    def _round(self, rows: torch.Tensor) -> torch.Tensor:
        if self.rounding == "soft":
            return soft_round(rows, self.temperature)
        if self.rounding == "hard":
            return soft_round(rows, 0.0, hard=True)
        return rows

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        latents = self.grid(coords, transform=self._round)  # (N, levels * latent_dim)
        n = latents.shape[0]
        features = self.latent_decoder(latents.reshape(n, self.config.levels, self.config.latent_dim))
        return self.mlp(features.reshape(n, -1))

    def parts(self) -> dict[str, list[str]]:
        """State-dict names by part: latents, latent decoder, MLP (for byte reports)."""
        names = list(self.state_dict())
        return {"latents": [k for k in names if k.startswith("grid.")],
                "latent decoder": [k for k in names if k.startswith("latent_decoder.")],
                "mlp": [k for k in names if k.startswith("mlp.")]}


class RateModel(nn.Module):
    """The training-time rate: a learned factorized prior over the latents (SHACIRA's
    BitEstimator) and the mean bits per latent of a random subset of table rows."""

    def __init__(self, channels: int = 1, hidden: tuple[int, ...] = (3, 3, 3)) -> None:
        super().__init__()
        self.prior = FactorizedPrior(channels=channels, hidden=hidden)

    def bits_per_latent(self, latents: torch.Tensor, rows: int | None, generator: torch.Generator | None) -> torch.Tensor:
        """Mean estimated bits of latents + U(-1/2, 1/2) noise over ``rows`` random rows (all
        when None): an unbiased estimate of the table's mean at a fraction of the cost."""
        if rows is not None and rows < latents.shape[0]:
            pick = torch.randint(latents.shape[0], (rows,), generator=generator, device="cpu").to(latents.device)
            latents = latents[pick]
        noise = torch.rand(latents.shape, generator=generator, device="cpu").to(latents.device) - 0.5
        return self.prior.bits(latents + noise).mean()

    @torch.no_grad()
    def estimated_bits(self, integers: torch.Tensor, chunk: int = 1 << 20) -> float:
        """The prior's information content of the rounded latents (what the rate term aims at)."""
        total = 0.0
        flat = integers.reshape(-1, integers.shape[-1])
        for start in range(0, flat.shape[0], chunk):
            total += float(self.prior.bits(flat[start:start + chunk]).sum())
        return total
