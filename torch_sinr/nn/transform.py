"""code_model / decompress_model: walk any nn.Module and swap its linears, peft-style.

Order of work, so a failure never leaves a half-modified model:
1. validate the config and resolve targets (names, regex, exclusions, input layers, tied weights);
2. run the caller's check (the file's: every tensor storable, finite) and code every target;
3. only then replace modules and round the remaining parameters to how the file stores them
   (a uniform grid at ``dense_bits`` by default, or ``dense_dtype``), recorded per tensor.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.coders.omp import omp_progress
from ..core.quantization import StepQuantizer
from ..core.tensor_codes import encode_tensors, relative_error
from ..errors import SINRAlreadyCompressedError, SINRConfigError
from .config import SINRConfig
from .handlers import compressed_handler, handler_for, is_compressed
from .layer import SINRLinear
from .matching import as_patterns, is_regex, lookup, matches, matches_any, regex_hint, unused_patterns
from .report import CompressionReport, LayerReport, TargetPlan
from .storage import DTYPE_STORAGE, INTEGER_STORAGE, get_storage, round_to_storage, set_storage

_PROGRESS_MIN_LAYERS = 8


def _codable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every name under which a module some handler can code is reachable (shared ones included)."""
    return {name: m for name, m in model.named_modules(remove_duplicate=False) if name and handler_for(m)}


def _compressed_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules(remove_duplicate=False) if name and is_compressed(m)}


def _input_layers(candidates: dict[str, nn.Module], config: SINRConfig) -> set[str]:
    """Names of the input layers, which stay dense unless named explicitly.

    Two rules (either suffices): fan-in <= ``input_fan_in_max`` (raw coordinates), and, with
    ``keep_first_linear``, the first codable module in the model's order, which in an INR is
    fed by the model's input: coordinates, or their positional / Fourier / hash-grid encoding
    (fan-in 2 * 2 * frequencies + 2 = 34 for 8 frequencies, past any fan-in bound that still
    lets hidden layers be coded)."""
    names = {n for n, m in candidates.items() if handler_for(m).fan_in(m) <= config.input_fan_in_max}
    if config.keep_first_linear and candidates:
        first = next(iter(candidates.values()))
        names |= {n for n, m in candidates.items() if m is first}
    return names


def plan_targets(model: nn.Module, config: SINRConfig) -> TargetPlan:
    """Which modules ``compress_model`` would code (a dry run; the model is not touched)."""
    config.validate()
    if handler_for(model) is not None or is_compressed(model):
        raise SINRConfigError(f"the model itself is a {type(model).__name__}: wrap it in a module, "
                              f"or use SINRLinear.from_linear")
    candidates = _codable_modules(model)
    compressed = list(_compressed_modules(model))
    explicit = isinstance(config.target_modules, (list, tuple))
    targets = as_patterns(config.target_modules)
    if explicit:
        for name, module in model.named_modules(remove_duplicate=False):
            if (name and name in targets and handler_for(module) is None and not is_compressed(module)):
                raise SINRConfigError(
                    f"target {name!r} is a {type(module).__name__}; SINR replaces "
                    f"{', '.join(h.__name__ for h in _dense_types())} modules only "
                    f"(name the linears inside it, or use a 're:' regex)")
    everything = list(candidates) + compressed
    missing = unused_patterns(targets, everything)
    if missing:
        raise SINRConfigError(f"target modules {missing} not found among the model's linears: {sorted(candidates)}"
                              + "".join(regex_hint(p) for p in missing))
    unknown = unused_patterns(config.exclude_modules, everything)
    if unknown:
        raise SINRConfigError(f"exclude_modules {unknown} name no module of the model (its linears: "
                              f"{sorted(candidates)})" + "".join(regex_hint(p) for p in unknown))
    inputs = _input_layers(candidates, config)
    named = [n for n in candidates if explicit and n in targets]
    matched, excluded, kept_dense, unmatched = [], [], [], []
    for name in candidates:
        if matches_any(name, config.exclude_modules):
            excluded.append(name)
        elif not matches_any(name, config.target_modules):
            unmatched.append(name)
        elif name in inputs and name not in named:
            kept_dense.append(name)
        else:
            matched.append(name)
    return TargetPlan(matched, excluded, kept_dense, unmatched, already_compressed=compressed)


