"""COIN++-style modulated networks: one meta-learned base network, each image a latent per patch.

COIN++ (Dupont et al., TMLR 2022; the SINR paper's configuration C5) stores no network per
image. A base SIREN is meta-learned once on many images; every sine layer's pre-activation is
shifted by a modulation, and the modulations of all layers come from one short latent vector
through a shared linear map. An image is cut into patches, each patch gets its own latent (fitted
in a few gradient steps from zero), and the file holds only the latent matrix (patches x d).

- ``ModulatedSiren(width, layers, latent_dim)``: ``layers`` linears (``layers - 1`` sine layers
  of ``width``, a linear output), shift modulations from ``latent_map``; ``model(coords, latents)``
  maps (P, 2) coordinates and (B, d) latents to (B, P, 3).
- ``ModulationConfig``: ``MetaConfig`` plus the patch size; a task is one patch and
  ``meta_batch`` is the number of patches per outer step.
- ``meta_learn_modulated(model, images, config)``: MAML over patches. The inner loop takes
  ``inner_steps`` gradient steps on the patches' latents from zero, each step with learned
  per-dimension rates (Meta-SGD); the outer loop trains the base network, the latent map and the
  rates. Checkpoints resume to the identical result, as ``meta.meta_learn``'s do.
- ``fit_latents(model, learned, image)``: an image's latents: the learned inner steps from zero,
  then optionally ``refine_steps`` of Adam on all of them. Returns a ``LatentGrid``.
- ``LatentGrid``: the per-image part, an ``nn.Module`` whose one ``nn.Linear`` holds the latent
  matrix, so ``compress_model`` / ``compress`` / the uniform baselines code it like any linear.
  Its weight is (d, patches): a coded vector is one latent channel over every patch, a spatial
  map; stored the other way round, a vector of d <= 16 values would count as a coordinate input
  layer (``SINRConfig.input_fan_in_max``) and stay dense.
- ``latent_config(**options)``: the ``SINRConfig`` to code a ``LatentGrid`` with: its linear holds
  data, not a layer fed by coordinates, so neither input-layer rule (first linear, small fan-in)
  may keep it dense.
- ``render_latents(model, grid)`` and ``latent_loss(model, image, grid)``: the decoded image, and
  the loss a coder fine-tunes the latents against (the base network frozen).

The file side (the base network's fingerprint and the patch layout recorded, and checked before
decoding) is ``torch_sinr.shared_init``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..errors import SINRConfigError, SINRInputError
from ..nn.config import SINRConfig
from .meta import MetaConfig, _load_checkpoint, _save_checkpoint, _step_seed, init_fingerprint
from .models import pixel_grid


class ModulatedSiren(nn.Module):
    """A SIREN whose sine layers are shifted by modulations ``latent_map(latent)``.

    Layer ``l`` computes ``sin(w0 * (W_l h + b_l + m_l))`` with ``m_l`` the l-th ``width`` slice of
    the modulations; the output layer is linear. Initialised as a SIREN (Sitzmann et al.), the
    latent map's bias at zero (a zero latent gives the base network's own image) and its weight
    as ``nn.Linear`` draws it (a zero weight would give the latents no gradient, ever)."""

    def __init__(self, width: int = 128, layers: int = 5, latent_dim: int = 64, in_features: int = 2,
                 out_features: int = 3, w0: float = 30.0) -> None:
        super().__init__()
        for name, value, low in (("width", width, 1), ("layers", layers, 2), ("latent_dim", latent_dim, 1),
                                 ("in_features", in_features, 1), ("out_features", out_features, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SINRConfigError(f"ModulatedSiren {name} must be an int >= {low}, got {value!r}")
        self.width, self.latent_dim, self.w0 = width, latent_dim, float(w0)
        widths = [in_features] + [width] * (layers - 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.output = nn.Linear(width, out_features)
        self.latent_map = nn.Linear(latent_dim, width * (layers - 1))
        with torch.no_grad():
            self.hidden[0].weight.uniform_(-1 / in_features, 1 / in_features)
            for layer in list(self.hidden[1:]) + [self.output]:
                bound = math.sqrt(6 / layer.in_features) / self.w0
                layer.weight.uniform_(-bound, bound)
            self.latent_map.bias.zero_()  # its weight keeps nn.Linear's init: at zero no latent would move

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(P, in) coordinates shared by (B, d) latents -> (B, P, out)."""
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim:
            raise SINRInputError(f"latents must be (B, {self.latent_dim}), got {tuple(latents.shape)}")
        shifts = self.latent_map(latents).unsqueeze(1).split(self.width, dim=-1)  # each (B, 1, width)
        h = self.hidden[0](coords).unsqueeze(0)  # the first layer's product is shared by every patch
        for i, (layer, shift) in enumerate(zip(self.hidden, shifts)):
            h = torch.sin(self.w0 * ((h if i == 0 else layer(h)) + shift))
        return self.output(h)


