"""autotune: choose s and value bits per layer to meet a quality or size target with the fewest bits.

The user supplies ``evaluate(model) -> float`` (higher is better, e.g. PSNR in dB) and a target:

* ``MaxDrop(d)``: the compressed model may score at most ``d`` below the original;
* ``ByteBudget(n)``: the written file may hold at most ``n`` bytes (the best score under it).

Search: greedy descent on the real, jointly evaluated model. Every coded layer starts at its
richest setting (the largest admissible s, ``max_bits`` value bits). Each round tries, for every
layer, one notch down in s and one notch down in value bits, evaluates the whole model with that
single change, and takes the move that saves the most bytes per unit of score lost (moves that
lose nothing come first). It stops when no move keeps ``MaxDrop`` satisfied, or as soon as the
bytes fit a ``ByteBudget``. Greedy joint evaluation costs O(rounds x layers) evaluations, far
fewer than the grid, and unlike per-layer sensitivity tables it sees how layers' errors interact.

Codes for each (layer, s) are computed once by OMP with raw float values; a value-bit setting
re-quantizes them, exactly as ``compress_model`` would (same quantizer fit). The result is a
:class:`SINRConfig` with ``s_pattern`` / ``value_bits_pattern`` filled in, applied to the user's
model with ``compress_model``, so the outcome is reproducible from the config alone. Bytes during
the search are the Brotli-coded streams of each layer plus the measured rest of the file; the
final size is measured by writing the file.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from ..api import compress_model, plan_targets
from ..core.quantization import UniformQuantizer
from ..core.sparsity import max_sparsity
from ..core.tensor_codes import CodedTensor, encode_tensor
from ..errors import SINRConfigError, SINRError
from ..format.model_io import codes_bytes, encoded_size, fill_file_bytes, uniform_bytes
from ..nn.config import SINRConfig
from ..nn.layer import SINRLinear
from ..nn.matching import as_patterns
from ..nn.report import CompressionReport
from ..nn.storage import get_storage, set_storage
from ..nn.transform import set_module, store_dense

DEFAULT_S_RATIOS = (0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)
DEFAULT_VALUE_BITS = (16, 14, 12, 10, 9, 8, 7, 6, 5, 4)


@dataclass(frozen=True)
class MaxDrop:
    """The compressed model may score at most ``drop`` below the original (e.g. 0.5 dB PSNR)."""

    drop: float

    def __post_init__(self) -> None:
        if not (isinstance(self.drop, (int, float)) and math.isfinite(self.drop) and self.drop >= 0):
            raise SINRConfigError(f"MaxDrop needs a finite drop >= 0, got {self.drop!r}")


@dataclass(frozen=True)
class ByteBudget:
    """The written file may hold at most ``max_bytes`` bytes."""

    max_bytes: int

    def __post_init__(self) -> None:
        if not (isinstance(self.max_bytes, int) and self.max_bytes > 0):
            raise SINRConfigError(f"ByteBudget needs a positive int of bytes, got {self.max_bytes!r}")


@dataclass
class AutotuneResult:
    config: SINRConfig  # reusable: compress_model(fresh_model, result.config) gives the same model
    report: CompressionReport
    reference_score: float  # evaluate(original model)
    score: float  # evaluate(compressed model), measured after compress_model
    file_bytes: int  # bytes of the file save_compressed writes, measured
    choices: dict[str, tuple[int, int]]  # layer name -> (s, value bits)
    evaluations: int
    history: list[dict] = field(default_factory=list)  # one entry per accepted move
    uniform: dict[str, int] = field(default_factory=dict)  # layer name -> bits, where uniform coding won
    dense: dict[str, int] = field(default_factory=dict)  # state_dict key -> bits of each searched dense tensor
    seconds: float = 0.0  # wall time of the search, the final coding included

    def to_dict(self) -> dict:
        return {"reference_score": self.reference_score, "score": self.score, "file_bytes": self.file_bytes,
                "choices": {k: {"s": s, "value_bits": b} for k, (s, b) in self.choices.items()},
                "uniform": dict(self.uniform), "dense": dict(self.dense), "evaluations": self.evaluations,
                "seconds": self.seconds, "history": self.history}

    def table(self) -> str:
        """The coding chosen per layer (SINR's s and value bits, or a uniform grid's bits) beside the
        coded layers' report, then the outcome."""
        lines = ["| layer | coding | s | bits |", "|---|---|---|---|"]
        lines += [f"| {name} | SINR | {s} | {bits} |" for name, (s, bits) in self.choices.items()]
        lines += [f"| {name} | uniform | - | {bits} |" for name, bits in self.uniform.items()]
        lines += [f"| {name} | dense tensor | - | {bits} |" for name, bits in self.dense.items()]
        return ("\n".join(lines) + "\n\n" + self.report.table() + "\n\n"
                + f"file: {self.file_bytes} B ({self.report.ratio:.2f}x), score {self.reference_score:.4g} -> "
                + f"{self.score:.4g} after {self.evaluations} evaluations, {len(self.history)} accepted moves")

    def __str__(self) -> str:
        return self.table()


