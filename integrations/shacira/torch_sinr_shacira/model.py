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

from torch_sinr import SINRLinear
from torch_sinr.errors import SINRConfigError
from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig
from torch_sinr.inr.hashgrid.entropy import FactorizedPrior
from torch_sinr.inr.hashgrid.fast import interpolate_levels
from torch_sinr.inr.hashgrid.quantize import soft_round, soft_round_with_slope


# Layers decode folds: both compute F.linear(x, weight, bias) (SINRLinear from its decoded weight).
_AFFINE = (nn.Linear, SINRLinear)
# Points per decode chunk: the MLP's two (chunk, 96) activation buffers are 12 MB at 2**14 and
# are reused chunk after chunk (2**14 decoded faster than 2**16 and 2**12 on 2 cores here).
DECODE_CHUNK = 1 << 14


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


def _affine(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
            out: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight_t + bias`` into ``out`` when given (a linear without bias too)."""
    if bias is None:
        return torch.mm(x, weight_t) if out is None else torch.mm(x, weight_t, out=out)
    return torch.addmm(bias, x, weight_t) if out is None else torch.addmm(bias, x, weight_t, out=out)


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
        # True: soft/hard rounding fused into the grid's gather and backward scatter
        # (soft_round_with_slope); False: soft_round as an autograd transform of the gathered rows,
        # the path before the fusion (same function; tests and benchmarks compare the two).
        self.fused_rounding = True

    def _round(self, rows: torch.Tensor) -> torch.Tensor:
        if self.rounding == "soft":
            return soft_round(rows, self.temperature)
        if self.rounding == "hard":
            return soft_round(rows, 0.0, hard=True)
        return rows

    def _round_with_slope(self, rows: torch.Tensor):
        return soft_round_with_slope(rows, self.temperature, hard=self.rounding == "hard")

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        # "float" reads the rows as they are: no transform, so the grid takes its fused gather
        # (and, without a gradient, its inference path)
        if self.rounding == "float":
            latents = self.grid(coords)  # (N, levels * latent_dim)
        elif self.fused_rounding:
            latents = self.grid(coords, rounding=self._round_with_slope)
        else:
            latents = self.grid(coords, transform=self._round)
        n = latents.shape[0]
        features = self.latent_decoder(latents.reshape(n, self.config.levels, self.config.latent_dim))
        return self.mlp(features.reshape(n, -1))

    # no_grad rather than inference_mode: SINRLinear caches its decoded weight, and an inference
    # tensor in that cache could not be saved for a later backward
    @torch.no_grad()
    def decode(self, coords: torch.Tensor, chunk: int = DECODE_CHUNK) -> torch.Tensor:
        """RGB ``(N, 3)`` of ``coords`` without autograd: what ``forward`` computes, faster.

        The grid's inference path (``torch_sinr.inr.hashgrid.fast``), and the latent decoder folded
        into the MLP's first linear: both are affine, so ``W1 @ (W_dec x + b_dec) + b1`` is one
        ``levels * latent_dim -> hidden`` linear (16 -> 96 at the default settings instead of
        the decoder's output and a 64 -> 96 linear). Same function as ``forward``; float32 sums
        in another order, so equal to it within float32 rounding (test_model.py bounds it).
        Points go through in chunks of ``chunk`` so the MLP's activations stay in cache.
        Latents are read as ``rounding`` says: "float" as they are, "hard" rounded; "soft" is
        random and refused.
        """
        if self.rounding == "soft":
            raise SINRConfigError("decode reads latents as they are or rounded; set rounding to 'float' or 'hard'")
        grid, levels, latent_dim = self.grid, self.config.levels, self.config.latent_dim
        first, rest = self.mlp[0], self.mlp[1:]
        if not (isinstance(first, _AFFINE) and isinstance(self.latent_decoder, _AFFINE)):
            raise SINRConfigError(f"decode folds two linear layers (nn.Linear or SINRLinear), got "
                                  f"{type(self.latent_decoder).__name__} and {type(first).__name__}")
        # W1 (hidden, levels, features) @ W_dec (features, latent_dim): one weight per level and latent
        w1 = first.weight.view(first.out_features, levels, -1)
        weight = torch.einsum("hlf,fk->hlk", w1, self.latent_decoder.weight).reshape(first.out_features, -1)
        bias = first.bias + w1.sum(dim=1) @ self.latent_decoder.bias
        table = grid.latents.detach()
        if self.rounding == "hard":
            table = torch.round(table)
        # the MLP after its first linear: ReLUs in place, linears as (weight^T, bias) for addmm
        layers = [(m.weight.t(), m.bias) if isinstance(m, _AFFINE) else m for m in rest]
        last = max((i for i, layer in enumerate(layers) if isinstance(layer, tuple)), default=-1)
        out = torch.empty(coords.shape[0], self.mlp[-1].out_features, dtype=table.dtype, device=table.device)
        # two activation buffers reused by every chunk: a fresh (chunk, hidden) tensor per layer
        # and chunk costs page faults and cache misses comparable to the matmul itself
        rows = min(chunk, coords.shape[0])
        buffers = [torch.empty(rows, first.out_features, dtype=table.dtype, device=table.device) for _ in range(2)]
        u = grid.prepare_coords(coords)  # checked and clamped once, not per chunk
        plan = grid.level_plan(u.dtype)
        for start in range(0, coords.shape[0], chunk):
            stop = min(coords.shape[0], start + chunk)
            n = stop - start
            latents = interpolate_levels(plan, table, u[start:stop], u.dtype)  # (levels, n, latent_dim)
            flat = latents.permute(1, 0, 2).reshape(n, levels * latent_dim)
            h = torch.addmm(bias, flat, weight.t(), out=buffers[0][:n])
            for index, layer in enumerate(layers):
                if isinstance(layer, nn.ReLU):
                    h = h.relu_()
                elif isinstance(layer, tuple):
                    # the last linear writes the output rows; the others the buffer h is not in
                    target = out[start:stop] if index == last else buffers[h.data_ptr() == buffers[0].data_ptr()][:n]
                    h = _affine(h, *layer, target if layer[0].shape[1] == target.shape[1] else None)
                else:
                    h = layer(h)
            if h.data_ptr() != out[start:stop].data_ptr():
                out[start:stop] = h
        return out

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