@dataclass(frozen=True)
class ModulationConfig(MetaConfig):
    """``MetaConfig`` for modulated networks: a task is one ``patch`` x ``patch`` patch,
    ``meta_batch`` patches per outer step (COIN++ fits its latents in 3 inner steps at rate 1e-2),
    and the inner loop always sees every pixel of its patches (``pixels`` must stay None)."""

    patch: int = 32
    meta_batch: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.patch, int) or isinstance(self.patch, bool) or self.patch < 1:
            raise SINRConfigError(f"ModulationConfig.patch must be a positive int, got {self.patch!r}")
        if self.pixels is not None:
            raise SINRConfigError("ModulationConfig.pixels must be None: a patch is small, its inner steps see all of it")


@dataclass
class MetaLearnedModulation:
    """A meta-learned base network (``base``: its state, by name) and the inner rates of the
    latents (``inner_lrs[step]``, one per latent dimension)."""

    base: dict[str, torch.Tensor]
    inner_lrs: list[torch.Tensor]
    config: ModulationConfig
    history: list[dict] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return init_fingerprint(self.base)

    def load_into(self, model: ModulatedSiren) -> ModulatedSiren:
        theirs = {n: tuple(t.shape) for n, t in self.base.items()}
        ours = {n: tuple(p.shape) for n, p in model.named_parameters()}
        if theirs != ours:
            raise SINRInputError(f"the base network does not fit this model: parameters {theirs} vs {ours}")
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.base[name])
        return model


def image_patches(image: torch.Tensor, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, patch^2, C) targets in [-1, 1] of an image (C, H, W) in [0, 1], patches row by row,
    and the (rows, columns) of patches. H and W must be multiples of ``patch``."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.dtype.is_floating_point:
        raise SINRInputError("the image must be a floating (C, H, W) tensor")
    channels, height, width = image.shape
    if height % patch or width % patch:
        raise SINRInputError(f"a {height} x {width} image does not tile into {patch} x {patch} patches (crop it)")
    if not bool(torch.isfinite(image).all()):
        raise SINRInputError("the image contains NaN or infinite values")
    rows, cols = height // patch, width // patch
    tiles = image.float().reshape(channels, rows, patch, cols, patch).permute(1, 3, 2, 4, 0)
    return tiles.reshape(rows * cols, patch * patch, channels) * 2 - 1, (rows, cols)


def assemble_patches(outputs: torch.Tensor, rows: int, cols: int, patch: int) -> torch.Tensor:
    """The inverse of ``image_patches``: (N, patch^2, C) outputs in [-1, 1] -> (C, H, W) in [0, 1]."""
    channels = outputs.shape[-1]
    tiles = outputs.reshape(rows, cols, patch, patch, channels).permute(4, 0, 2, 1, 3)
    return (tiles.reshape(channels, rows * patch, cols * patch) * 0.5 + 0.5).clamp(0, 1)


def _per_patch_loss(model: nn.Module, params: dict[str, torch.Tensor], coords: torch.Tensor, latents: torch.Tensor,
                    targets: torch.Tensor) -> torch.Tensor:
    """Each patch's mean squared error, summed: a patch's latent gradient does not depend on how
    many patches share the batch, so one inner rate fits any batch."""
    return ((functional_call(model, params, (coords, latents)) - targets) ** 2).mean(dim=(1, 2)).sum()


