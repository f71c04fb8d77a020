"""``torch_sinr.compress``: code, search for a target, fine-tune, keep the best file, in one call.

Measured on Kodak SIRENs (``benchmarks/results/kodak_C1.md``): SINR beats fine-tuned uniform
quantization at one bit width for every tensor when its codes are fine-tuned after coding, at a
small dictionary (k2 = 4 k1) and 8-bit values, with per-layer sparsity chosen by ``autotune``.
Against mixed-precision uniform quantization under the same search (held out,
``benchmarks/results/per_layer_choice.md``) its margin is small or negative, which is why the
default search may put any layer on a uniform grid and the guard keeps the uniform file when it is
smaller. This module strings those steps together so a user does not have to:

* ``target=SINRConfig(...)`` (or None: :data:`PIPELINE_CONFIG`): compress, then fine-tune;
* ``target=ByteBudget(n)``: autotune per-layer s under the budget (on each rung of the quality
  ladder but the last, keeping the best score), fine-tune, and re-tune with a tighter budget if
  fine-tuning moved the file past it;
* ``target=MaxDrop(d)``: bisect the byte budget; each probe is autotune plus a short fine-tune,
  scored after fine-tuning (autotune alone scores before it, which overstates the loss several
  dB at small budgets); the smallest probe within ``d`` then gets the rest of the fine-tuning.
  Without a ``config``, the search runs on the first rung of :data:`QUALITY_LADDER` (value and
  dense bits, dictionary) that can meet ``d`` and on the rung after it, and keeps the smaller file.

For a ``MaxDrop`` or ``ByteBudget`` target the search is, by default, the per-layer choice: each
target linear takes SINR codes or a uniform grid (:data:`UNIFORM_BITS`), each other float tensor
its own width (:data:`DENSE_BITS`). Then the guard (``tune.guard``) makes the uniform files a user
could have, with the same fine-tuning (mixed precision: the same search with SINR switched off;
one width for every tensor), and the same search with SINR on every target linear, and the best
file for the target is kept. So the file is never worse than those baselines, nor than the
library's own method applied everywhere. Both sides lose somewhere: on held-out Kodak SIRENs
(``benchmarks/results/per_layer_choice.md``) SINR on every layer was 24% larger than the
mixed-precision file on a 3x64; on meta-learned offsets at a 2.5 dB drop
(``benchmarks/results/meta_search.md``) the per-layer choice's greedy moves ended near mixed
precision, while SINR on every layer beat the strongest uniform baselines by 3-16% on three
configurations of four.

Fine-tuning trains the non-zero values, the biases and every dense tensor (input layer, output
layer) through the grids the file stores them on, so the model in memory is its file. Nothing
is changed in the caller's model until the end: probes run on copies, and a target that cannot
be met raises :class:`SINRError` with the model untouched.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from ..api import compress_model
from ..errors import SINRConfigError, SINRError
from ..format.model_io import fill_file_bytes
from ..nn.config import SINRConfig
from ..nn.report import CompressionReport
from ..nn.transform import refuse_compressed
from .autotune import ByteBudget, MaxDrop, autotune, dense_widths, install_config, uniform_widths
from .finetune import finetune_codes
from .guard import file_bytes, guarded, one_width

# The measured winner (Kodak C1, format 2): 4x dictionary, 8-bit values and dense tensors.
# s = 0.3 k1 is the fixed-setting default when no target is given (25-31% fewer bits than
# fine-tuned uniform quantization at one width for every tensor, at equal PSNR on 3x64 / 3x128).
PIPELINE_CONFIG = SINRConfig(dict_ratio=4, s_ratio=0.3, value_bits=8)
AUTOTUNE_VALUE_BITS = (8,)  # autotune's value-bit menu: 8-bit with fine-tuning beat mixed menus
# The search's default menus for a MaxDrop / ByteBudget target: the grid widths a target linear
# may take instead of SINR codes, and those every other float tensor (bias, input layer) chooses
# from. Below 4 (layers) and 6 (biases, input layers) bits no probe on Kodak SIRENs met 0.5 dB.
UNIFORM_BITS = (12, 10, 9, 8, 7, 6, 5, 4)
DENSE_BITS = (16, 14, 12, 10, 9, 8, 7, 6)
# The guard's candidates besides the search, in the order they run (a time budget may cut the
# last): the uniform files a user could have (the fair baselines), then SINR on every target linear.
UNIFORM_CANDIDATES = ("mixed precision", "one width")
SINR_EVERYWHERE = "SINR on every layer"
PROBE_STEPS = 100  # fine-tuning steps per MaxDrop probe
MAX_PROBES = 7
NEXT_RUNG_PROBES = 3  # probes on the rung after the first feasible one, below the best file
# MaxDrop without a config climbs this ladder until the richest setting of a rung meets the
# target after a short fine-tune, then searches the bytes within it: the measured winner first,
# then more value and dense bits, then the paper's settings (which lose under 1 dB untuned).
# The last number scales the fine-tuning rate: 16-bit grids are 256x finer than 8-bit ones, and
# near-lossless fits (50 dB) need steps far smaller than 1e-3 to improve at all.
QUALITY_LADDER = (
    (PIPELINE_CONFIG, (8,), 1.0),
    (SINRConfig(dict_ratio=4, s_ratio=0.3, value_bits=12, dense_bits=12), (12, 10, 8), 1.0),
    (SINRConfig(dict_ratio=16, value_bits=16, dense_bits=16), (16, 12, 10, 8), 0.1),
    (SINRConfig(value_bits=16, dense_bits=16), (16, 12, 10, 8), 0.1),
)


@dataclass
class PipelineResult:
    model: nn.Module  # the caller's model, compressed in place (memory equals the file)
    report: CompressionReport
    config: SINRConfig  # reusable: compress_model(fresh, config) gives the same codes before fine-tuning
    file_bytes: int  # measured by writing the file
    reference_score: float | None  # evaluate(original), when there is an evaluate
    score: float | None  # evaluate(compressed), measured on the model as the file decodes it
    seconds: float
    finetune_steps: int
    probes: list[dict] = field(default_factory=list)  # MaxDrop search: budget, bytes, score, ok
    # the guard (tune.guard): each candidate file's bytes and score, which was kept, which skipped
    baseline: dict | None = None
    # the guard's candidate models by name, as their files decode (not in to_dict): to look at them
    candidates: dict[str, nn.Module] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"file_bytes": self.file_bytes, "reference_score": self.reference_score, "score": self.score,
                "seconds": self.seconds, "finetune_steps": self.finetune_steps, "probes": self.probes,
                "baseline": self.baseline,
                "config": self.config.to_dict(), "report": self.report.to_dict()}

    def __str__(self) -> str:
        text = f"{self.report.table()}\n\nfile: {self.file_bytes} B ({self.report.ratio:.2f}x)"
        if self.score is not None:
            text += f", score {self.reference_score:.4g} -> {self.score:.4g}"
        return text + f", {self.seconds:.1f} s"


def compress(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor] | None = None, *,
             evaluate: Callable[[nn.Module], float] | None = None,
             target: MaxDrop | ByteBudget | SINRConfig | None = None, steps: int = 300, lr: float = 1e-3,
             config: SINRConfig | None = None, value_bits: tuple[int, ...] = AUTOTUNE_VALUE_BITS,
             time_budget_s: float | None = None, max_probes: int = MAX_PROBES, select_by_score: bool = False,
             uniform_bits: tuple[int, ...] | None = None, dense_bits: tuple[int, ...] | None = None,
             sinr: bool = True, guard: bool = True, progress: bool = True) -> PipelineResult:
    """Compress ``model`` in place to a target, fine-tuning the codes on ``loss_fn``.

    ``loss_fn(model) -> scalar tensor`` is what the model was trained on (e.g. MSE on the
    signal); without it nothing is fine-tuned (``compress_model`` alone). ``evaluate(model) ->
    float`` scores quality, higher is better (e.g. PSNR); ``MaxDrop`` is in its units. Without
    ``evaluate``, the score is ``-loss_fn(model)``. ``config`` holds everything the target does
    not choose (targets, dictionary, dense storage); default :data:`PIPELINE_CONFIG`.
    ``time_budget_s`` bounds the search and the fine-tuning (the result is then the best found);
    ``max_probes`` bounds the bisection of a ``MaxDrop`` search on its rung. ``select_by_score``
    keeps each fine-tune's best iterate by ``evaluate`` (scored every ``finetune.SELECT_EVERY``
    steps) instead of by the loss: for a loss on fresh random batches, or one that is not the
    quality that counts (MSE on occupancy against IoU). ``uniform_bits`` lets autotune code a
    layer on a per-tensor uniform grid of one of these widths where that costs fewer bytes per
    unit of score than its SINR codes (``autotune``'s per-layer choice); ``()``, every target
    linear is SINR-coded. ``dense_bits`` lets autotune give every other float tensor (biases,
    input layers) its own width from that menu; ``()``, they stay on the config's grid. Left at
    None, both are :data:`UNIFORM_BITS` / :data:`DENSE_BITS` for a ``MaxDrop`` or ``ByteBudget``
    target (``()`` when the config stores dense tensors as ``dense_dtype``, or with no search).
    ``sinr=False`` switches SINR off (needs ``uniform_bits``): the same search and fine-tuning
    over uniform grids only, the mixed-precision baseline, written by ``save_compressed`` like
    any coded model. ``guard`` (with a search that has ``uniform_bits``) also makes that baseline,
    the one-width uniform file and the same search with ``uniform_bits=()`` (SINR on every target
    linear), and keeps the best for the target (``PipelineResult.baseline`` records every
    candidate); it about triples the work, and within ``time_budget_s`` gets the time the search
    left.
    """
    started = time.perf_counter()
    deadline = started + time_budget_s if time_budget_s is not None else math.inf
    if isinstance(target, SINRConfig):
        if config is not None:
            raise SINRConfigError("give the settings either as target=SINRConfig(...) or as config=, not both")
        base = target
    elif target is None or isinstance(target, (MaxDrop, ByteBudget)):
        base = config or PIPELINE_CONFIG
    else:
        raise SINRConfigError(f"target must be MaxDrop(...), ByteBudget(...), a SINRConfig or None, got {target!r}")
    base.validate()
    searching = isinstance(target, (MaxDrop, ByteBudget))
    menus = searching and base.dense_dtype is None
    uniform_bits = (UNIFORM_BITS if menus else ()) if uniform_bits is None else uniform_bits
    dense_bits = (DENSE_BITS if menus else ()) if dense_bits is None else dense_bits
    uniform_widths(uniform_bits, base)
    dense_widths(dense_bits, base)
    if not sinr and not uniform_bits:
        raise SINRConfigError("sinr=False needs uniform_bits: with SINR switched off, the layers' weights can only "
                              "take uniform grids")
    if not sinr and not isinstance(target, (MaxDrop, ByteBudget)):
        raise SINRConfigError(f"sinr=False searches grids for a MaxDrop or ByteBudget target, got target={target!r}")
    search = {"uniform_bits": tuple(uniform_bits), "dense_bits": tuple(dense_bits), "sinr": sinr}
    refuse_compressed(model, base)
    if not (isinstance(steps, int) and steps >= 0):
        raise SINRConfigError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(target, (MaxDrop, ByteBudget)) and loss_fn is None and evaluate is None:
        raise SINRConfigError(f"target {target} needs data: pass loss_fn (and evaluate for a quality score)")
    score = _scorer(loss_fn, evaluate)
    reference = score(model) if score is not None else None
    select = score if select_by_score else None

    def search_and_finetune(search: dict, desc: str):
        """The search for ``search``'s codings, then the rest of the fine-tuning, on a copy."""
        base_, value_bits_, lr_ = base, value_bits, lr
        bar = tqdm(total=None, desc=desc, disable=not progress, unit=" probes")
        try:
            if isinstance(target, MaxDrop):
                ladder = [(base_, tuple(value_bits_), 1.0)] if config is not None else QUALITY_LADDER
                chosen, cfg, probes, used, lr_ = _max_drop(model, loss_fn, score, reference, target, ladder, steps,
                                                           lr_, deadline, bar, max_probes, select, search)
            else:
                chosen, cfg, used, probes = copy.deepcopy(model), base_, 0, []
                if isinstance(target, ByteBudget) and config is None:
                    chosen, cfg, probes, lr_, base_, value_bits_ = _budget_rungs(model, score, target.max_bytes, lr_,
                                                                                 bar, search)
                elif isinstance(target, ByteBudget):
                    cfg = _autotune_budget(chosen, score, target.max_bytes, base_, value_bits_, search=search)
                else:
                    compress_model(chosen, cfg, progress=False)
                bar.set_postfix_str("coded")
            # the rest of the fine-tuning, on the chosen codes
            remaining = _steps_left(steps - used, loss_fn, deadline, chosen)
            if remaining:
                finetune_codes(chosen, loss_fn, remaining, lr=lr_, train_dense=True, select=select, progress=progress)
                used += remaining
            if isinstance(target, ByteBudget):
                chosen, cfg, used = _fit_budget_after_finetuning(model, chosen, cfg, loss_fn, score, target, base_,
                                                                 value_bits_, used, lr_, deadline, select, search)
        finally:
            bar.close()
        return chosen, cfg, used, probes

    chosen, cfg, used, probes = search_and_finetune(search, "compress: search")
    baseline, others = None, {}
    if guard and sinr and uniform_bits and searching:
        candidates = {
            "mixed precision": lambda: search_and_finetune({**search, "sinr": False}, "compress: mixed precision"),
            # one width from either menu: a high-PSNR fit may need the dense menu's 14 or 16 bits everywhere
            "one width": lambda: one_width(model, loss_fn, score, target, reference,
                                           tuple(set(uniform_bits) | set(dense_bits)), steps, lr, select, base),
            # the greedy choice can stop where SINR on every layer, a move no single step takes, is smaller
            SINR_EVERYWHERE: lambda: search_and_finetune({**search, "uniform_bits": ()},
                                                         f"compress: {SINR_EVERYWHERE}")}
        (chosen, cfg, used, probes), baseline, others = guarded((chosen, cfg, used, probes), candidates, target,
                                                                score, reference, deadline)
    # --- install into the caller's model: same config gives the same modules and grids -------
    report = install_config(model, cfg)
    model.load_state_dict(chosen.state_dict())
    fill_file_bytes(model, report)  # re-measured after fine-tuning; layer errors kept from coding
    final = score(model) if score is not None else None
    # The report's time is the call's (search, fine-tuning, install), not the install's alone:
    # printed, "compressed in 0.02 s" after a 22 s call would be the wrong number.
    report.seconds = time.perf_counter() - started
    return PipelineResult(model=model, report=report, config=cfg, file_bytes=report.file_bytes,
                          reference_score=reference, score=final, seconds=report.seconds,
                          finetune_steps=used, probes=probes, baseline=baseline, candidates=others)


def _scorer(loss_fn, evaluate) -> Callable[[nn.Module], float] | None:
    if evaluate is None and loss_fn is None:
        return None

    def score(m: nn.Module) -> float:
        was_training = m.training
        m.eval()
        try:
            with torch.no_grad():
                value = float(evaluate(m)) if evaluate is not None else -float(loss_fn(m))
        finally:
            m.train(was_training)
        if not math.isfinite(value):
            raise SINRError(f"the score is {value}, not a finite number")
        return value

    return score


def _steps_left(steps: int, loss_fn, deadline: float, model: nn.Module) -> int:
    if loss_fn is None or steps <= 0:
        return 0
    if deadline == math.inf:
        return steps
    # time one step, then fit the rest into the budget
    left = deadline - time.perf_counter()
    if left <= 0:
        return 0
    probe = copy.deepcopy(model)
    t0 = time.perf_counter()
    finetune_codes(probe, loss_fn, 2, train_dense=True)
    per_step = (time.perf_counter() - t0) / 3  # 2 steps and a final evaluation
    return max(0, min(steps, int(left / max(per_step, 1e-6))))


NO_SEARCH = {"uniform_bits": (), "dense_bits": (), "sinr": True}  # autotune's codings: SINR on every target


def _autotune_budget(work: nn.Module, score, budget: int, base: SINRConfig, value_bits,
                     code_cache: dict | None = None, search: dict = NO_SEARCH,
                     start_floor: float | None = None) -> SINRConfig:
    """Compress ``work`` in place with autotune under ``budget`` bytes; its config. ``search``:
    autotune's ``uniform_bits``, ``dense_bits`` and ``sinr``; ``start_floor``: autotune's."""
    result = autotune(work, score, ByteBudget(int(budget)), base, value_bits=value_bits, progress=False,
                      code_cache=code_cache, start_floor=start_floor, **search)
    return result.config


def _richest(work: nn.Module, score, base: SINRConfig, bits: tuple[int, ...], search: dict,
             start_floor: float | None = None) -> SINRConfig:
    """Compress ``work`` in place at the richest setting the search starts from; its config."""
    if search["sinr"] and not search["dense_bits"] and start_floor is None:
        cfg = replace(base, s=None, s_pattern={}, s_ratio=max(0.45, base.s_ratio), value_bits=max(bits),
                      value_bits_pattern={})
        compress_model(work, cfg, progress=False)
        return cfg
    # grids chosen per tensor start at their widest: autotune under a budget nothing exceeds stops there
    return _autotune_budget(work, score, 2**62, replace(base, s_ratio=max(0.45, base.s_ratio)), bits, search=search,
                            start_floor=start_floor)


def _budget_rungs(model, score, budget: int, lr: float, bar, search: dict = NO_SEARCH):
    """ByteBudget without a config: autotune under the budget on each rung of the ladder but the
    paper's (whose 2**16-atom search is slow), and keep the best score. A rung whose richest
    setting is already under the budget cannot spend it (the 8-bit rung on a large budget)."""
    best, probes = None, []
    for base, bits, scale in QUALITY_LADDER[:-1]:
        work = copy.deepcopy(model)
        try:
            cfg = _autotune_budget(work, score, budget, base, bits, search=search)
        except SINRError:
            probes.append({"budget": budget, "bytes": None, "score": None, "value_bits": list(bits)})
            continue
        value = score(work)
        probes.append({"budget": budget, "bytes": file_bytes(work), "score": value, "value_bits": list(bits),
                       "dense_bits": base.dense_value_bits()})
        bar.update(1)
        if best is None or value > best[2]:
            best = (work, cfg, value, lr * scale, base, bits)
    if best is None:
        raise SINRError(f"target ByteBudget({budget}) cannot be met: the smallest setting on every rung is larger")
    return best[0], best[1], probes, best[3], best[4], best[5]


def _fit_budget_after_finetuning(model, chosen, cfg, loss_fn, score, target: ByteBudget, base, value_bits, used,
                                 lr, deadline, select=None, search: dict = NO_SEARCH):
    """Fine-tuning moves values on their grids, which moves the entropy-coded size a little:
    if the file ended past the budget, re-tune under a budget shrunk by the overshoot."""
    budget = target.max_bytes
    for _ in range(3):
        size = file_bytes(chosen)
        if size <= target.max_bytes:
            return chosen, cfg, used
        budget = int(budget * target.max_bytes / size) - 1
        chosen = copy.deepcopy(model)
        cfg = _autotune_budget(chosen, score, budget, base, value_bits, search=search)
        steps = _steps_left(used, loss_fn, deadline, chosen)
        if steps:
            finetune_codes(chosen, loss_fn, steps, lr=lr, train_dense=True, select=select)
    size = file_bytes(chosen)
    if size > target.max_bytes:
        raise SINRError(f"target {target} cannot be met after fine-tuning (the file has {size} B)")
    return chosen, cfg, used


def _max_drop(model, loss_fn, score, reference, target: MaxDrop, ladder, steps, lr, deadline, bar,
              max_probes: int = MAX_PROBES, select=None, search: dict = NO_SEARCH):
    """Climb ``ladder`` to the first rung whose richest setting meets the drop after a short
    fine-tune, then bisect the byte budget for the smallest file that still meets it."""
    floor = reference - target.drop
    probe_steps = min(steps, PROBE_STEPS) if loss_fn is not None else 0
    probes: list[dict] = []
    codes: dict = {}  # OMP codes per (layer, s, dictionary): computed once for all probes

    # The per-layer choice starts from SINR's richest setting on every layer. Where no rung's start
    # meets the target after the probe's fine-tuning, the ladder is climbed again from starts with
    # layers moved to their widest grids until the floor is met before fine-tuning (autotune's
    # start_floor): the search only moves down, so otherwise a grid could never replace codes that
    # lose too much. Only searches that found nothing before take this second climb.
    choice = search["sinr"] and bool(search["uniform_bits"])

    def probe(base: SINRConfig, bits: tuple[int, ...], scale: float, budget: int | None,
              start_floor: float | None = None):
        work = copy.deepcopy(model)
        try:
            if budget is None:  # the richest setting autotune starts from
                cfg = _richest(work, score, base, bits, search, start_floor)
            else:
                cfg = _autotune_budget(work, score, budget, base, bits, codes, search, start_floor)
        except SINRError as exc:
            probes.append({"budget": budget, "bytes": None, "score": None, "ok": False, "error": str(exc)})
            return None
        if probe_steps:
            finetune_codes(work, loss_fn, probe_steps, lr=lr * scale, train_dense=True, select=select)
        value, size = score(work), file_bytes(work)
        probes.append({"budget": budget, "bytes": size, "score": value, "ok": value >= floor,
                       "value_bits": list(bits), "dense_bits": base.dense_value_bits(),
                       **({"start": "grids"} if start_floor is not None else {})})
        bar.update(1)
        bar.set_postfix(bytes=size, score=f"{value:.4g}")
        return work, cfg, value, size, scale

    def bisect(base, bits, scale, best, lo: float, probes_left: int, start_floor: float | None = None):
        hi = float(best[3])  # bytes: lo fails (or is a floor), hi meets the target
        for _ in range(probes_left):
            if time.perf_counter() > deadline or hi - lo < 0.04 * hi:
                break
            budget = int((lo + hi) / 2)
            found = probe(base, bits, scale, budget, start_floor)
            if found is not None and found[2] >= floor and found[3] < best[3]:
                best, hi = found, float(found[3])
            else:
                lo = float(budget)
        return best

    # The first rung whose richest setting meets the target, bisected; then the next rung, probed
    # only below the best file found: more bits per value can buy a smaller file (fewer
    # non-zeros) than the cheapest feasible rung, measured on small fits.
    def climb(start_floor: float | None):
        best, rung = None, None
        for i, (base, bits, scale) in enumerate(ladder):
            if time.perf_counter() > deadline:
                break
            if best is None:
                richest = probe(base, bits, scale, None, start_floor)
                if richest is None or richest[2] < floor:
                    continue
                best, rung = bisect(base, bits, scale, richest, 0.0, max_probes - 1, start_floor), i
            elif i == rung + 1:
                best = bisect(base, bits, scale, best, 0.5 * best[3], NEXT_RUNG_PROBES, start_floor)
                break
        return best

    best = climb(None)
    if best is None and choice:
        best = climb(floor)
    if best is None:
        scored = [p["score"] for p in probes if p["score"] is not None]
        errors = [p["error"] for p in probes if "error" in p]
        if not scored and errors:
            # no setting could even be made: say why (e.g. a model whose every linear is an input
            # layer), not that the target's floor was missed
            raise SINRError(f"target {target} cannot be met: no setting could be made ({len(errors)} tried); "
                            f"the last said: {errors[-1]}")
        got = f" (the best setting tried scores {max(scored):.4g} after fine-tuning)" if scored else ""
        raise SINRError(f"target {target} cannot be met: the floor is {floor:.4g}{got}; give more fine-tuning "
                        f"steps, more value bits, or a larger dictionary")
    work, cfg, _, _, scale = best
    return work, cfg, probes, probe_steps, lr * scale
