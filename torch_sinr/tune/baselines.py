"""Simple baselines SINR must beat, each written as a real file whose bytes are counted.

- ``cast``: every tensor stored as float32 / float16 (COIN-style).
- ``uniform``: every tensor uniformly quantized at b bits with its own range, laid out bit-packed
  or byte-aligned (whichever Brotli codes smaller, per tensor) and Brotli-coded (INRIC-style);
  ``finetune_uniform`` gives it the same quantization-aware fine-tuning that SINR codes get, so
  comparisons stay fair.
- ``prune``: magnitude pruning of the weight matrices (kept fraction), kept values quantized
  at b bits, positions coded like SINR indices (the smallest of fixed / Rice / bitmask);
  ``finetune_pruned`` fine-tunes the kept values (positions fixed) like ``finetune_uniform``.
- ``low_rank``: truncated SVD of each weight matrix at a given rank, factors stored as float32.

All files are format-2 files, written by the same container and coders as SINR's (the same
header, names, CRC, and the same choice between range coding and Brotli for quantized
symbols), so a comparison measures the methods, not their packaging. Pruned and low-rank
matrices are coding kinds of their own (``format.baseline_kinds``).
``read_baseline`` decodes a file into a state_dict: every reported quality is measured on what
the file holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.quantization import UniformQuantizer
from ..errors import SINRError
from ..format import baseline_kinds  # noqa: F401  (the pruned and low-rank kinds this module writes)
from ..format import container
from ..format.codec.entropy import FILE_QUALITY
from ..format.kinds import Item
from ..format.model_io import decode_state_dict
from .finetune import SELECT_EVERY

def _write(path: str | os.PathLike, items: list[Item], names: bool = True) -> int:
    payload, _ = container.encode_payload(items, names=names, quality=FILE_QUALITY)
    return container.write_file(path, payload)


def _weight_matrices(state: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in state.items() if v.ndim == 2 and v.is_floating_point() and k.endswith("weight")}


def _item(name: str, t: torch.Tensor, kind: str, data) -> Item:
    return Item(name, t.dtype, tuple(t.shape), kind, data)


def write_cast(state: dict[str, torch.Tensor], path, dtype: str = "float16", names: bool = True) -> int:
    stored = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    return _write(path, [_item(n, t, "raw", (t, stored)) for n, t in state.items()], names)


def write_uniform(state: dict[str, torch.Tensor], path, bits: int,
                  grids: dict[str, UniformQuantizer] | None = None, names: bool = True) -> int:
    """``grids`` (from ``finetune_uniform``) keeps fine-tuned values on the grid they were trained on."""
    items = []
    for name, t in state.items():
        q = grids[name] if grids and name in grids else UniformQuantizer.fit(t, bits)
        items.append(_item(name, t, "uniform", (t, q)))
    return _write(path, items, names)


def uniform_round_trip(state: dict[str, torch.Tensor], bits: int) -> dict[str, torch.Tensor]:
    return {k: UniformQuantizer.fit(v, bits).round_trip(v).reshape(v.shape) for k, v in state.items()}


def magnitude_kept(t: torch.Tensor, keep: float) -> torch.Tensor:
    """Sorted column positions of each row's ``keep`` fraction of largest magnitudes (at least one)."""
    s = max(1, round(keep * t.shape[1]))
    return t.detach().abs().topk(s, dim=1).indices.sort(dim=1).values


def write_pruned(state: dict[str, torch.Tensor], path, keep: float, bits: int,
                 skip: Callable[[str], bool] = lambda n: False, names: bool = True,
                 plan: PrunePlan | None = None) -> int:
    """Weight matrices (not skipped) keep their ``keep`` fraction of largest magnitudes per row,
    quantized at b bits; everything else is stored uniform at b bits. ``plan`` (from
    ``finetune_pruned``) keeps fine-tuned values at the positions and on the grids they were
    trained with, so the file holds exactly them."""
    items = []
    for name, t in state.items():
        pruned = name in plan.kept if plan else name in _weight_matrices(state) and not skip(name)
        if not pruned:
            grid = plan.grids[name] if plan and name in plan.grids else UniformQuantizer.fit(t, bits)
            items.append(_item(name, t, "uniform", (t, grid)))
            continue
        idx = plan.kept[name] if plan else magnitude_kept(t, keep)
        values = t.gather(1, idx)
        grid = plan.grids[name] if plan else UniformQuantizer.fit(values, bits)
        items.append(_item(name, t, "pruned", (idx, values, grid)))
    return _write(path, items, names)


def write_low_rank(state: dict[str, torch.Tensor], path, rank: int, skip: Callable[[str], bool] = lambda n: False,
                   names: bool = True) -> int:
    """Weight matrices (not skipped) as float32 factors U_k S_k and V_k^T; the rest as float32."""
    items = []
    for name, t in state.items():
        if name in _weight_matrices(state) and not skip(name) and rank < min(t.shape):
            u, sv, vh = torch.linalg.svd(t.double(), full_matrices=False)
            items.append(_item(name, t, "low_rank", ((u[:, :rank] * sv[:rank]).float(), vh[:rank].float())))
        else:
            items.append(_item(name, t, "raw", (t, torch.float32)))
    return _write(path, items, names)


