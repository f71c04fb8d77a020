"""A SIREN (sine-activated MLP), the INR the paper uses for images, and a small image fitter.

Plain ``nn.Linear`` layers inside, so ``compress_model`` needs no special case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm


class Sine(nn.Module):
    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


@dataclass
class SirenConfig:
    in_features: int = 2
    hidden_features: int = 64
    hidden_layers: int = 3  # WIRE's convention: linears between the input and the output layer
    out_features: int = 3
    w0: float = 30.0
    w0_hidden: float = 30.0


class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020) with its initialization; ``net`` is a plain Sequential."""

    def __init__(self, config: SirenConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or SirenConfig()
        layers: list[nn.Module] = [nn.Linear(c.in_features, c.hidden_features), Sine(c.w0)]
        for _ in range(c.hidden_layers):
            layers += [nn.Linear(c.hidden_features, c.hidden_features), Sine(c.w0_hidden)]
        layers.append(nn.Linear(c.hidden_features, c.out_features))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            linears[0].weight.uniform_(-1 / c.in_features, 1 / c.in_features)
            for layer in linears[1:]:
                bound = math.sqrt(6 / layer.in_features) / c.w0_hidden
                layer.weight.uniform_(-bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


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


def fit_image(model: nn.Module, image: torch.Tensor, steps: int, lr: float = 1e-3, progress: bool = True) -> float:
    """Fit ``model`` to ``image`` (3, H, W in [0, 1]) with full-batch Adam and cosine decay.

    Keeps the best-PSNR weights (the loss is noisy late in training). Returns that PSNR.
    """
    _, height, width = image.shape
    coords = pixel_grid(height, width, image.device)
    target = image.permute(1, 2, 0).reshape(-1, image.shape[0]) * 2 - 1  # outputs in [-1, 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    best, best_state = -1.0, None
    bar = tqdm(range(steps), desc="fitting SIREN", disable=not progress, mininterval=1.0)
    for step in bar:
        loss = ((model(coords) - target) ** 2).mean()
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