def _widths(bits, config: SINRConfig, name: str, what: str) -> list[int]:
    """A menu of grid widths, widest first, checked: ints in 2..16, and not with ``dense_dtype``."""
    if not isinstance(bits, (tuple, list)) or any(
            isinstance(b, bool) or not isinstance(b, int) or b not in range(2, 17) for b in bits):
        raise SINRConfigError(f"{name} must be a tuple of ints in 2..16, got {bits!r}")
    if bits and config.dense_dtype is not None:
        raise SINRConfigError(f"{name} {what}, dense_dtype stores dense tensors as a float dtype: choose one")
    return sorted(set(bits), reverse=True)


def uniform_widths(uniform_bits, config: SINRConfig) -> list[int]:
    """The uniform grid widths a layer may take instead of SINR codes, widest first (checked)."""
    return _widths(uniform_bits, config, "uniform_bits", "codes layers on uniform grids")


def dense_widths(dense_bits, config: SINRConfig) -> list[int]:
    """The grid widths a dense tensor (bias, input layer, ...) may take, widest first (checked)."""
    return _widths(dense_bits, config, "dense_bits", "puts dense tensors on uniform grids")


class _Tensor:
    """One dense float parameter the search gives a grid width: a bias, an input layer's weight.

    Its value always comes from the original model, rounded to the chosen grid, and is written
    into whichever module owns it in the working copy now (a coded layer's bias moves with the
    layer between its SINR and uniform forms)."""

    def __init__(self, key: str, original: torch.Tensor, widths: list[int]):
        self.key, self.original, self.widths = key, original.detach(), widths
        self.owner, _, self.leaf = key.rpartition(".")
        self.at = 0
        self.grids: dict[int, UniformQuantizer] = {}
        self.sizes: dict[int, int] = {}

    def grid(self, bits: int) -> UniformQuantizer:
        if bits not in self.grids:
            self.grids[bits] = UniformQuantizer.fit(self.original, bits)
        return self.grids[bits]


class _Layer:
    """One coded layer of the working copy and its menu of settings."""

    def __init__(self, name: str, module: SINRLinear, sharing: list[SINRLinear], weight: torch.Tensor,
                 s_options: list[int], bit_options: list[int], uniform_options: list[int]):
        self.name, self.module, self.weight = name, module, weight
        self.sharing = sharing  # every module of the working copy that uses these codes (tied weights)
        self.s_options, self.bit_options = s_options, bit_options
        # widths of a uniform grid the layer's weight may take instead of SINR codes (richest first);
        # empty where the layer cannot leave SINR alone (tied or shared codes)
        self.uniform_options = uniform_options
        self.s_at, self.bits_at = 0, 0  # positions in the menus (0 = richest)
        self.uniform_at: int | None = None  # position in uniform_options when uniform coding won
        self.codes: dict[int, CodedTensor] = {}  # s -> raw float codes
        self.variants: dict[tuple[int, int], SINRLinear] = {}  # (s, bits) -> quantized codes
        self.sizes: dict[tuple[int, int], int] = {}
        self.dense: dict[int, nn.Linear] = {}  # uniform bits -> the layer as a dense linear on that grid
        self.dense_sizes: dict[int, int] = {}

    @property
    def setting(self) -> tuple[int, int]:
        return self.s_options[self.s_at], self.bit_options[self.bits_at]

    @property
    def state(self) -> tuple[int, int, int | None]:
        return self.s_at, self.bits_at, self.uniform_at

    @state.setter
    def state(self, value: tuple[int, int, int | None]) -> None:
        self.s_at, self.bits_at, self.uniform_at = value