def read_baseline(path, skeleton: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Decode a baseline file into a float32 state_dict (bare files need the model's skeleton)."""
    return {k: v.float() for k, v in decode_state_dict(path, skeleton=skeleton).items()}




def finetune_uniform(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], bits: int, steps: int,
                     lr: float = 1e-4, *, select: Callable[[nn.Module], float] | None = None,
                     select_every: int = SELECT_EVERY, progress: bool = False, names: set[str] | None = None,
                     ) -> tuple[dict[str, torch.Tensor], dict[str, UniformQuantizer]]:
    """Quantization-aware fine-tuning of every parameter on a fixed per-tensor b-bit grid
    (straight-through), the same budget SINR's codes get, and the same choice of the best
    iterate (by the loss, or by ``select`` as in ``finetune_codes``). Returns the quantized
    state_dict and the grids (pass them to ``write_uniform`` so the file holds exactly these values).
    ``names`` limits both to those parameters (default: every parameter); the others keep their
    values (a model's frozen integer latents, say)."""
    params = {name: p for name, p in model.named_parameters() if names is None or name in names}
    grids = {name: UniformQuantizer.fit(p, bits) for name, p in params.items()}

    def on_grids(latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: grids[n].round_trip(v).reshape(v.shape) for n, v in latent.items()}

    best = _quantization_aware(model, loss_fn, params, on_grids, steps, lr, select, select_every,
                               progress and f"uniform {bits}-bit fine-tuning")
    with torch.no_grad():
        return on_grids(best), grids


@dataclass(frozen=True)
class PrunePlan:
    """What a pruned file holds: each pruned matrix's kept positions (rows of sorted column
    indices) and every tensor's grid (a pruned matrix's grid spans its kept values only)."""
    kept: dict[str, torch.Tensor]
    grids: dict[str, UniformQuantizer]


def finetune_pruned(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], keep: float, bits: int,
                    steps: int, lr: float = 1e-4, *, skip: Callable[[str], bool] = lambda n: False,
                    select: Callable[[nn.Module], float] | None = None, select_every: int = SELECT_EVERY,
                    progress: bool = False) -> tuple[dict[str, torch.Tensor], PrunePlan]:
    """The pruning baseline with the fine-tuning SINR's codes get: each weight matrix (not
    skipped) keeps its ``keep`` fraction of largest magnitudes per row (positions fixed before
    fine-tuning, as ``write_pruned`` chooses them), the kept values and every other parameter
    are trained on fixed b-bit grids (straight-through), the pruned entries stay zero, and the
    best iterate is kept as in ``finetune_uniform``. Returns the state_dict and the plan to pass
    to ``write_pruned`` (same ``keep`` and ``bits``) so the file holds exactly these values."""
    if not 0 < keep <= 1:
        raise SINRError(f"keep must be in (0, 1], got {keep!r}")
    params = dict(model.named_parameters())
    matrices = {n for n in _weight_matrices(params) if not skip(n)}
    kept = {n: magnitude_kept(params[n], keep) for n in sorted(matrices)}
    masks = {n: torch.zeros_like(params[n], dtype=torch.bool).scatter_(1, idx, True) for n, idx in kept.items()}
    grids = {n: UniformQuantizer.fit(p.detach().gather(1, kept[n]) if n in kept else p, bits)
             for n, p in params.items()}

    def on_grids(latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n, v in latent.items():
            rounded = grids[n].round_trip(v).reshape(v.shape)
            out[n] = torch.where(masks[n], rounded, torch.zeros((), dtype=v.dtype)) if n in masks else rounded
        return out

    best = _quantization_aware(model, loss_fn, params, on_grids, steps, lr, select, select_every,
                               progress and f"pruned (keep {keep:g}) {bits}-bit fine-tuning")
    with torch.no_grad():
        return on_grids(best), PrunePlan(kept, grids)


def _quantization_aware(model: nn.Module, loss_fn, params: dict[str, torch.Tensor], on_grids, steps: int, lr: float,
                        select, select_every: int, progress) -> dict[str, torch.Tensor]:
    """Adam on float copies of ``params`` through ``on_grids`` (the values a file would hold; the
    gradient passes straight through it to the copies, so a pruned entry's is unused); returns
    the best iterate's copies, judged by the loss or, every ``select_every`` steps, by ``select``
    (higher is better). ``progress``: the bar's label, or False."""
    if steps < 0:
        raise SINRError("steps must be >= 0")
    if select is not None and not (isinstance(select_every, int) and select_every >= 1):
        raise SINRError(f"select_every must be an int >= 1, got {select_every!r}")
    latent = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    optimizer = torch.optim.Adam(latent.values(), lr=lr)

    def fake_quantized() -> dict[str, torch.Tensor]:
        return {n: v + (r - v).detach() for (n, v), r in zip(latent.items(), on_grids(latent).values())}

    def selected() -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return float(select(_Functional(model, fake_quantized())))
        finally:
            model.train(was_training)

    best_loss, best = float("inf"), None  # keep the best iterate, as finetune_codes does
    bar = tqdm(total=steps, desc=progress or "", disable=not progress, unit="step", leave=False)
    for step in range(steps + 1):
        if select is not None and (step % select_every == 0 or step == steps):
            judged = -selected()
            if judged < best_loss:
                best_loss, best = judged, {n: v.detach().clone() for n, v in latent.items()}
            if step == steps:
                break
        with torch.set_grad_enabled(step < steps):
            loss = loss_fn(_Functional(model, fake_quantized()))
        if select is None and loss.item() < best_loss:
            best_loss, best = loss.item(), {n: v.detach().clone() for n, v in latent.items()}
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
    bar.close()
    return best


class _Functional(nn.Module):
    """Calls ``model`` with replacement parameters (torch.func.functional_call), for fake quantization."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._model, self._params = model, params

    def forward(self, *args):
        return torch.func.functional_call(self._model, self._params, args)
