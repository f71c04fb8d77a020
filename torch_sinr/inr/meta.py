"""Meta-learned initialisations of coordinate networks (MAML with learned inner learning rates).

INRIC (Strümpler et al., ECCV 2022) and the SINR paper's configurations C3 / C4 fit each image from
an initialisation meta-learned on other images of the same kind: a few gradient steps from it reach
a PSNR that a random initialisation needs hundreds of steps for, and the fitted weights stay
close to it (what a code of the difference from it exploits).

- ``meta_learn(model, images, config)``: MAML (Finn et al. 2017) over images as tasks. The inner
  loop takes ``inner_steps`` plain gradient steps on one image, each with its own learned
  per-parameter learning rates (Meta-SGD, Li et al. 2017, as INRIC does); the outer loop trains the
  initialisation and those rates with Adam on the loss after the inner steps. ``first_order``
  drops the second derivatives (cheaper, as FOMAML). A checkpoint, when given, is resumed from and
  rewritten every ``checkpoint_every`` steps (atomically); resuming gives the same result as an
  uninterrupted run (every step's randomness comes from a seed derived from the step).
- ``adapt(model, learned, image)``: the learned inner steps on one image, from the initialisation.
- ``MetaLearned``: the initialisation, the rates and a fingerprint of the initialisation (what a
  file coded against it records, so it is never decoded against another one).

Images are tasks of one shape, ``(3, H, W)`` in [0, 1]; the network maps ``pixel_grid`` coordinates
to colours in [-1, 1] as ``models.image_loss`` scores them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..errors import SINRConfigError, SINRInputError
from .models import pixel_grid

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class MetaConfig:
    """How the initialisation is learned. INRIC's settings: 3 inner steps, learned per-parameter
    per-step rates, outer Adam; its outer learning rate and step count are for a GPU and
    thousands of images, the defaults here are for a CPU and tens."""

    inner_steps: int = 3
    inner_lr: float = 1e-2  # every learned inner rate starts here
    learn_inner_lr: bool = True
    outer_steps: int = 500
    outer_lr: float = 1e-4
    meta_batch: int = 2  # images per outer step
    pixels: int | None = None  # random pixels per inner step; None: every pixel
    first_order: bool = False
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        for name in ("inner_steps", "outer_steps", "meta_batch", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SINRConfigError(f"MetaConfig.{name} must be a positive int, got {value!r}")
        if self.pixels is not None and (not isinstance(self.pixels, int) or self.pixels < 1):
            raise SINRConfigError(f"MetaConfig.pixels must be a positive int or None, got {self.pixels!r}")
        for name in ("inner_lr", "outer_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SINRConfigError(f"MetaConfig.{name} must be a finite number > 0, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MetaLearned:
    """A learned initialisation (``init``: the network's parameters by name) and inner rates
    (``inner_lrs[name][step]``, each shaped like its parameter)."""

    init: dict[str, torch.Tensor]
    inner_lrs: dict[str, list[torch.Tensor]]
    config: MetaConfig
    history: list[dict] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return init_fingerprint(self.init)

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the initialisation into ``model`` (its parameters, in place); returns it."""
        _check_names(model, self.init)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.init[name])
        return model


