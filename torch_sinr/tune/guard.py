"""The guard of ``torch_sinr.compress``: never a worse file than a uniform quantizer gives.

A user who could quantize the same model uniformly, with the same fine-tuning, would do so if it
gave a smaller file at the target. So after its own search, ``compress`` also makes the two
uniform files a user could have (in the same container and coder, fine-tuned with the same
steps), and the search's file with SINR on every target linear, and keeps the best for the target
(``tune.pipeline`` names the candidates). The uniform ones:

* **mixed precision**: the same search and fine-tuning with SINR switched off (bits per tensor);
* **one width**: every tensor on a grid of one width, fine-tuned; the narrowest width that meets
  a ``MaxDrop`` (found from the widths plain rounding meets, two below first), the widest that
  fits a ``ByteBudget``. The greedy per-tensor search can stop above it: its scores are taken
  before fine-tuning, which at few bits gains most (a SHACIRA-shaped decoder: 4 bits everywhere,
  fine-tuned, was smaller than both searches' files; tests/integrations/shacira/test_fair_baseline.py).

"Best" is the smallest file meeting a ``MaxDrop`` (the search's on a tie) or the best score
within a ``ByteBudget``. Every candidate is recorded (bytes, score, seconds) in
``PipelineResult.baseline``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from torch import nn

from ..core.quantization import UniformQuantizer
from ..errors import SINRError
from ..format.model_io import encoded_size
from ..nn.config import SINRConfig
from ..nn.storage import get_storage
from .autotune import ByteBudget, MaxDrop, autotune
from .baselines import finetune_uniform

Found = tuple  # (chosen model, config, fine-tuning steps used, probes): what a search returns


def file_bytes(model: nn.Module) -> int:
    """The bytes save_compressed would write, without writing them (a model without SINR layers too)."""
    return encoded_size(model, require_codes=False)[0]


def meets(target, reference: float, entry: dict) -> bool:
    if isinstance(target, MaxDrop):
        return entry["score"] >= reference - target.drop
    return entry["file_bytes"] <= target.max_bytes


def _better(target, reference: float, entry: dict, best: dict) -> bool:
    """Is ``entry`` a better file for ``target`` than ``best`` (which wins ties)?"""
    if not meets(target, reference, entry):
        return False
    if not meets(target, reference, best):
        return True
    if isinstance(target, MaxDrop):
        return entry["file_bytes"] < best["file_bytes"]
    return entry["score"] > best["score"]


def guarded(found: Found, candidates: dict[str, Callable[[], Found]], target, score, reference: float,
            deadline: float) -> tuple[Found, dict, dict[str, nn.Module]]:
    """``found`` (the search's result) or the best of ``candidates`` for ``target``; each candidate
    is run (in order, while time is left) and scored. Returns the winner, the record of all, and
    every candidate's model (to look at the files not kept)."""
    entries = {"search": {"file_bytes": file_bytes(found[0]), "score": score(found[0])}}
    record = {"candidates": entries, "kept": "search", "skipped": {}}
    winner, models = found, {"search": found[0]}
    for name, run in candidates.items():
        if time.perf_counter() >= deadline:
            record["skipped"][name] = "time budget spent"
            continue
        started = time.perf_counter()
        try:
            other = run()
        except SINRError as error:  # this baseline cannot meet the target: the others stand
            record["skipped"][name] = str(error)
            continue
        entries[name] = {"file_bytes": file_bytes(other[0]), "score": score(other[0]),
                         "seconds": time.perf_counter() - started}
        models[name] = other[0]
        if _better(target, reference, entries[name], entries[record["kept"]]):
            record["kept"], winner = name, other
    return winner, record, models


def _at_width(model: nn.Module, score, bits: int, base: SINRConfig) -> tuple[nn.Module, SINRConfig]:
    """A copy of ``model`` with every target linear and every other float tensor on a ``bits``-bit
    grid: autotune with SINR off and one width on each menu, under a budget nothing exceeds, stops
    where it starts."""
    work = copy.deepcopy(model)
    result = autotune(work, score, ByteBudget(2**62), base, uniform_bits=(bits,), dense_bits=(bits,), sinr=False,
                      progress=False)
    return work, result.config


def _on_grids(model: nn.Module) -> set[str]:
    """Names of the parameters ``model`` stores on uniform grids (what one width quantizes)."""
    names = set()
    for key, _ in model.named_parameters():
        owner, _, leaf = key.rpartition(".")
        if isinstance(get_storage(model.get_submodule(owner) if owner else model, leaf), UniformQuantizer):
            names.add(key)
    return names


def one_width(model: nn.Module, loss_fn, score, target, reference: float, widths: tuple[int, ...], steps: int,
              lr: float, select, base: SINRConfig) -> Found:
    """The one-width uniform file for ``target``, fine-tuned with ``steps`` steps (see the module
    docstring); SINRError when no width of ``widths`` gives one."""
    widths = sorted(set(widths))
    plain = {}  # bits -> (model, config), rounded, not fine-tuned
    for bits in widths:
        plain[bits] = _at_width(model, score, bits, base)

    def tuned(bits: int) -> tuple[Found, dict]:
        work, cfg = copy.deepcopy(plain[bits][0]), plain[bits][1]
        if steps and loss_fn is not None:
            # the library's uniform baseline fine-tuning (tune.baselines), so the candidate is the very
            # file finetune_uniform + write_uniform give a user; its values lie on the grids _at_width
            # fitted (the same fit of the same tensors), which store them exactly
            state, _ = finetune_uniform(copy.deepcopy(model), loss_fn, bits, steps, lr=lr, select=select,
                                        names=_on_grids(work))
            work.load_state_dict(state, strict=False)  # the rest (integer latents, say) stays as it was
        return (work, cfg, steps if loss_fn is not None else 0, []), {"file_bytes": file_bytes(work),
                                                                      "score": score(work)}

    if isinstance(target, MaxDrop):
        # fine-tuning gains about a bit's worth: start two widths below the narrowest that rounding meets
        met = [b for b in widths if score(plain[b][0]) >= reference - target.drop]
        start = max(0, widths.index(met[0]) - 2) if met else max(0, len(widths) - 3)
        for bits in widths[start:]:
            result, entry = tuned(bits)
            if meets(target, reference, entry):
                return result
    else:
        fitting = [b for b in widths if file_bytes(plain[b][0]) <= target.max_bytes]
        for bits in reversed(fitting[-2:]):  # fine-tuning moves the size a little: one width back at most
            result, entry = tuned(bits)
            if meets(target, reference, entry):
                return result
    raise SINRError(f"no single uniform width of {widths} meets target {target} after {steps} fine-tuning steps")
