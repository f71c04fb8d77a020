"""Training the image model SHACIRA's way, on one process or many (``torch.distributed``).

Each step draws ``batch`` random pixels (with replacement) from the memory-mapped image, and
minimises MSE + ``rate_lambda`` x (estimated bits per latent). Latents are read through annealed
soft rounding (temperature ``temperature_start`` -> ``temperature_end``, exponentially, over
``anneal_fraction`` of the steps), then through straight-through rounding, so the model trains
against the integers its file will hold.

Data parallel: launched with ``torchrun``, every rank builds the same model (rank 0's weights are
broadcast by DistributedDataParallel), samples its own pixels (its seed includes its rank),
gradients are all-reduced, and only rank 0 writes checkpoints and files. Every random draw of a
step is seeded by (seed, rank, step), so a run resumed from a checkpoint continues exactly as
the uninterrupted run would have.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from torch_sinr.errors import SINRConfigError, SINRInputError
from torch_sinr.inr.hashgrid.quantize import hard_from, temperature_at

from .data import PixelSource
from .model import ImageModel, RateModel

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """SHACIRA's gigapixel recipe (2^18 pixels a step, MLP lr 2e-4, latents and latent decoder
    0.01, prior 1e-4, lambda 1e-4) scaled to a CPU budget: fewer, smaller steps need larger
    learning rates for the MLP and the prior (see CPU_TRAINING)."""

    steps: int = 2000
    batch: int = 1 << 16
    lr_mlp: float = 2e-4
    lr_latents: float = 0.01
    lr_decoder: float = 0.01
    lr_prior: float = 1e-4
    rate_lambda: float = 1e-4
    rate_rows: int | None = 1 << 16  # table rows whose rate is estimated each step (None: all)
    temperature_start: float = 1.0
    temperature_end: float = 0.1
    anneal_fraction: float = 0.9
    seed: int = 0
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SINRConfigError(f"{name} must be a positive int, got {value!r}")
        if min(self.lr_mlp, self.lr_latents, self.lr_decoder, self.lr_prior) <= 0 or self.rate_lambda < 0:
            raise SINRConfigError("learning rates must be > 0 and rate_lambda >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


# The reduced CPU protocol. SHACIRA trains the gigapixel model for 20 epochs of 2^18-pixel steps
# on a GPU; on two CPU cores a step of 2^14 pixels on the 5208 x 3588 image (4.9 M latents, 16
# levels) took 1.3-1.7 s (measured with another job running), so the budget is 1000 steps of 2^14
# pixels (about one epoch), the rate estimated on 2^14 table rows a step, and learning rates for
# the MLP and the prior raised 5x and 10x so that so few steps get somewhere.
# `python -m benchmarks.shacira` records what it reaches (benchmarks/results/shacira_*.md).
CPU_TRAINING = TrainConfig(steps=1000, batch=1 << 14, lr_mlp=1e-3, lr_prior=1e-3, rate_rows=1 << 14)


class Trainable(nn.Module):
    """The image model and its rate model as one module (one DDP wrapper, one state dict)."""

    def __init__(self, model: ImageModel, rate: RateModel) -> None:
        super().__init__()
        self.model, self.rate = model, rate

    def forward(self, coords: torch.Tensor, rate_rows: int | None, generator: torch.Generator):
        out = self.model(coords)
        bits = self.rate.bits_per_latent(self.model.grid.latents, rate_rows, generator)
        return out, bits


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1)


def _optimizer(trainable: Trainable, config: TrainConfig, fused: bool = True) -> torch.optim.Optimizer:
    """Adam over every group; ``fused``: torch's fused Adam kernel (one pass per tensor: 4-5 ms
    against ~35 ms a step for the 4.9M-latent table on one core, the same update up to float
    rounding: 2.4e-7 apart after 6 steps). The update stays dense: untouched rows' moments decay
    as in plain Adam."""
    model = trainable.model
    groups = [
        {"params": list(model.mlp.parameters()), "lr": config.lr_mlp},
        {"params": [model.grid.latents], "lr": config.lr_latents},
        {"params": list(model.latent_decoder.parameters()), "lr": config.lr_decoder},
        {"params": list(trainable.rate.parameters()), "lr": config.lr_prior},
    ]
    return torch.optim.Adam(groups, fused=True) if fused else torch.optim.Adam(groups)


def save_checkpoint(path: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, step: int,
                    config: TrainConfig) -> None:
    """Atomically (a temporary file renamed): a crash mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"version": CHECKPOINT_VERSION, "step": step, "train_config": config.to_dict(),
                "model_config": trainable.model.config.to_dict(), "state": trainable.state_dict(),
                "optimizer": optimizer.state_dict()}, partial)
    partial.replace(path)