def init_fingerprint(params: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the parameters' names, dtypes, shapes and bytes, in name order: equal
    fingerprints, equal initialisations."""
    digest = hashlib.sha256()
    for name in sorted(params):
        tensor = params[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _check_names(model: nn.Module, params: dict[str, torch.Tensor]) -> None:
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    theirs = {name: tuple(t.shape) for name, t in params.items()}
    if shapes != theirs:
        raise SINRInputError(f"the initialisation does not fit this network: parameters {theirs} vs {shapes}")


def _targets(images: list[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates (P, 2) and targets (T, P, C) in [-1, 1] of a list of same-shaped images."""
    if isinstance(images, torch.Tensor):
        images = list(images) if images.dim() == 4 else [images]
    if not images:
        raise SINRInputError("meta-learning needs at least one image")
    shape = tuple(images[0].shape)
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.dtype.is_floating_point:
            raise SINRInputError(f"image {i} must be a floating (C, H, W) tensor, got "
                                 f"{type(image).__name__ if not isinstance(image, torch.Tensor) else tuple(image.shape)}")
        if tuple(image.shape) != shape:
            raise SINRInputError(f"every image must have one shape: image 0 is {shape}, image {i} {tuple(image.shape)}")
        if not bool(torch.isfinite(image).all()):
            raise SINRInputError(f"image {i} contains NaN or infinite values")
    stack = torch.stack([image.float() for image in images])  # (T, C, H, W)
    coords = pixel_grid(shape[1], shape[2], device=stack.device)
    return coords, stack.permute(0, 2, 3, 1).reshape(len(images), -1, shape[0]) * 2 - 1


def _inner_loop(model: nn.Module, params: dict[str, torch.Tensor], lrs: dict[str, list[torch.Tensor]],
                coords: torch.Tensor, target: torch.Tensor, steps: int, pixels: int | None,
                generator: torch.Generator | None, create_graph: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
    """``steps`` gradient steps on one image from ``params`` with the per-step rates; returns the
    adapted parameters (a graph back to ``params`` and ``lrs`` where ``create_graph``) and the
    loss before each step."""
    fast = dict(params)
    losses = []
    for step in range(steps):
        if pixels is not None and pixels < coords.shape[0]:
            pick = torch.randperm(coords.shape[0], generator=generator)[:pixels]
            x, y = coords[pick], target[pick]
        else:
            x, y = coords, target
        loss = ((functional_call(model, fast, (x,)) - y) ** 2).mean()
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = {name: value - lrs[name][step] * grad for (name, value), grad in zip(fast.items(), grads)}
    return fast, losses


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 104_729) % (2**63 - 1)


def meta_learn(model: nn.Module, images: list[torch.Tensor] | torch.Tensor, config: MetaConfig = MetaConfig(), *,
               checkpoint: str | Path | None = None, progress: bool = True) -> MetaLearned:
    """Meta-learn an initialisation of ``model`` (and inner rates) on ``images`` (see the module
    docstring). ``model`` supplies the architecture and the starting point; it is not modified."""
    if not isinstance(config, MetaConfig):
        raise SINRConfigError(f"config must be a MetaConfig, got {type(config).__name__}")
    coords, targets = _targets(images)
    params = {name: nn.Parameter(p.detach().clone()) for name, p in model.named_parameters()}
    if not params:
        raise SINRInputError("the network has no parameters to meta-learn")
    lrs = {name: [nn.Parameter(torch.full_like(p, config.inner_lr), requires_grad=config.learn_inner_lr)
                  for _ in range(config.inner_steps)] for name, p in params.items()}
    trained = list(params.values()) + ([lr for steps in lrs.values() for lr in steps] if config.learn_inner_lr else [])
    optimizer = torch.optim.Adam(trained, lr=config.outer_lr)
    start, history = 0, []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        start, history = _load_checkpoint(path, params, lrs, optimizer, config)
    generator = torch.Generator()
    started = time.perf_counter()
    bar = tqdm(range(start, config.outer_steps), desc="meta-learning", disable=not progress, mininterval=1.0,
               initial=start, total=config.outer_steps)
    for step in bar:
        generator.manual_seed(_step_seed(config.seed, step))
        tasks = torch.randint(targets.shape[0], (config.meta_batch,), generator=generator).tolist()
        outer, before = 0.0, 0.0
        for task in tasks:
            fast, losses = _inner_loop(model, params, lrs, coords, targets[task], config.inner_steps, config.pixels,
                                       generator, create_graph=not config.first_order)
            # the outer loss: every pixel after the inner steps (INRIC's query set is the image itself)
            outer = outer + ((functional_call(model, fast, (coords,)) - targets[task]) ** 2).mean()
            before += losses[0]
        outer = outer / len(tasks)
        optimizer.zero_grad(set_to_none=True)
        outer.backward()
        optimizer.step()
        with torch.no_grad():  # a negative rate would climb the loss: keep them >= 0
            for steps in lrs.values():
                for lr in steps:
                    lr.clamp_(min=0.0)
        record = {"step": step, "loss_before": before / len(tasks), "loss_after": float(outer.detach())}
        history.append(record)
        bar.set_postfix(after=f"{record['loss_after']:.4f}")
        if path is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.outer_steps):
            _save_checkpoint(path, params, lrs, optimizer, step + 1, config, history)
    learned = MetaLearned(init={n: p.detach().clone() for n, p in params.items()},
                          inner_lrs={n: [lr.detach().clone() for lr in steps] for n, steps in lrs.items()},
                          config=config, history=history)
    if history:
        history[-1]["seconds_this_run"] = time.perf_counter() - started
    return learned