def _inner_latents(model: nn.Module, params: dict[str, torch.Tensor], rates: list[torch.Tensor], coords: torch.Tensor,
                   targets: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """The latents of ``targets``' patches after ``len(rates)`` steps from zero."""
    latents = torch.zeros(targets.shape[0], model.latent_dim, device=targets.device, requires_grad=True)
    for rate in rates:
        loss = _per_patch_loss(model, params, coords, latents, targets)
        (grad,) = torch.autograd.grad(loss, latents, create_graph=create_graph)
        latents = latents - rate * grad
    return latents


def meta_learn_modulated(model: ModulatedSiren, images: list[torch.Tensor] | torch.Tensor,
                         config: ModulationConfig = ModulationConfig(), *, checkpoint=None,
                         progress: bool = True) -> MetaLearnedModulation:
    """Meta-learn ``model``'s base network, latent map and inner rates on the patches of
    ``images`` (see the module docstring). ``model`` is the starting point; it is not modified."""
    if not isinstance(model, ModulatedSiren):
        raise SINRInputError(f"meta_learn_modulated takes a ModulatedSiren, got {type(model).__name__}")
    if not isinstance(config, ModulationConfig):
        raise SINRConfigError(f"config must be a ModulationConfig, got {type(config).__name__}")
    if isinstance(images, torch.Tensor):
        images = list(images) if images.dim() == 4 else [images]
    if not images:
        raise SINRInputError("meta-learning needs at least one image")
    targets = torch.cat([image_patches(image, config.patch)[0] for image in images])
    coords = pixel_grid(config.patch, config.patch, device=targets.device)
    params = {name: nn.Parameter(p.detach().clone()) for name, p in model.named_parameters()}
    lrs = {"latent": [nn.Parameter(torch.full((model.latent_dim,), config.inner_lr), requires_grad=config.learn_inner_lr)
                      for _ in range(config.inner_steps)]}
    trained = list(params.values()) + (lrs["latent"] if config.learn_inner_lr else [])
    optimizer = torch.optim.Adam(trained, lr=config.outer_lr)
    start, history = 0, []
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        start, history = _load_checkpoint(path, params, lrs, optimizer, config)
    generator = torch.Generator()
    started = time.perf_counter()
    bar = tqdm(range(start, config.outer_steps), desc="meta-learning modulations", disable=not progress,
               mininterval=1.0, initial=start, total=config.outer_steps)
    for step in bar:
        generator.manual_seed(_step_seed(config.seed, step))
        batch = targets[torch.randint(targets.shape[0], (config.meta_batch,), generator=generator)]
        latents = _inner_latents(model, params, lrs["latent"], coords, batch, create_graph=not config.first_order)
        outer = ((functional_call(model, params, (coords, latents)) - batch) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        outer.backward()
        optimizer.step()
        with torch.no_grad():  # a negative rate would climb the loss: keep them >= 0
            for rate in lrs["latent"]:
                rate.clamp_(min=0.0)
        record = {"step": step, "loss_after": float(outer.detach())}
        history.append(record)
        bar.set_postfix(after=f"{record['loss_after']:.4f}")
        if path is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.outer_steps):
            _save_checkpoint(path, params, lrs, optimizer, step + 1, config, history)
    if history:
        history[-1]["seconds_this_run"] = time.perf_counter() - started
    return MetaLearnedModulation(base={n: p.detach().clone() for n, p in params.items()},
                                 inner_lrs=[rate.detach().clone() for rate in lrs["latent"]], config=config,
                                 history=history)


LATENT_BLOCK = 1024


class LatentGrid(nn.Module):
    """One image's latents: ``channels.weight`` is the (d, patches) latent matrix; ``rows``,
    ``cols`` and ``patch`` place the patches. ``latents()`` reads the matrix through the linear's
    forward, so it works whatever coded the linear (SINR, a uniform grid, float32)."""

    def __init__(self, latents: torch.Tensor, rows: int, cols: int, patch: int) -> None:
        super().__init__()
        if latents.dim() != 2 or latents.shape[0] != rows * cols:
            raise SINRInputError(f"latents must be ({rows * cols}, d) for a {rows} x {cols} grid of patches, "
                                 f"got {tuple(latents.shape)}")
        self.rows, self.cols, self.patch = rows, cols, patch
        self.channels = nn.Linear(rows * cols, latents.shape[1], bias=False)
        with torch.no_grad():
            self.channels.weight.copy_(latents.t())

    def forward(self) -> torch.Tensor:
        """The latents (``latents()``): calling the grid is what a fine-tuner that swaps its
        parameters (``torch.func.functional_call``) can do."""
        return self.latents()

    def latents(self) -> torch.Tensor:
        """(patches, d): the linear applied to the identity, in blocks of rows (memory stays
        ``LATENT_BLOCK`` x patches floats, and gradients reach whatever codes the linear)."""
        count = self.rows * self.cols
        device = self.channels.weight.device
        blocks = []
        for start in range(0, count, LATENT_BLOCK):
            rows = torch.arange(start, min(count, start + LATENT_BLOCK), device=device)
            blocks.append(self.channels(torch.nn.functional.one_hot(rows, count).to(self.channels.weight.dtype)))
        return torch.cat(blocks)  # row p: patch p's latent

    def extra_repr(self) -> str:
        return f"rows={self.rows}, cols={self.cols}, patch={self.patch}"


def fit_latents(model: ModulatedSiren, learned: MetaLearnedModulation | None, image: torch.Tensor,
                steps: int | None = None, refine_steps: int = 0, refine_lr: float = 1e-2,
                patch: int | None = None) -> LatentGrid:
    """``image``'s latents under ``model``'s base network: ``steps`` gradient steps from zero at
    the learned rates (default: the learned number; later steps reuse the last rates), then
    ``refine_steps`` of Adam at ``refine_lr`` on all latents. With ``learned`` the base network is
    loaded into ``model`` first; without, ``model`` is used as it is, at rate ``refine_lr``."""
    if learned is not None:
        learned.load_into(model)
        patch = learned.config.patch
        count = learned.config.inner_steps if steps is None else steps
        rates = [learned.inner_lrs[min(k, len(learned.inner_lrs) - 1)] for k in range(count)]
    else:
        if patch is None:
            raise SINRInputError("fit_latents without a learned base network needs patch=")
        rates = [torch.full((model.latent_dim,), refine_lr)] * (steps or 0)
    targets, (rows, cols) = image_patches(image, patch)
    coords = pixel_grid(patch, patch, device=targets.device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    latents = _inner_latents(model, params, rates, coords, targets, create_graph=False).detach()
    if refine_steps:
        latents.requires_grad_(True)
        optimizer = torch.optim.Adam([latents], lr=refine_lr)
        for _ in range(refine_steps):
            loss = ((functional_call(model, params, (coords, latents)) - targets) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        latents = latents.detach()
    return LatentGrid(latents, rows, cols, patch)


@torch.no_grad()
def render_latents(model: ModulatedSiren, grid: LatentGrid) -> torch.Tensor:
    """The image (C, H, W) in [0, 1] that ``grid``'s latents give under ``model``."""
    coords = pixel_grid(grid.patch, grid.patch, device=grid.channels.weight.device)
    return assemble_patches(model(coords, grid.latents()), grid.rows, grid.cols, grid.patch)


def latent_loss(model: ModulatedSiren, image: torch.Tensor, patch: int):
    """MSE of a ``LatentGrid`` over ``image`` under ``model``'s frozen base network: the loss
    ``compress`` and the fine-tuners take (they train only the grid's parameters, and may call
    the grid with swapped parameters, so the loss calls it rather than reading its weight)."""
    targets, _ = image_patches(image, patch)
    coords = pixel_grid(patch, patch, device=targets.device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    return lambda grid: ((functional_call(model, params, (coords, grid())) - targets) ** 2).mean()


def latent_config(**options) -> SINRConfig:
    """``SINRConfig(**options)`` for a ``LatentGrid``: the grid's one linear is its first and its
    fan-in is the patch count, which the input-layer rules would keep dense; it is data, not a
    layer fed by coordinates, so both rules are off."""
    return SINRConfig(**{"keep_first_linear": False, "input_fan_in_max": 0, **options})
