"""Post-compression fine-tuning: keep every SINR layer's support, train its non-zero values
(and biases) on the signal, through the quantizer, then snap to the grid.

Afterwards the model in memory is again exactly what ``save_compressed`` writes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .bitstream import round_to
from .errors import SINRError
from .layer import SINRLinear


def finetune_codes(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], steps: int, lr: float = 1e-4,
                   *, quantize_aware: bool = True, train_biases: bool = True, train_dense: bool = False,
                   progress: bool = False) -> list[float]:
    """Fine-tune the SINR values of ``model`` for ``steps`` Adam steps on ``loss_fn(model)``.

    ``quantize_aware`` trains through each layer's fixed quantization grid (straight-through),
    so the final snap to the grid changes nothing the loss has not seen. ``train_dense`` also
    trains the parameters that are not SINR-coded (e.g. the input layer). The best iterate is
    kept. Returns the losses.
    """
    layers = {id(m): m for m in model.modules() if isinstance(m, SINRLinear)}
    if not layers:
        raise SINRError("the model has no SINRLinear layers: run compress_model first")
    config = getattr(model, "sinr_config", None)
    dense_dtype = config.dense_dtype if config else "float32"
    coded = {id(m.values) for m in layers.values()} | {id(m.indices) for m in layers.values()}
    params: dict[int, nn.Parameter] = {}
    for layer in layers.values():
        params[id(layer.values)] = layer.values
        if train_biases and layer.bias is not None:
            params[id(layer.bias)] = layer.bias
    if train_dense:
        for p in model.parameters():
            if id(p) not in coded and p.is_floating_point():
                params.setdefault(id(p), p)
    previous = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in params)
    was_training = model.training
    for layer in layers.values():
        layer.quantize_aware = quantize_aware
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    losses: list[float] = []
    trained = list(params.values())
    # Keep the best iterate (the loss is measured through the quantizer, so it is the file's
    # loss when quantize_aware): fine-tuning then never ends worse than where it started.
    best_loss, best = float("inf"), None
    model.train()
    try:
        for step in tqdm(range(steps + 1), desc="fine-tuning codes", disable=not progress, mininterval=1.0):
            with torch.set_grad_enabled(step < steps):
                loss = loss_fn(model)
            if loss.item() < best_loss:
                best_loss, best = loss.item(), [p.detach().clone() for p in trained]
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            for p, value in zip(trained, best):
                p.copy_(value)
    finally:
        for layer in layers.values():
            layer.quantize_aware = False
            layer.snap_to_grid_()
        with torch.no_grad():  # trained dense tensors are stored at dense_dtype: round them now
            for p in params.values():
                if id(p) not in coded:
                    p.copy_(round_to(p, dense_dtype))
        for p in model.parameters():
            p.requires_grad_(previous[id(p)])
        model.train(was_training)
    return losses
