"""Post-compression fine-tuning: keep every SINR layer's support, train its non-zero values
(and biases, and optionally every other parameter) on the signal, through the quantizers the
file stores them with, then snap to the grid.

Afterwards the model in memory is again exactly what ``save_compressed`` writes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.quantization import UniformQuantizer
from ..errors import SINRError
from ..nn.layer import SINRLinear
from ..nn.storage import get_storage, round_to_storage, set_storage

# With a selector, how often (in steps) the candidate for "best iterate" is scored: a score can
# cost a forward pass over a whole image or volume, so not every step.
SELECT_EVERY = 50


def _owned_storage(model: nn.Module) -> dict[int, tuple]:
    """id(parameter) -> (storage, module, name) for parameters with a recorded storage."""
    out = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            storage = get_storage(module, name)
            if param is not None and storage is not None:
                out.setdefault(id(param), (storage, module, name))
    return out


def finetune_codes(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], steps: int, lr: float = 1e-4,
                   *, quantize_aware: bool = True, train_biases: bool = True, train_dense: bool = False,
                   select: Callable[[nn.Module], float] | None = None, select_every: int = SELECT_EVERY,
                   progress: bool = False) -> list[float]:
    """Fine-tune the SINR values of ``model`` for ``steps`` Adam steps on ``loss_fn(model)``.

    ``quantize_aware`` trains through each layer's fixed quantization grid (straight-through),
    so the final snap to the grid changes nothing the loss has not seen. Biases (and, with
    ``train_dense``, every parameter SINR does not code, e.g. the input layer) are trained the
    same way through the grid or dtype they are stored at (parameters with ``requires_grad``
    False are left frozen): a float latent copy takes the
    updates, the model always holds its rounded value. The best iterate is kept: by the loss, or,
    with ``select(model) -> float`` (higher is better, run in eval mode without gradients), by
    that score at the start, every ``select_every`` steps and at the end. Use ``select`` when the
    loss is stochastic (fresh batches each step) or is not the quality that counts (MSE against
    IoU). Returns the losses.
    """
    if select is not None and not (isinstance(select_every, int) and select_every >= 1):
        raise SINRError(f"select_every must be an int >= 1, got {select_every!r}")
    layers = {id(m): m for m in model.modules() if isinstance(m, SINRLinear)}
    config = getattr(model, "sinr_config", None)
    storages = _owned_storage(model)
    # A model with no SINR layer trains when its dense tensors are on recorded grids (a uniform
    # baseline from ``store_dense``, fine-tuned exactly as SINR codes are); otherwise it was never coded.
    if not layers and not (train_dense and storages):
        raise SINRError("the model has no SINRLinear layers: run compress_model first")
    coded = {id(m.values) for m in layers.values()} | {id(m.indices) for m in layers.values()}
    values = {id(layer.values): layer.values for layer in layers.values()}
    dense: dict[int, nn.Parameter] = {}
    for layer in layers.values():
        if train_biases and layer.bias is not None:
            dense[id(layer.bias)] = layer.bias
    if train_dense:
        for p in model.parameters():
            # a parameter the caller froze (requires_grad False) stays as it is: e.g. a hash
            # grid's integer latents while its decoders' codes are fine-tuned
            if id(p) not in coded and p.is_floating_point() and p.requires_grad:
                dense.setdefault(id(p), p)
    # the grid (or dtype) each trained dense parameter is stored at
    grids = {}
    for key, p in dense.items():
        if key in storages:
            grids[key] = storages[key][0]
        else:  # no record (a module added after compression): fix one now, as the writer would
            grids[key] = config.dense_storage(p) if config is not None else UniformQuantizer.fit(p, 16)
    latents = {key: p.detach().clone() for key, p in dense.items()}
    previous = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in values or id(p) in dense)
    was_training = model.training
    for layer in layers.values():
        layer.quantize_aware = quantize_aware
    optimizer = torch.optim.Adam([*values.values(), *latents.values()], lr=lr)
    losses: list[float] = []

    def snap_dense() -> None:
        with torch.no_grad():
            for key, p in dense.items():
                p.copy_(round_to_storage(latents[key], grids[key]) if quantize_aware else latents[key])

    def state() -> list[torch.Tensor]:
        return [p.detach().clone() for p in values.values()] + [t.detach().clone() for t in latents.values()]

    def selected() -> float:
        model.eval()
        try:
            with torch.no_grad():
                return float(select(model))
        finally:
            model.train()

    # Keep the best iterate (the loss is measured through the quantizer, so it is the file's
    # loss when quantize_aware): fine-tuning then never ends worse than where it started.
    # ``best_loss`` holds -select(model) when a selector is given: lower is better either way.
    best_loss, best = float("inf"), None
    model.train()
    try:
        for step in tqdm(range(steps + 1), desc="fine-tuning codes", disable=not progress, mininterval=1.0):
            snap_dense()
            if select is not None and (step % select_every == 0 or step == steps):
                judged = -selected()
                if judged < best_loss:
                    best_loss, best = judged, state()
            if step == steps and select is not None:
                break
            with torch.set_grad_enabled(step < steps):
                loss = loss_fn(model)
            if select is None and loss.item() < best_loss:
                best_loss, best = loss.item(), state()
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            for p in dense.values():
                p.grad = None
            loss.backward()
            for key, p in dense.items():  # straight-through: the rounded weight's gradient moves the latent
                latents[key].grad = p.grad
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            trained = [*values.values(), *latents.values()]
            for p, value in zip(trained, best):
                p.copy_(value)
    finally:
        for layer in layers.values():
            layer.quantize_aware = False
            layer.snap_to_grid_()
        with torch.no_grad():  # dense parameters end on their grid (or dtype): memory == file
            for key, p in dense.items():
                p.copy_(round_to_storage(latents[key], grids[key]))
        for key, p in dense.items():
            if key not in storages:
                owner, name = _owner_of(model, p)
                set_storage(owner, name, grids[key])
        for p in model.parameters():
            p.requires_grad_(previous[id(p)])
            p.grad = None
        model.train(was_training)
    return losses


def _owner_of(model: nn.Module, param: nn.Parameter) -> tuple[nn.Module, str]:
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is param:
                return module, name
    raise SINRError("parameter not found in the model")