def _dense_types() -> list[type]:
    from .handlers import _HANDLERS

    return [h.dense_type for h in _HANDLERS]


def _s_for(name: str, config: SINRConfig) -> int | None:
    return lookup(name, config.s_pattern, config.s)


def _bits_for(name: str, config: SINRConfig) -> int:
    return lookup(name, config.value_bits_pattern, config.value_bits)


@dataclass
class _Target:
    names: list[str]  # every name the same module is reachable under
    module: nn.Linear
    tied_to: str | None = None  # first name of the module whose weight this one shares


def refuse_compressed(model: nn.Module, config: SINRConfig) -> TargetPlan:
    """Raise ``SINRAlreadyCompressedError`` if ``model`` holds SINR layers; else return the plan.

    Callers that search over many codings (``torch_sinr.compress``) ask first: a probe that
    failed on an already compressed model would read as a target that cannot be met.
    """
    plan = plan_targets(model, config)
    if plan.already_compressed and not plan.matched:
        raise SINRAlreadyCompressedError(
            f"the model is already SINR-compressed ({len(plan.already_compressed)} compressed layers: "
            f"{plan.already_compressed[:4]}{' ...' if len(plan.already_compressed) > 4 else ''}) and has nothing "
            f"left to code; decompress_model(model) first to code it again with other settings")
    if plan.already_compressed:
        raise SINRAlreadyCompressedError(
            f"the model is already SINR-compressed (layers {plan.already_compressed[:4]}); coding its remaining "
            f"linears {plan.matched[:4]} would mix two configurations in one file: decompress_model(model) "
            f"first, then compress it once")
    return plan


def _warn_regex_inputs(plan: TargetPlan, config: SINRConfig) -> None:
    """A regex that spans an input layer keeps it dense (only an exact name codes one): say so.

    ``re:net\\.[0-6]`` reads as "these layers"; silently leaving ``net.0`` out of it would
    surprise the user who wrote it, and coding it would cost the quality the paper keeps."""
    regexes = [p for p in as_patterns(config.target_modules) if is_regex(p)]
    spanned = [n for n in plan.kept_dense if any(matches(n, p) for p in regexes)]
    if spanned:
        warnings.warn(f"{spanned} matched the target regex but {'is' if len(spanned) == 1 else 'are'} kept dense as "
                      f"input layer{'s' if len(spanned) > 1 else ''} (fed by coordinates or their encoding); a regex "
                      f"never codes an input layer: name {'it' if len(spanned) == 1 else 'them'} exactly in "
                      f"target_modules to code {'it' if len(spanned) == 1 else 'them'} (with a warning)", stacklevel=5)


