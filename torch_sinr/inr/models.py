"""INRs (SIREN, Gauss, real Gabor/WIRE, ReLU + positional encoding) and a small image fitter.

Plain ``nn.Linear`` layers inside, so ``compress_model`` needs no special case. SIREN is the
paper's choice for images (its supplement S3.1); Gauss for occupancy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

ACTIVATIONS = ("siren", "gauss", "wire", "relu_pe", "siren_pe")


class Sine(nn.Module):
    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Gauss(nn.Module):
    """exp(-(scale * z)^2), WIRE's "Gauss" activation (scale 10 for images)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((self.scale * x) ** 2))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class RealGabor(nn.Module):
    """cos(omega * z) * exp(-(scale * z)^2): the real part of WIRE's complex Gabor wavelet."""

    def __init__(self, omega: float, scale: float) -> None:
        super().__init__()
        self.omega, self.scale = omega, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(self.omega * x) * torch.exp(-((self.scale * x) ** 2))

    def extra_repr(self) -> str:
        return f"omega={self.omega}, scale={self.scale}"


class PositionalEncoding(nn.Module):
    """[x, sin(2^k pi x), cos(2^k pi x)] for k < frequencies (NeRF's encoding); no parameters."""

    def __init__(self, frequencies: int) -> None:
        super().__init__()
        self.frequencies = frequencies

    def out_features(self, in_features: int) -> int:
        return in_features * (1 + 2 * self.frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales = (2.0 ** torch.arange(self.frequencies, device=x.device, dtype=x.dtype)) * math.pi
        angles = (x[..., None] * scales).flatten(-2)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


@dataclass
class INRConfig:
    """One MLP family for images, occupancy and radiance fields.

    ``hidden_layers`` follows WIRE's convention: the number of hidden x hidden linears between
    the input and the output layer. Activation parameters: ``w0`` (SIREN first layer),
    ``w0_hidden`` (SIREN later layers), ``gauss_scale``, ``wire_omega``/``wire_scale``,
    ``pe_frequencies`` (ReLU + positional encoding, and ``siren_pe``: a SIREN on the positional
    encoding, INRIC's network with encoding, the SINR paper's C4).
    """

    in_features: int = 2
    hidden_features: int = 64
    hidden_layers: int = 3
    out_features: int = 3
    activation: str = "siren"
    w0: float = 30.0
    w0_hidden: float = 30.0
    gauss_scale: float = 10.0
    wire_omega: float = 20.0
    wire_scale: float = 10.0
    pe_frequencies: int = 10

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")


SirenConfig = INRConfig  # the default INRConfig is a SIREN


class INR(nn.Module):
    """An MLP INR; ``net`` is a plain Sequential of nn.Linear and activation modules."""

    def __init__(self, config: INRConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or INRConfig()
        layers: list[nn.Module] = []
        in_features = c.in_features
        if c.activation in ("relu_pe", "siren_pe"):
            encoding = PositionalEncoding(c.pe_frequencies)
            layers.append(encoding)
            in_features = encoding.out_features(c.in_features)
        widths = [in_features] + [c.hidden_features] * (c.hidden_layers + 1)
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(fan_in, fan_out), self._activation(first=i == 0)]
        layers.append(nn.Linear(c.hidden_features, c.out_features))
        self.net = nn.Sequential(*layers)
        if c.activation in ("siren", "siren_pe"):
            self._siren_init()

    def _activation(self, first: bool) -> nn.Module:
        c = self.config
        if c.activation in ("siren", "siren_pe"):
            return Sine(c.w0 if first else c.w0_hidden)
        if c.activation == "gauss":
            return Gauss(c.gauss_scale)
        if c.activation == "wire":
            return RealGabor(c.wire_omega, c.wire_scale)
        return nn.ReLU()

    def _siren_init(self) -> None:
        """Sitzmann et al.: U(-1/n, 1/n) first, U(-sqrt(6/n)/w0, sqrt(6/n)/w0) after."""
        c = self.config
        with torch.no_grad():
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            first = linears[0].in_features  # the encoding's width with siren_pe
            linears[0].weight.uniform_(-1 / first, 1 / first)
            for layer in linears[1:]:
                bound = math.sqrt(6 / layer.in_features) / c.w0_hidden
                layer.weight.uniform_(-bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


Siren = INR


def pixel_grid(height: int, width: int, device=None) -> torch.Tensor:
    """(H*W, 2) coordinates in [-1, 1], row-major (y, x)."""
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for images in [0, 1] (prediction clamped, as a decoder would)."""
    mse = float(((prediction.clamp(0, 1) - target) ** 2).mean())
    return float("inf") if mse == 0 else -10 * math.log10(mse)


@torch.no_grad()
def render(model: nn.Module, height: int, width: int, chunk: int = 1 << 16) -> torch.Tensor:
    """The model's image as (3, H, W) in [0, 1]."""
    device = next(model.parameters()).device
    coords = pixel_grid(height, width, device)
    out = torch.cat([model(coords[i : i + chunk]) for i in range(0, coords.shape[0], chunk)])
    return (out.reshape(height, width, -1).permute(2, 0, 1) * 0.5 + 0.5).clamp(0, 1)


def image_loss(image: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
    """MSE of a model over all pixels of ``image`` (3, H, W in [0, 1]); outputs live in [-1, 1]."""
    coords = pixel_grid(*image.shape[1:], device=image.device)
    target = image.permute(1, 2, 0).reshape(-1, image.shape[0]) * 2 - 1
    return lambda model: ((model(coords) - target) ** 2).mean()


def fit_image(model: nn.Module, image: torch.Tensor, steps: int, lr: float = 1e-3, progress: bool = True) -> float:
    """Fit ``model`` to ``image`` (3, H, W in [0, 1]) with full-batch Adam and cosine decay.

    Keeps the best-PSNR weights (the loss is noisy late in training). Returns that PSNR.
    """
    _, height, width = image.shape
    loss_fn = image_loss(image)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    best, best_state = -1.0, None
    bar = tqdm(range(steps), desc="fitting INR", disable=not progress, mininterval=1.0)
    for step in bar:
        loss = loss_fn(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        quality = -10 * math.log10(max(loss.item() / 4, 1e-12))  # MSE in [0, 1] units
        if quality > best:
            best, best_state = quality, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step % 50 == 0:
            bar.set_postfix(psnr=f"{best:.2f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    return psnr(render(model, height, width), image)