def load_checkpoint(path: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, config: TrainConfig) -> int:
    """Restore a checkpoint written by ``save_checkpoint`` for the same settings; its step.
    ``weights_only=True``: tensors and plain containers only, never arbitrary objects."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("version") != CHECKPOINT_VERSION:
        raise SINRInputError(f"{path}: checkpoint version {saved.get('version')!r}, expected {CHECKPOINT_VERSION}")
    if saved["model_config"] != trainable.model.config.to_dict():
        raise SINRInputError(f"{path}: checkpoint of another model ({saved['model_config']})")
    same = {k: v for k, v in saved["train_config"].items() if k != "steps"}
    if same != {k: v for k, v in config.to_dict().items() if k != "steps"}:
        raise SINRInputError(f"{path}: checkpoint of other training settings ({saved['train_config']})")
    trainable.load_state_dict(saved["state"])
    optimizer.load_state_dict(saved["optimizer"])
    return int(saved["step"])


def train(model: ImageModel, source: PixelSource, config: TrainConfig = CPU_TRAINING, *,
          rate: RateModel | None = None, checkpoint: str | os.PathLike | None = None, progress: bool = True,
          log_every: int = 50, fused: bool = True) -> dict:
    """Train ``model`` (and ``rate``) in place on ``source``; returns a record (losses, seconds).

    With ``checkpoint``, a checkpoint there is resumed from and one is written every
    ``checkpoint_every`` steps and at the end (rank 0 only). ``fused`` (default): the rounding
    fused into the grid's gather and scatter (``ImageModel.fused_rounding``) and fused Adam, about
    twice the pixels per second on a CPU; the same training up to float rounding
    (tests/integrations/shacira/test_train_fused.py). ``fused=False``: the path before them.
    """
    rank, world = _rank_world()
    rate = rate if rate is not None else RateModel(channels=model.config.latent_dim)
    trainable = Trainable(model, rate)
    model.fused_rounding = fused
    optimizer = _optimizer(trainable, config, fused)
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        start = load_checkpoint(path, trainable, optimizer, config)
    wrapped: nn.Module = trainable
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(trainable)
    trainable.train()
    generator = torch.Generator()
    history: list[dict] = []
    started = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc="training", disable=not progress or rank != 0, mininterval=1.0,
               initial=start, total=config.steps)
    for step in bar:
        generator.manual_seed(_step_seed(config.seed, rank, step))
        torch.manual_seed(_step_seed(config.seed + 1, rank, step))  # soft rounding's Gumbel noise
        if hard_from(step, config.steps, config.anneal_fraction):
            model.rounding = "hard"
        else:
            model.rounding = "soft"
            model.temperature = temperature_at(step, config.steps, start=config.temperature_start,
                                               end=config.temperature_end, anneal_fraction=config.anneal_fraction)
        coords, colours = source.sample(config.batch, generator)
        out, bits = wrapped(coords, config.rate_rows, generator)
        mse = ((out - colours) ** 2).mean()
        loss = mse + config.rate_lambda * bits
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == config.steps - 1:
            mse_value, bits_value = mse.item(), bits.item()
            history.append({"step": step, "mse": mse_value, "bits_per_latent": bits_value,
                            "rounding": model.rounding, "temperature": model.temperature})
            bar.set_postfix(psnr=f"{-10 * math.log10(mse_value):.2f}", bits=f"{bits_value:.2f}")
        if path is not None and rank == 0 and (step + 1) % config.checkpoint_every == 0:
            save_checkpoint(path, trainable, optimizer, step + 1, config)
    if path is not None and rank == 0:
        save_checkpoint(path, trainable, optimizer, config.steps, config)
    model.rounding = "hard"
    model.fused_rounding = True
    return {"steps": config.steps, "resumed_from": start, "seconds": time.perf_counter() - started,
            "history": history, "world_size": world, "config": config.to_dict()}