def _resolve(model: nn.Module, config: SINRConfig) -> list[_Target]:
    plan = refuse_compressed(model, config)
    _warn_regex_inputs(plan, config)
    if not plan.matched:
        raise SINRConfigError(
            f"no module to compress: target_modules={config.target_modules!r} matched nothing "
            f"(excluded: {plan.excluded}, kept dense as input layers: {plan.kept_dense}, unmatched: {plan.unmatched})")
    linears = _codable_modules(model)
    by_module: dict[int, _Target] = {}
    for name in plan.matched:
        module = linears[name]
        if id(module) in by_module:
            by_module[id(module)].names.append(name)
        else:
            by_module[id(module)] = _Target([name], module)
    # A module reachable under a matched and an unmatched name cannot be half replaced.
    matched = set(plan.matched)
    for name, module in linears.items():
        if id(module) in by_module and name not in matched:
            raise SINRConfigError(f"module {by_module[id(module)].names[0]!r} is also reachable as {name!r}, "
                                  f"which is not targeted; target or exclude both names")
    # Tied weights: one Parameter owned by several targeted linears is coded once.
    owners: dict[int, list[str]] = {}
    for pname, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(pname)
    first_by_weight: dict[int, _Target] = {}
    targets = list(by_module.values())
    for target in targets:
        weight = handler_for(target.module).weight(target.module)
        allowed = {f"{n}.weight" for t in targets if t.module.weight is weight for n in t.names}
        strangers = [o for o in owners.get(id(weight), []) if o not in allowed]
        if strangers:
            raise SINRConfigError(f"weight of {target.names[0]!r} is tied to {strangers}, which are not "
                                  f"targeted linears; target both or exclude both")
        if id(weight) in first_by_weight:
            target.tied_to = first_by_weight[id(weight)].names[0]
        else:
            first_by_weight[id(weight)] = target
    return targets


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` of ``model`` (replacing what was there)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def code_model(model: nn.Module, config: SINRConfig | None = None, *, progress: bool | None = None,
               check: Callable[[nn.Module], None] | None = None) -> CompressionReport:
    """Replace the targeted ``nn.Linear`` modules of ``model`` by ``SINRLinear``, in place.

    Every check and all coding happen before the first module is replaced; ``check(model)``
    runs once the targets are resolved, before any coding (``torch_sinr.api.compress_model``
    passes the file's check that every tensor can be stored). The report's file bytes stay 0:
    measuring the file is the format's job (``torch_sinr.api.compress_model`` does both).
    """
    config = (config or SINRConfig()).validate()
    started = time.perf_counter()
    targets = _resolve(model, config)
    if check is not None:
        check(model)
    coded_targets = [t for t in targets if t.tied_to is None]
    names = [t.names[0] for t in coded_targets]
    show = progress if progress is not None else len(coded_targets) >= _PROGRESS_MIN_LAYERS
    codes = []
    timings = []
    # Code layer by layer when a progress bar is wanted; otherwise all at once (batched OMP).
    chunks = [[i] for i in range(len(coded_targets))] if show else [list(range(len(coded_targets)))]
    for chunk in tqdm(chunks, desc="SINR coding", disable=not show, unit="layer"):
        t0 = time.perf_counter()
        with omp_progress(progress):
            codes += encode_tensors(
                [handler_for(coded_targets[i].module).weight(coded_targets[i].module).detach() for i in chunk],
                names=[names[i] for i in chunk], s=[_s_for(names[i], config) for i in chunk],
                s_ratio=config.s_ratio, target_error=config.target_error, k2=config.k2,
                dict_ratio=config.dict_ratio, seed=config.seed, mode=config.mode,
                flatten_below=config.flatten_below, coder=config.coder,
                value_bits=[_bits_for(names[i], config) for i in chunk])
        timings += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
    _warn_explicit_inputs(model, config, names)

    # --- from here on the model is modified; nothing below raises on user input -------------
    report = CompressionReport()
    new_modules: dict[int, SINRLinear] = {}
    for target, code, seconds in zip(coded_targets, codes, timings):
        old = target.module
        layer = handler_for(old).build(old, code, _stored_bias(old, config, target.names[0]))
        _keep_bias_storage(layer, old, config, target.names[0])
        layer.train(old.training)
        layer.values.requires_grad_(config.trainable)
        new_modules[id(old)] = layer
        report.layers.append(_layer_report(target.names[0], layer, old, seconds))
        report.layers[-1].seconds_measured = show  # coded alone (progress bar) or as part of one batch
    for target in targets:
        if target.tied_to is not None:
            source = new_modules[id(next(t for t in targets if target.tied_to in t.names).module)]
            layer = _tied_copy(source, target.module, config, target.names[0])
            new_modules[id(target.module)] = layer
            report.layers.append(_layer_report(target.names[0], layer, target.module, 0.0, tied_to=target.tied_to))
        for name in target.names:
            set_module(model, name, new_modules[id(target.module)])
    _round_dense_state(model, config, report)
    model.sinr_config = config
    report.seconds = time.perf_counter() - started
    return report


def _warn_explicit_inputs(model: nn.Module, config: SINRConfig, coded: list[str]) -> None:
    """Input layers are coded only when named explicitly; say what that usually costs."""
    inputs = _input_layers(_codable_modules(model), config)
    for name in coded:
        if name in inputs:
            warnings.warn(f"{name!r} looks like an input layer (fed by coordinates or their encoding) and is coded "
                          f"because target_modules names it; input layers usually lose the most quality when coded "
                          f"(the paper keeps them dense)", stacklevel=4)



def _stored_bias(old: nn.Linear, config: SINRConfig, name: str) -> torch.Tensor | None:
    if old.bias is None:
        return None
    return round_to_storage(old.bias.detach(), config.dense_storage(old.bias, f"{name}.bias"))


def _keep_bias_storage(layer: SINRLinear, old: nn.Linear, config: SINRConfig, name: str) -> None:
    if old.bias is not None:
        set_storage(layer, "bias", config.dense_storage(old.bias, f"{name}.bias"))


def _tied_copy(source: SINRLinear, old: nn.Linear, config: SINRConfig, name: str) -> SINRLinear:
    """A SINRLinear sharing ``source``'s codes (same Parameter objects) with its own bias."""
    layer = SINRLinear(source.spec, bias=old.bias is not None, device=source.values.device,
                       dtype=source.values.dtype)
    layer.values, layer.indices = source.values, source.indices
    if old.bias is not None:
        with torch.no_grad():
            layer.bias.copy_(_stored_bias(old, config, name))
        _keep_bias_storage(layer, old, config, name)
    layer.train(old.training)
    return layer


def _layer_report(name: str, layer: SINRLinear, old: nn.Linear, seconds: float,
                  tied_to: str | None = None) -> LayerReport:
    bias_params = old.bias.numel() if old.bias is not None else 0
    # A tied layer stores only its bias (its codes are its source's).
    params = bias_params if tied_to else old.weight.numel() + bias_params
    with torch.no_grad():
        error = relative_error(old.weight, layer.decoded_weight())
    return LayerReport(
        name=name, shape=layer.spec.shape, mode=layer.spec.mode, s=layer.spec.s, k2=layer.spec.k2,
        value_bits=layer.spec.quantizer.bits, index_coding="", params=params,
        dense_bytes=old.weight.element_size() * params, coded_bytes=0, bits_values=0, bits_indices=0, bits_bias=0,
        rel_error=error, seconds=seconds, tied_to=tied_to)


def _round_dense_state(model: nn.Module, config: SINRConfig, report: CompressionReport) -> None:
    """Round every float tensor SINR does not code to how the file stores it, and record that
    storage on the module that owns the tensor (the writer and fine-tuning read it there)."""
    coded = set()
    for m in model.modules():
        if isinstance(m, SINRLinear):
            coded |= {id(m.values), id(m.indices)} | ({id(m.bias)} if m.bias is not None else set())
    seen = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        tensors = [(leaf, t, True) for leaf, t in module._parameters.items()]
        tensors += [(leaf, t, False) for leaf, t in module._buffers.items() if leaf not in module._non_persistent_buffers_set]
        for leaf, tensor, is_parameter in tensors:
            if tensor is None or id(tensor) in coded or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            name = f"{prefix}.{leaf}" if prefix else leaf
            report.dense_names.append(name)
            report.dense_bytes_other += tensor.numel() * tensor.element_size()
            if tensor.is_floating_point():
                # learned parameters are quantized; buffers (statistics, bounds, constants) kept exact;
                # a tensor the user marked as integers (hash-grid latents) stays integer-stored
                marked = get_storage(module, leaf)
                if marked == INTEGER_STORAGE or isinstance(marked, StepQuantizer):
                    storage = marked
                else:
                    storage = config.dense_storage(tensor, name) if is_parameter else DTYPE_STORAGE[tensor.dtype]
                with torch.no_grad():
                    tensor.data.copy_(round_to_storage(tensor.data, storage))
                set_storage(module, leaf, storage)


def store_dense(model: nn.Module, config: SINRConfig) -> CompressionReport:
    """Put every float tensor of ``model`` on the grid (or dtype) ``config`` stores it at, and
    record that storage, with no layer SINR-coded: what ``code_model`` does to the tensors it
    leaves dense, for a model that leaves them all (a uniform baseline written in the same file
    format, ``save_compressed(..., require_codes=False)``). In place."""
    config = (config or SINRConfig()).validate()
    refuse_compressed(model, config)
    started = time.perf_counter()
    report = CompressionReport()
    _round_dense_state(model, config, report)
    model.sinr_config = config
    report.seconds = time.perf_counter() - started
    return report


def decompress_model(model: nn.Module) -> nn.Module:
    """Replace every SINRLinear by the nn.Linear it computes, in place (tied codes stay tied)."""
    replacements: dict[int, nn.Linear] = {}
    shared_weights: dict[int, nn.Parameter] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        handler = compressed_handler(module)
        if handler is None or not name:
            continue
        if id(module) not in replacements:
            linear = handler.restore(module)
            key = id(module.values)
            if key in shared_weights:
                linear.weight = shared_weights[key]
            else:
                shared_weights[key] = linear.weight
            replacements[id(module)] = linear
        set_module(model, name, replacements[id(module)])
    if hasattr(model, "sinr_config"):
        del model.sinr_config
    return model