def adapt(model: nn.Module, learned: MetaLearned, image: torch.Tensor, steps: int | None = None) -> list[float]:
    """Load the initialisation into ``model`` and take the learned inner steps on ``image`` (all
    pixels, rate of step k for step k; ``steps`` beyond the learned ones reuse the last rates).
    Returns the loss before each step and after the last."""
    _check_names(model, learned.init)
    coords, targets = _targets([image])
    count = learned.config.inner_steps if steps is None else steps
    rates = {n: [r[min(k, len(r) - 1)] for k in range(count)] for n, r in learned.inner_lrs.items()}
    params = {n: t.clone().requires_grad_() for n, t in learned.init.items()}
    fast, losses = _inner_loop(model, params, rates, coords, targets[0], count, None, None, create_graph=False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(fast[name])
        losses.append(float(((model(coords) - targets[0]) ** 2).mean()))
    return losses


def _save_checkpoint(path: Path, params, lrs, optimizer, step: int, config: MetaConfig, history: list[dict]) -> None:
    """Atomically: a crash mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save({"version": CHECKPOINT_VERSION, "step": step, "config": config.to_dict(),
                "params": {n: p.detach() for n, p in params.items()},
                "lrs": {n: [lr.detach() for lr in steps] for n, steps in lrs.items()},
                "optimizer": optimizer.state_dict(), "history": history}, partial)
    partial.replace(path)


def _load_checkpoint(path: Path, params, lrs, optimizer, config: MetaConfig) -> tuple[int, list[dict]]:
    """Restore a checkpoint of the same settings (``outer_steps`` may differ: a run can be
    extended); ``weights_only=True``: tensors and plain containers only."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: one clear error, nothing restored
        raise SINRInputError(f"{path}: not a meta-learning checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("version") != CHECKPOINT_VERSION:
        raise SINRInputError(f"{path}: not a meta-learning checkpoint of version {CHECKPOINT_VERSION}")
    ours = {k: v for k, v in config.to_dict().items() if k != "outer_steps"}
    theirs = {k: v for k, v in saved["config"].items() if k != "outer_steps"}
    if ours != theirs:
        raise SINRInputError(f"{path}: checkpoint of other settings ({theirs}), this run has {ours}")
    shapes = {n: tuple(t.shape) for n, t in saved["params"].items()}
    if shapes != {n: tuple(p.shape) for n, p in params.items()}:
        raise SINRInputError(f"{path}: checkpoint of another network ({shapes})")
    # the rates are keyed by parameter (meta_learn) or by what the inner loop adapts (a modulated
    # network's latents): compare them by their own keys
    rate_shapes = {n: [tuple(t.shape) for t in steps] for n, steps in saved["lrs"].items()}
    if rate_shapes != {n: [tuple(t.shape) for t in steps] for n, steps in lrs.items()}:
        raise SINRInputError(f"{path}: checkpoint of other inner rates ({rate_shapes})")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved["params"][name])
        for name, steps in lrs.items():
            for lr, value in zip(steps, saved["lrs"][name]):
                lr.copy_(value)
    optimizer.load_state_dict(saved["optimizer"])
    return int(saved["step"]), list(saved["history"])
