"""Coding a whole scene: field MLPs by SINR, hash tables level by level, to a target.

``code_tables`` picks one table step for the whole scene (every level of every table gets it:
an equal step is an equal error per table entry, and every level reaches the MLPs through the
same interpolation weights) and quantizes the tables in place:

- ``SceneTarget(psnr_drop=D)``: the largest step whose PSNR on a fixed sample of training rays
  is within D dB of the uncompressed scene's (bisection on log step), i.e. the smallest file;
- ``SceneTarget(bytes=N)``: the smallest step whose whole file fits N bytes;
- both: the smallest file within D dB if it fits N bytes, else the file that fits N bytes (a
  byte budget is a hard limit) and the report says the PSNR target was missed.

``finetune_scene`` then optionally trains the scene a few hundred steps as it will be stored:
tables through their steps (straight-through rounding), SINR values and every tensor stored on a
uniform grid (biases, input layers, a uniform baseline's weights) through their grids, and a
rate term: the bits a learned factorized prior (``torch_sinr.inr.hashgrid.entropy``) gives the
tables' integers, per level, so training trades distortion for bits as SHACIRA does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from torch_sinr import SINRConfigError, SINRLinear
from torch_sinr.format.model_io import encoded_size
from torch_sinr.inr.hashgrid.entropy import FactorizedPrior, noisy
from torch_sinr.core.quantization import UniformQuantizer
from torch_sinr.nn.storage import get_storage, requantize_dense_, round_to_storage

from .hash_tables import SceneTable, quantize_tables_, restore_, snapshot, tables_bytes, zero_unreachable_

Score = Callable[[nn.Module], float]


@dataclass
class SceneTarget:
    psnr_drop: Optional[float] = None  # dB below the uncompressed scene, on the scoring rays
    bytes: Optional[int] = None  # whole file

    def __post_init__(self) -> None:
        if self.psnr_drop is None and self.bytes is None:
            raise SINRConfigError("a scene target needs psnr_drop and/or bytes")
        if self.psnr_drop is not None and not (math.isfinite(self.psnr_drop) and self.psnr_drop >= 0):
            raise SINRConfigError(f"psnr_drop must be a finite number >= 0, got {self.psnr_drop!r}")
        if self.bytes is not None and (isinstance(self.bytes, bool) or not isinstance(self.bytes, int)
                                       or self.bytes < 1):
            raise SINRConfigError(f"bytes must be a positive int, got {self.bytes!r}")


@dataclass
class TableCoding:
    step: float
    score_before: Optional[float] = None  # uncompressed scene
    score_mlps: Optional[float] = None  # MLPs coded, tables float32
    score_after: Optional[float] = None
    estimated_table_bytes: float = 0.0
    reachable_share: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    target_met: Optional[bool] = None
    probes: list = field(default_factory=list)  # (step, score or bytes) of the search
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _max_abs(tables: list[SceneTable]) -> float:
    return max(float(t.table.detach().abs().max()) for t in tables)


def _apply(tables, originals, step: float) -> None:
    restore_(tables, originals)
    quantize_tables_(tables, step)


def _bisect(lo: float, hi: float, ok: Callable[[float], bool], iterations: int) -> float:
    """The largest step in [lo, hi] (log scale) with ``ok(step)``, assuming ok is monotone
    (true for small steps); ``lo`` when none is."""
    if ok(hi):
        return hi
    if not ok(lo):
        return lo
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


# The finest step: the largest entry at most this many steps from zero, so every level's integers
# span under the 2**16 values a stored histogram takes.
FINEST_STEPS = 30000


def code_tables(view: nn.Module, tables: list[SceneTable], target: SceneTarget, score: Score | None,
                score_before: float | None = None, iterations: int = 9,
                measure: Callable[[nn.Module], int] | None = None) -> TableCoding:
    """Zero the unreachable rows, choose the step for ``target`` and quantize the tables in place.

    ``score`` (model -> PSNR) is needed for a PSNR target; ``score_before`` is the uncompressed
    scene's score (measured by the caller before anything was coded). ``measure`` gives the
    bytes of the file the caller will write (default: ``encoded_size``, without the caller's
    metadata).
    """
    measure = measure or _encoded_bytes
    started = time.perf_counter()
    if target.psnr_drop is not None and (score is None or score_before is None):
        raise SINRConfigError("a PSNR-drop target needs a scorer and the uncompressed scene's score")
    coding = TableCoding(step=0.0, score_before=score_before, target={k: v for k, v in asdict(target).items()})
    coding.reachable_share = zero_unreachable_(tables)
    originals = snapshot(tables)
    if score is not None:
        coding.score_mlps = score(view)
    largest = max(_max_abs(tables), 1e-30)
    min_step = largest / FINEST_STEPS
    hi = 2.0 * largest  # at this step every entry rounds to 0

    step_psnr = step_bytes = None
    if target.psnr_drop is not None:
        def within(step: float) -> bool:
            _apply(tables, originals, step)
            value = score(view)
            coding.probes.append({"step": step, "score": value})
            return score_before - value <= target.psnr_drop

        step_psnr = _bisect(min_step, hi, within, iterations)
    if target.bytes is not None:
        restore_(tables, originals)
        quantize_tables_(tables, hi)
        fixed = measure(view) - tables_bytes(tables, hi, originals=originals)

        def fits(step: float) -> bool:
            estimate = fixed + tables_bytes(tables, step, originals=originals)
            coding.probes.append({"step": step, "bytes": estimate})
            return estimate <= target.bytes

        # fits() is true for large steps: bisect on the reciprocal
        step_bytes = 1.0 / _bisect(1.0 / hi, 1.0 / min_step, lambda inv: fits(1.0 / inv), iterations + 4)
    step = step_psnr if step_bytes is None else (step_bytes if step_psnr is None else max(step_psnr, step_bytes))
    _apply(tables, originals, step)
    coding.step = step
    return settle(view, tables, coding, target, score, hi=hi, started=started, measure=measure)


def _encoded_bytes(view: nn.Module) -> int:
    return encoded_size(view)[0]


def settle(view: nn.Module, tables: list[SceneTable], coding: TableCoding, target: SceneTarget,
           score: Score | None, hi: float | None = None, started: float | None = None,
           measure: Callable[[nn.Module], int] | None = None) -> TableCoding:
    """Make the coded scene meet a byte target and record its final score and whether it meets
    ``target``; called after ``code_tables`` chose the step and again after fine-tuning (which
    moves the tables and the other parameters). The byte estimate of the search is close, not
    exact: the step grows by 5% until the file fits."""
    measure = measure or _encoded_bytes
    hi = hi if hi is not None else 2.0 * max(_max_abs(tables), 1e-30)
    if target.bytes is not None:
        current = snapshot(tables)
        for _ in range(40):
            if measure(view) <= target.bytes or coding.step >= hi:
                break
            coding.step = min(hi, coding.step * 1.05)
            _apply(tables, current, coding.step)
    coding.estimated_table_bytes = tables_bytes(tables, coding.step)
    if score is not None:
        coding.score_after = score(view)
    met = []
    if target.psnr_drop is not None:
        met.append(coding.score_before - coding.score_after <= target.psnr_drop)
    if target.bytes is not None:
        met.append(measure(view) <= target.bytes)
    coding.target_met = all(met)
    if started is not None:
        coding.seconds = time.perf_counter() - started
    return coding


# ----------------------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneOptions:
    steps: int = 200
    rays: int = 1024
    # nerfacto trains its tables at 1e-2 (decaying): at 1e-3 an entry moves 0.15 in 150 steps, too
    # little to cross a rounding boundary at the steps a target picks (0.1-0.4 on lego)
    lr: float = 5e-3
    # loss per mean bit per table entry; SHACIRA's gigapixel weight for its rate in bits per latent
    rate_lambda: float = 1e-4
    rate_rows: int = 1 << 14  # rows per level sampled for the rate estimate each step
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise SINRConfigError(f"finetune steps must be an int >= 0, got {self.steps!r}")
        if not (self.rays >= 1 and self.lr > 0 and self.rate_lambda >= 0 and self.rate_rows >= 1):
            raise SINRConfigError(f"bad fine-tuning options: {self}")


class TableRate(nn.Module):
    """Estimated bits of the tables' integers: one learned factorized prior per table, one
    channel per level, on uniformly noised ``table / step`` (the rounding's training stand-in)."""

    def __init__(self, tables: list[SceneTable]) -> None:
        super().__init__()
        self.tables = tables
        self.priors = nn.ModuleList([FactorizedPrior(channels=t.levels, init_scale=4.0) for t in tables])

    def bits_per_entry(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        total, count = 0.0, 0
        for t, prior in zip(self.tables, self.priors):
            quantizer = get_storage(t.encoding, "hash_table")
            steps = torch.tensor(quantizer.steps, dtype=t.table.dtype, device=t.table.device)
            # rows drawn uniformly within each level (levels of a tcnn grid differ in size)
            sizes = torch.tensor(t.level_rows, dtype=torch.float64)
            starts = torch.cumsum(sizes, 0) - sizes
            pick = (torch.rand(t.levels, rows, generator=generator, dtype=torch.float64) * sizes[:, None]).long()
            pick = (pick + starts.long()[:, None]).to(t.table.device)
            values = t.table[pick.reshape(-1)].reshape(t.levels, rows, -1) / steps[:, None, None]
            x = values.permute(1, 2, 0).reshape(-1, t.levels)  # (rows * features, levels)
            bits = prior.bits(noisy(x))
            total = total + bits.sum()
            count += bits.numel()
        return total / count


def finetune_scene(model: nn.Module, view: nn.Module, tables: list[SceneTable], rays, options: FinetuneOptions,
                   score: Score | None = None, progress: bool = True) -> dict:
    """Train the coded scene as it is stored (see the module docstring); snap it back onto its
    grids afterwards, so memory equals the file. Returns a log of the run."""
    from .fast_hash import use_fast_hash_encoding

    if options.steps == 0:
        return {"steps": 0}
    started = time.perf_counter()
    fast_before = {id(t.encoding): "pytorch_fwd" in t.encoding.__dict__ for t in tables}
    use_fast_hash_encoding(view)  # the fused gather, and the path that reads tables through their steps
    for t in tables:
        if get_storage(t.encoding, "hash_table") is None:
            raise SINRConfigError(f"{t.name}: the tables must be coded (code_tables) before fine-tuning")
        t.encoding.sinr_quantize_aware = True
    layers = list({id(m): m for m in view.modules() if isinstance(m, SINRLinear)}.values())
    for layer in layers:
        layer.quantize_aware = True
    rate = TableRate(tables).to(next(view.parameters()).device)
    params = [p for p in view.parameters() if p.requires_grad and p.is_floating_point()]
    # Tensors stored on a uniform grid (biases, input layers, a uniform baseline's weights) train
    # straight-through, as SINR values and the tables do: a float latent takes the updates and the
    # model holds its value rounded to the grid, so the last snap changes nothing the loss missed.
    trained, grids = {id(p) for p in params}, {}
    for module in view.modules():
        for name, p in module._parameters.items():
            storage = get_storage(module, name)
            if p is not None and id(p) in trained and id(p) not in grids and isinstance(storage, UniformQuantizer):
                grids[id(p)] = (p, storage, p.detach().clone())
    latents = [latent for _, _, latent in grids.values()]
    free = [p for p in params if id(p) not in grids]
    optimizer = torch.optim.Adam([{"params": free + latents, "lr": options.lr},
                                  {"params": rate.parameters(), "lr": 1e-2}], eps=1e-15)

    def snap() -> None:
        with torch.no_grad():
            for p, storage, latent in grids.values():
                p.copy_(round_to_storage(latent, storage))
    generator = torch.Generator().manual_seed(options.seed)
    history = []
    iterator = range(options.steps)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="fine-tuning the coded scene", unit="step")
    model.train()
    try:
        for step in iterator:
            bundle, batch = rays.batch(options.rays, generator)
            snap()
            outputs = model(bundle)
            metrics = model.get_metrics_dict(outputs, batch)
            losses = model.get_loss_dict(outputs, batch, metrics)
            bits = rate.bits_per_entry(options.rate_rows, generator)
            loss = sum(losses.values()) + options.rate_lambda * bits
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p, _, latent in grids.values():
                latent.grad, p.grad = p.grad, None  # the optimizer zeroes the latents' gradients, not these
            optimizer.step()
            if step % 25 == 0 or step == options.steps - 1:
                history.append({"step": step, "loss": float(loss), "rgb_loss": float(losses["rgb_loss"]),
                                "bits_per_entry": float(bits)})
    finally:
        snap()
        model.eval()
        for t in tables:
            t.encoding.sinr_quantize_aware = False
            if not fast_before[id(t.encoding)]:  # render as before: the same forward as a loaded scene
                t.encoding.__dict__.pop("pytorch_fwd", None)
        for layer in layers:
            layer.quantize_aware = False
            layer.snap_to_grid_()
        requantize_dense_(view)  # every stored tensor back on its grid: the tables on their steps too
    log = {"steps": options.steps, "options": asdict(options), "history": history,
           "seconds": time.perf_counter() - started}
    if score is not None:
        log["score_after"] = score(view)
    return log


__all__ = ["FinetuneOptions", "SceneTarget", "TableCoding", "TableRate", "code_tables", "finetune_scene", "settle"]