def autotune(model: nn.Module, evaluate: Callable[[nn.Module], float], target: MaxDrop | ByteBudget,
             config: SINRConfig | None = None, *, s_ratios: tuple[float, ...] = DEFAULT_S_RATIOS,
             value_bits: tuple[int, ...] = DEFAULT_VALUE_BITS, max_evaluations: int = 2000,
             progress: bool = True, code_cache: dict | None = None,
             uniform_bits: tuple[int, ...] = (), dense_bits: tuple[int, ...] = (),
             sinr: bool = True, start_floor: float | None = None) -> AutotuneResult:
    """Compress ``model`` in place with per-layer s and value bits chosen to meet ``target``.

    ``uniform_bits`` lets the search code a layer's weight on a per-tensor uniform grid of one of
    these widths instead (the file's ``uniform`` kind): a move like any other, taken when it saves
    more bytes per unit of score than the SINR moves. At least one layer stays SINR-coded, so that
    ``compress_model(fresh, result.config)`` reproduces the model (``sinr=False`` is the search over
    grids alone); layers whose codes are tied or shared stay SINR-coded. The choice lands in the returned config as an
    exclusion plus ``dense_bits_pattern``, and in ``AutotuneResult.uniform``.

    ``dense_bits`` gives every other float parameter (biases, input layers, anything SINR does not
    code) its own width from this menu by the same search, starting at the widest: without it they
    stay on the config's ``dense_bits`` grid. The widths land in ``dense_bits_pattern`` and in
    ``AutotuneResult.dense``.

    ``sinr=False`` switches SINR off: every target layer starts on its widest uniform grid and only
    grids are searched. With ``uniform_bits`` and ``dense_bits`` this is mixed-precision uniform
    quantization under exactly the search SINR gets, the baseline SINR has to beat; the model
    then holds no SINRLinear, and ``save_compressed`` writes it like any coded model.

    Where the richest start scores below the floor (``MaxDrop``'s, or ``start_floor`` under a
    ``ByteBudget``) and layers may take grids, the start moves layers to their widest grid one at a
    time, the one that raises the score most first, until the floor is met or one SINR layer is
    left: SINR codes at their richest can lose more than a 12-bit grid (wide SIRENs at 8-bit
    values), and the search only moves down from its start. These moves are in ``history`` with
    ``"start": True``. A start that meets the floor is not changed.

    ``evaluate(model)`` returns a score, higher is better; it is called under ``torch.no_grad()``.
    ``config`` gives everything else (targets, dictionary, coder, dense dtype); its ``s``,
    ``s_pattern``, ``value_bits`` and ``value_bits_pattern`` are what autotune chooses.
    If the target cannot be met, raises :class:`SINRError` and leaves ``model`` unchanged.
    ``code_cache`` (a dict the caller keeps) reuses the OMP codes of each (layer, s) across
    calls on the same model, e.g. the probes of ``torch_sinr.compress``.
    """
    if not isinstance(target, (MaxDrop, ByteBudget)):
        raise SINRConfigError(f"target must be MaxDrop(...) or ByteBudget(...), got {target!r}")
    config = (config or SINRConfig()).validate()
    bit_menu = sorted({int(b) for b in value_bits}, reverse=True)
    ratio_menu = sorted({float(r) for r in s_ratios}, reverse=True)
    if not bit_menu or any(b not in range(2, 17) for b in bit_menu):
        raise SINRConfigError(f"value_bits must be a non-empty set of ints in 2..16, got {value_bits!r}")
    if not ratio_menu or any(not 0 < r <= 1 for r in ratio_menu):
        raise SINRConfigError(f"s_ratios must be a non-empty set of numbers in (0, 1], got {s_ratios!r}")
    uniform_menu = uniform_widths(uniform_bits, config)
    dense_menu = dense_widths(dense_bits, config)
    if not sinr and not uniform_menu:
        raise SINRConfigError("sinr=False needs uniform_bits: with SINR switched off, the layers' weights can only "
                              "take uniform grids")
    started = time.perf_counter()

    def score(m: nn.Module) -> float:
        with torch.no_grad():
            value = float(evaluate(m))
        if not math.isfinite(value):
            raise SINRError(f"evaluate() returned {value}, not a finite score")
        return value

    reference = score(model)
    # The working copy: compress it once at the richest settings to learn the layers' code shapes.
    work = copy.deepcopy(model)
    rich = replace(config, s=None, s_pattern={}, value_bits=bit_menu[0], value_bits_pattern={},
                   s_ratio=ratio_menu[0])
    if not sinr:  # the layers' shapes are all that is needed of SINR codes: the cheapest codes give them
        rich = replace(rich, s=1, target_error=None)
    base_report = compress_model(work, rich, progress=False)
    originals = dict(model.named_modules(remove_duplicate=False))
    layers: list[_Layer] = []
    tied_sources = {entry.tied_to for entry in base_report.layers if entry.tied_to}
    for entry in base_report.layers:
        if entry.tied_to:
            continue
        module = work.get_submodule(entry.name)
        sharing = [m for m in work.modules() if isinstance(m, SINRLinear) and m.values is module.values]
        names = [n for n, m in work.named_modules(remove_duplicate=False) if m is module]
        alone = len(sharing) == 1 and names == [entry.name] and entry.name not in tied_sources
        if not sinr and not alone:
            raise SINRConfigError(f"sinr=False cannot code {entry.name!r} on a uniform grid: its codes are tied or "
                                  f"shared with another module")
        k1 = module.spec.k1
        s_options = sorted({min(max_sparsity(k1), max(1, math.ceil(r * k1))) for r in ratio_menu}, reverse=True)
        layers.append(_Layer(entry.name, module, sharing, originals[entry.name].weight.detach(), s_options,
                             bit_menu, uniform_menu if alone else []))

    tensors: list[_Tensor] = []
    if dense_menu:
        coded = set()
        for m in work.modules():
            if isinstance(m, SINRLinear):
                coded |= {id(m.values), id(m.indices)}
        original_state = model.state_dict()
        for key, p in work.named_parameters():  # each parameter once, under its first name
            owner, _, leaf = key.rpartition(".")
            marked = get_storage(work.get_submodule(owner) if owner else work, leaf)
            # integer-stored tensors (hash-grid latents) and stepped tables are not on a uniform grid
            if id(p) in coded or not p.is_floating_point() or not isinstance(marked, UniformQuantizer):
                continue
            tensors.append(_Tensor(key, original_state[key].float(), dense_menu))

    def codes_for(layer: _Layer, s: int) -> CodedTensor:
        if s not in layer.codes:
            # raw float codes depend on the weight and the dictionary settings, never on value bits
            key = (layer.name, s, config.k2, config.dict_ratio, config.seed, config.mode, config.flatten_below,
                   config.coder)
            cached = code_cache.get(key) if code_cache is not None else None
            if cached is None or not torch.equal(cached[0], layer.weight):
                codes = encode_tensor(layer.weight, s=s, k2=config.k2, dict_ratio=config.dict_ratio,
                                      seed=config.seed, mode=config.mode, flatten_below=config.flatten_below,
                                      coder=config.coder, value_bits=32, names=[layer.name])
                cached = (layer.weight.detach().clone(), codes)
                if code_cache is not None:
                    code_cache[key] = cached
            layer.codes[s] = cached[1]
        return layer.codes[s]

    def variant(layer: _Layer, s: int, bits: int) -> SINRLinear:
        """The layer's codes at (s, bits), quantized exactly as compress_model would."""
        if (s, bits) not in layer.variants:
            layer.variants[(s, bits)] = SINRLinear.from_codes(codes_for(layer, s)).requantize_(bits)
        return layer.variants[(s, bits)]

    def apply(layer: _Layer, s: int, bits: int) -> None:
        """Set the working copy's layer (and every module sharing its codes) to (s, bits)."""
        fresh = variant(layer, s, bits)
        # Copies: the cached variant must survive whatever evaluate() does to the working copy.
        layer.module.values.data = fresh.values.data.to(layer.module.values.device, copy=True)
        layer.module.indices.data = fresh.indices.to(layer.module.indices.device, copy=True)
        for m in layer.sharing:
            m.spec = fresh.spec
            m._cache = None

    def coded_bytes(layer: _Layer, s: int, bits: int) -> int:
        if (s, bits) not in layer.sizes:
            fresh = variant(layer, s, bits)
            layer.sizes[(s, bits)] = round(codes_bytes(fresh.codes(), index_coding=config.index_coding,
                                                       symbol_coding=config.symbol_coding,
                                                       brotli_quality=config.brotli_quality))
        return layer.sizes[(s, bits)]

    def dense_variant(layer: _Layer, bits: int) -> nn.Linear:
        """The layer as compress_model leaves an excluded linear whose weight has a ``bits`` grid:
        the original weight on its own fitted grid, the bias as SINR's layer stores it (the same
        dense grid either way)."""
        if bits not in layer.dense:
            grid = UniformQuantizer.fit(layer.weight, bits)
            sinr = layer.module
            linear = nn.Linear(sinr.in_features, sinr.out_features, bias=sinr.bias is not None,
                               device=layer.weight.device, dtype=layer.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(grid.round_trip(layer.weight).reshape(layer.weight.shape))
                if sinr.bias is not None:
                    linear.bias.copy_(sinr.bias)
            linear.train(sinr.training)
            layer.dense[bits] = linear
            layer.dense_sizes[bits] = round(uniform_bytes(linear.weight.detach(), grid,
                                                          symbol_coding=config.symbol_coding,
                                                          brotli_quality=config.brotli_quality))
        return layer.dense[bits]

    def bytes_at(layer: _Layer, state: tuple[int, int, int | None]) -> int:
        s_at, bits_at, uniform_at = state
        if uniform_at is not None:
            bits = layer.uniform_options[uniform_at]
            dense_variant(layer, bits)
            return layer.dense_sizes[bits]
        return coded_bytes(layer, layer.s_options[s_at], layer.bit_options[bits_at])

    def install(layer: _Layer, state: tuple[int, int, int | None]) -> None:
        """Put the layer in ``state`` into the working copy (SINR codes, or the dense linear)."""
        s_at, bits_at, uniform_at = state
        if uniform_at is not None:
            set_module(work, layer.name, dense_variant(layer, layer.uniform_options[uniform_at]))
            return
        set_module(work, layer.name, layer.module)
        apply(layer, layer.s_options[s_at], layer.bit_options[bits_at])

    def tensor_bytes(item: _Tensor, at: int) -> int:
        bits = item.widths[at]
        if bits not in item.sizes:
            grid = item.grid(bits)
            item.sizes[bits] = round(uniform_bytes(grid.round_trip(item.original).reshape(item.original.shape), grid,
                                                   symbol_coding=config.symbol_coding,
                                                   brotli_quality=config.brotli_quality))
        return item.sizes[bits]

    def install_tensor(item: _Tensor, at: int) -> None:
        """Write the tensor at width ``at`` into the module that owns it in the working copy now."""
        owner = work.get_submodule(item.owner) if item.owner else work
        grid = item.grid(item.widths[at])
        with torch.no_grad():
            getattr(owner, item.leaf).data.copy_(grid.round_trip(item.original).reshape(item.original.shape))
        set_storage(owner, item.leaf, grid)

    owned = {}  # layer name -> its dense tensors (a bias follows the layer into its uniform form)
    for item in tensors:
        owned.setdefault(item.owner, []).append(item)

    def install_layer(layer: _Layer, state: tuple[int, int, int | None]) -> None:
        install(layer, state)
        for item in owned.get(layer.name, []):
            install_tensor(item, item.at)

    def moves(layer: _Layer):
        """The states below the layer's: one notch of s or value bits, to uniform, narrower grids."""
        s_at, bits_at, uniform_at = layer.state
        if uniform_at is not None:
            # every narrower grid, not just the next: a grid that codes the weight exactly (a model
            # trained at 4 bits) may sit past a lossy one (6 bits) that the search would not take
            for narrower in range(uniform_at + 1, len(layer.uniform_options)):
                yield s_at, bits_at, narrower
            return
        if s_at + 1 < len(layer.s_options):
            yield s_at + 1, bits_at, None
        if bits_at + 1 < len(layer.bit_options):
            yield s_at, bits_at + 1, None
        if layer.uniform_options and (not sinr or sum(other.uniform_at is None for other in layers) > 1):
            # the richest grid that saves bytes against the layer's codes now; narrower ones follow
            now = bytes_at(layer, layer.state)
            cheaper = [i for i in range(len(layer.uniform_options)) if bytes_at(layer, (s_at, bits_at, i)) < now]
            if cheaper:
                yield s_at, bits_at, cheaper[0]

    for layer in layers:
        apply(layer, *layer.setting)
    for item in tensors:
        install_tensor(item, 0)
    # Everything in the file that autotune does not change (unsearched tensors, container).
    rest = (_file_bytes(work) - sum(coded_bytes(layer, *layer.setting) for layer in layers)
            - sum(tensor_bytes(item, 0) for item in tensors))
    if not sinr:
        for layer in layers:
            layer.uniform_at = 0
            install_layer(layer, layer.state)

    def total_bytes() -> int:
        return (rest + sum(bytes_at(layer, layer.state) for layer in layers)
                + sum(tensor_bytes(item, item.at) for item in tensors))

    current = score(work)
    evaluations = 2  # the original and the richest setting
    floor = reference - target.drop if isinstance(target, MaxDrop) else -math.inf
    history: list[dict] = []
    start = floor if start_floor is None else max(floor, start_floor)

    def start_on_grids() -> None:
        """Move layers to their widest grid, the best-scoring move first, while the start misses."""
        nonlocal current, evaluations
        while current < start:
            on_sinr = [layer for layer in layers if layer.uniform_at is None]
            movable = [layer for layer in on_sinr if layer.uniform_options]
            if not movable or (sinr and len(on_sinr) < 2):
                return
            best = None
            for layer in movable:
                now = layer.state
                install_layer(layer, (now[0], now[1], 0))
                value = score(work)
                evaluations += 1
                install_layer(layer, now)
                if best is None or value > best[0]:
                    best = (value, layer)
            current, layer = best
            layer.state = (layer.s_at, layer.bits_at, 0)
            install_layer(layer, layer.state)
            history.append({"layer": layer.name, "coding": "uniform", "bits": layer.uniform_options[0],
                            "score": current, "bytes": total_bytes(), "start": True})

    start_on_grids()
    if current < floor:
        grids = " (and every other layer on its widest grid)" if history else ""
        raise SINRError(f"target {target} cannot be met: even the richest setting (s_ratio {ratio_menu[0]}, "
                        f"{bit_menu[0]}-bit values{grids}) scores {current:.4g} against the original's "
                        f"{reference:.4g}; try a larger dict_ratio, or fine-tune the codes (torch_sinr.tune.finetune)")

    def fits_budget() -> bool:
        return isinstance(target, ByteBudget) and total_bytes() <= target.max_bytes

    bar = tqdm(desc="autotune", disable=not progress, unit="eval", total=None)
    try:
        while not fits_budget():
            best = None  # (priority, item, move, score, bytes)
            candidates = [(layer, at, bytes_at(layer, layer.state) - bytes_at(layer, at), install_layer, layer.state)
                          for layer in layers for at in list(moves(layer))]
            # every narrower width of a tensor, as for a layer's grids: an exact one may sit past a lossy one
            candidates += [(item, at, tensor_bytes(item, item.at) - tensor_bytes(item, at), install_tensor, item.at)
                           for item in tensors for at in range(item.at + 1, len(item.widths))]
            for item, at, saved, put, now in candidates:
                if saved <= 0:
                    continue
                if evaluations >= max_evaluations:
                    raise SINRError(f"autotune used its {max_evaluations} evaluations before meeting {target}; "
                                    f"raise max_evaluations or use coarser s_ratios / value_bits menus")
                put(item, at)
                candidate = score(work)
                evaluations += 1
                bar.update(1)
                put(item, now)
                if candidate < floor:
                    continue
                lost = current - candidate
                # Free moves (no score lost) first, largest saving first; then bytes per score.
                priority = (1, saved, 0.0) if lost <= 0 else (0, saved / lost, -lost)
                if best is None or priority > best[0]:
                    best = (priority, item, at, candidate, saved, put)
            if best is None:
                break
            _, item, at, candidate, saved, put = best
            if isinstance(item, _Tensor):
                item.at = at
                move = {"layer": item.key, "coding": "dense", "bits": item.widths[at]}
            else:
                item.state = at
                if item.uniform_at is None:
                    move = {"layer": item.name, "coding": "sinr", "s": item.setting[0], "value_bits": item.setting[1]}
                else:
                    move = {"layer": item.name, "coding": "uniform", "bits": item.uniform_options[item.uniform_at]}
            put(item, at)
            current = candidate
            history.append({**move, "score": candidate, "bytes": total_bytes()})
            bar.set_postfix(score=f"{current:.3f}", bytes=total_bytes())
    finally:
        bar.close()
    if isinstance(target, ByteBudget) and not fits_budget():
        raise SINRError(f"target {target} cannot be met: the smallest setting on the menus needs about "
                        f"{total_bytes()} bytes; add smaller s_ratios or value_bits, or exclude fewer layers")

    choices = {layer.name: layer.setting for layer in layers if layer.uniform_at is None}
    uniform = {layer.name: layer.uniform_options[layer.uniform_at] for layer in layers if layer.uniform_at is not None}
    # Exact-name patterns: "net.2" alone would also match a "...net.2" elsewhere in the model.
    exact = {name: "re:" + re.escape(name) for name in uniform}
    tuned = replace(config, s=None, s_pattern={name: s for name, (s, _) in choices.items()},
                    value_bits_pattern={name: b for name, (_, b) in choices.items()})
    dense = {item.key: item.widths[item.at] for item in tensors}
    if uniform or dense:
        tuned = replace(tuned, exclude_modules=as_patterns(config.exclude_modules) + list(exact.values()),
                        dense_bits_pattern={**config.dense_bits_pattern,
                                            **{exact[name] + r"\.weight": bits for name, bits in uniform.items()},
                                            **{"re:" + re.escape(key): bits for key, bits in dense.items()}})
    report = install_config(model, tuned)
    final = score(model)
    evaluations += 1
    return AutotuneResult(config=tuned, report=report, reference_score=reference, score=final,
                          file_bytes=_file_bytes(model), choices=choices, evaluations=evaluations,
                          history=history, uniform=uniform, dense=dense, seconds=time.perf_counter() - started)


def install_config(model: nn.Module, config: SINRConfig) -> CompressionReport:
    """``compress_model(model, config)``; for a config that leaves no layer to SINR (the baseline of
    ``sinr=False``), every tensor put on its grid instead (``store_dense``), the file measured."""
    if not plan_targets(model, config).matched:
        report = store_dense(model, config)
        fill_file_bytes(model, report, require_codes=False)
        return report
    return compress_model(model, config, progress=False)


def _file_bytes(model: nn.Module) -> int:
    # the bytes save_compressed would write, without writing them (a model without SINR layers too)
    return encoded_size(model, require_codes=False)[0]
