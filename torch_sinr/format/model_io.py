"""Format v2, layer 3: a model to a file and back.

``save_compressed`` turns a compressed model into entries (one per tensor of its *dense*
state_dict: a SINR layer's codes are the entry ``<layer>.weight``), ``load_compressed`` puts a
file into a freshly built model after comparing names, dtypes and shapes with it,
``decode_state_dict`` gives plain dense tensors, ``read_compressed`` describes a file of any
version without decoding it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings

import torch
from torch import nn

from ..core.quantization import StepQuantizer, UniformQuantizer
from ..core.tensor_codes import CodedTensor, CodeSpec
from ..errors import SINRError, SINRFormatError, SINRInputError
from ..nn.layer import SINRLinear
from ..nn.report import CompressionReport
from ..nn.storage import (DTYPE_STORAGE, FLOAT_STORAGE, INTEGER_STORAGE, Storage, is_stored_exactly, set_storage,
                          storage_by_key)
from ..nn.transform import set_module
from . import container, schema
from .codec.entropy import FILE_QUALITY
from .kinds import Decoded, Item
from .report import FileReport, FileSummary

# load_compressed's budget: what the skeleton holds, a few times over, plus this much
_LOAD_HEADROOM = 256 << 20


# ----------------------------------------------------------------------------- the dense view
def _sinr_prefixes(model: nn.Module) -> dict[str, SINRLinear]:
    return {name: m for name, m in model.named_modules(remove_duplicate=False) if isinstance(m, SINRLinear) and name}


def dense_signature(model: nn.Module) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """(name, dtype, shape) of every tensor of the model's dense state_dict, in order: a
    SINRLinear counts as the nn.Linear it replaces."""
    layers = _sinr_prefixes(model)
    out = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        owner, _, leaf = key.rpartition(".")
        if owner in layers and leaf in ("values", "indices"):
            if leaf == "values":
                out.append((f"{owner}.weight", layers[owner].weight_dtype, tuple(layers[owner].spec.shape)))
            continue
        out.append((key, tensor.dtype, tuple(tensor.shape)))
    return out


def _default_storage(config, tensor: torch.Tensor, key: str) -> Storage:
    if config is not None:
        return config.dense_storage(tensor, key)
    return UniformQuantizer.fit(tensor.detach(), 16)


def model_items(model: nn.Module, require_codes: bool = True) -> list[Item]:
    """The entries ``model`` is written as, with every check a writer must make."""
    layers = _sinr_prefixes(model)
    # A model the library coded with no layer left to SINR (a per-layer choice that put every
    # layer on a grid, a uniform baseline) carries its config and storages: it is written as is.
    if not layers and require_codes and getattr(model, "sinr_config", None) is None:
        raise SINRError("the model has no SINRLinear layers: run compress_model first (or pass require_codes=False "
                        "to write a model whose tensors carry storages without SINR codes, e.g. a baseline)")
    config = getattr(model, "sinr_config", None)
    storages = storage_by_key(model)
    parameter_keys = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    items: list[Item] = []
    first_by_tensor: dict[int, int] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        owner, _, leaf = key.rpartition(".")
        if owner in layers and leaf == "indices":
            continue
        if owner in layers and leaf == "values":
            layer = layers[owner]
            name, shape = f"{owner}.weight", tuple(layer.spec.shape)
            if id(tensor) in first_by_tensor:
                items.append(Item(name, layer.weight_dtype, shape, "alias", first_by_tensor[id(tensor)]))
                continue
            first_by_tensor[id(tensor)] = len(items)
            items.append(Item(name, layer.weight_dtype, shape, "sinr", _layer_codes(name, layer)))
            continue
        if id(tensor) in first_by_tensor:
            items.append(Item(key, tensor.dtype, tuple(tensor.shape), "alias", first_by_tensor[id(tensor)]))
            continue
        first_by_tensor[id(tensor)] = len(items)
        if tensor.dtype not in schema.DTYPE_IDS:
            raise SINRInputError(f"cannot store {key!r}: unsupported dtype {tensor.dtype}")
        if tensor.is_floating_point():
            if not torch.isfinite(tensor.detach()).all():
                raise SINRInputError(f"cannot store {key!r}: it holds NaN or Inf")
            storage = storages.get(key)
            if storage is None and key not in parameter_keys:
                storage = DTYPE_STORAGE.get(tensor.dtype, "float32")  # buffers are stored exactly
            if storage is None:
                storage = _default_storage(config, tensor, key)
                if isinstance(storage, UniformQuantizer) and not is_stored_exactly(tensor, storage):
                    warnings.warn(f"{key}: has no storage setting (added after compress_model?); the file stores it "
                                  f"uniformly quantized at {storage.bits} bits, so the loaded model will differ")
            elif isinstance(storage, UniformQuantizer) and not is_stored_exactly(tensor, storage):
                # trained freely since compression: refit the grid rather than clamp to a stale range
                storage = UniformQuantizer.fit(tensor.detach(), storage.bits)
                warnings.warn(f"{key}: values are off their quantization grid; the file stores them requantized, "
                              f"so the loaded model will differ (finetune_codes trains through the grid; "
                              f"torch_sinr.nn.storage.requantize_dense_ snaps a freely trained model)")
            if storage == INTEGER_STORAGE:
                # never rounded silently: a latent off the integers means training did not go through them
                if not is_stored_exactly(tensor, storage):
                    raise SINRInputError(f"cannot store {key!r} as integers: it holds non-integer values "
                                         f"(round it, e.g. torch_sinr.nn.storage.requantize_dense_)")
                items.append(Item(key, tensor.dtype, tuple(tensor.shape), "integers", tensor))
            elif isinstance(storage, StepQuantizer):
                # as for integers: a value off its steps means training did not go through them
                if not is_stored_exactly(tensor, storage):
                    raise SINRInputError(f"cannot store {key!r}: it holds values off its StepQuantizer grid "
                                         f"(torch_sinr.nn.storage.requantize_dense_ snaps them)")
                items.append(Item(key, tensor.dtype, tuple(tensor.shape), "stepped", (tensor, storage)))
            elif isinstance(storage, UniformQuantizer):
                items.append(Item(key, tensor.dtype, tuple(tensor.shape), "uniform", (tensor, storage)))
            else:
                items.append(Item(key, tensor.dtype, tuple(tensor.shape), "raw", (tensor, FLOAT_STORAGE[storage])))
        else:
            items.append(Item(key, tensor.dtype, tuple(tensor.shape), "raw", (tensor, tensor.dtype)))
    return items


def _layer_codes(name: str, layer: SINRLinear) -> CodedTensor:
    spec = layer.spec
    values = layer.values.detach().cpu()
    if not torch.isfinite(values).all():
        raise SINRInputError(f"cannot store {name!r}: its values hold NaN or Inf")
    if not torch.equal(spec.quantizer.round_trip(values), values):
        warnings.warn(f"{name}: values are off their quantization grid (fine-tuned?); the file stores them "
                      f"quantized, so the loaded model will differ. Call requantize_() before saving.")
        spec = CodeSpec(spec.shape, spec.mode, spec.s, spec.dictionary, UniformQuantizer.fit(values, spec.quantizer.bits))
        values = spec.quantizer.round_trip(values)
    return CodedTensor(spec, layer.indices.detach().cpu(), values)


# ----------------------------------------------------------------------------- writing
def save_settings(model: nn.Module, names: bool | None, index_coding: str | None, symbol_coding: str | None,
                  brotli_quality: int | None) -> dict:
    config = getattr(model, "sinr_config", None)
    settings = {
        "names": names if names is not None else getattr(config, "store_names", True),
        "index_policy": index_coding or getattr(config, "index_coding", "auto"),
        "symbol_policy": symbol_coding or getattr(config, "symbol_coding", "auto"),
        "quality": brotli_quality if brotli_quality is not None else getattr(config, "brotli_quality", FILE_QUALITY),
    }
    if settings["index_policy"] not in schema.INDEX_POLICIES:
        raise SINRError(f"index_coding must be one of {schema.INDEX_POLICIES}, got {settings['index_policy']!r}")
    if settings["symbol_policy"] not in schema.SYMBOL_POLICIES:
        raise SINRError(f"symbol_coding must be one of {schema.SYMBOL_POLICIES}, got {settings['symbol_policy']!r}")
    if not (isinstance(settings["quality"], int) and 0 <= settings["quality"] <= 11):
        raise SINRError(f"brotli_quality must be an int in 0..11, got {settings['quality']!r}")
    return settings


def encode_items(items: list[Item], settings: dict) -> tuple[bytes, container.PayloadParts]:
    key = _payload_key(items, settings)
    if key is not None and _LAST_PAYLOAD is not None and _LAST_PAYLOAD[0] == key:
        return _LAST_PAYLOAD[1], copy.deepcopy(_LAST_PAYLOAD[2])
    payload, parts = container.encode_payload(items, names=settings["names"], quality=settings["quality"],
                                              index_policy=settings["index_policy"],
                                              symbol_policy=settings["symbol_policy"])
    _remember_payload(key, payload, parts)
    return payload, parts


# The last payload encoded and what it was encoded from. compress_model measures the file it
# would write (encoded_size), and the usual next call, save_compressed, encodes the very same
# state again: at Brotli quality 11 that second encode doubled the cost of compress-then-save.
# The key digests every byte the payload depends on, so an edited tensor never gets stale bytes.
_LAST_PAYLOAD: tuple[bytes, bytes, container.PayloadParts] | None = None
_PAYLOAD_CACHE_MAX_BYTES = 256 << 20


def forget_payload() -> None:
    """Drop the cached payload (tests of the writer encode from scratch)."""
    global _LAST_PAYLOAD
    _LAST_PAYLOAD = None


def _remember_payload(key: bytes | None, payload: bytes, parts: container.PayloadParts) -> None:
    global _LAST_PAYLOAD
    keep = key is not None and len(payload) <= _PAYLOAD_CACHE_MAX_BYTES
    _LAST_PAYLOAD = (key, payload, copy.deepcopy(parts)) if keep else None


def _digest_tensor(h, tensor: torch.Tensor) -> None:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    h.update(f"{flat.dtype}:{tuple(tensor.shape)}:".encode())
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy().data)


def _payload_key(items: list[Item], settings: dict) -> bytes | None:
    """A digest of everything ``encode_payload`` reads, or None for a kind it cannot vouch for."""
    h = hashlib.blake2b(digest_size=32)
    h.update(repr((schema.VERSION, sorted(settings.items()))).encode())
    for item in items:
        h.update(repr((item.name, str(item.dtype), tuple(item.shape), item.kind)).encode())
        data = item.data
        if item.kind == "alias":
            h.update(repr(data).encode())
        elif item.kind in ("raw", "uniform", "stepped"):
            tensor, storage = data
            h.update(repr(storage).encode())
            _digest_tensor(h, tensor)
        elif item.kind == "integers":
            _digest_tensor(h, data)
        elif item.kind == "sinr":
            spec = data.spec
            q = spec.quantizer
            h.update(repr((spec.shape, spec.mode, spec.s, spec.dictionary, q.bits, q.lo, q.hi)).encode())
            _digest_tensor(h, data.indices)
            _digest_tensor(h, data.values)
        else:
            return None
    return h.digest()


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    extra = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise SINRError("metadata must map str to str")
    return extra


def save_compressed(model: nn.Module, path: str | os.PathLike, *, names: bool | None = None,
                    index_coding: str | None = None, symbol_coding: str | None = None,
                    brotli_quality: int | None = None, metadata: dict[str, str] | None = None,
                    format_version: int = schema.VERSION, dense_dtype: str | None = None,
                    require_codes: bool = True) -> FileReport:
    """Write ``model`` (after ``compress_model``) to one .safetensors file; returns its byte report.

    Every tensor is written as it is in memory (values on their quantization grids), so the
    loaded model equals this one bit for bit, and the same model always gives the same bytes.
    ``names=False`` writes a *bare* file without tensor names (smaller; it decodes only with the
    model given). Settings left ``None`` come from the model (``compress_model``'s config, or the
    file it was loaded from). ``metadata`` adds str -> str entries that the decoder never reads.
    ``format_version=1`` writes the previous format, for readers that know only it.
    ``require_codes=False`` also writes a model without SINR layers (every tensor then goes by
    its storage record, or the default storage), e.g. the uncoded baseline of a comparison.
    """
    extra = _check_metadata(metadata)
    if format_version == 1:
        from . import v1

        dense_dtype = dense_dtype or getattr(getattr(model, "sinr_config", None), "dense_dtype", None) or "float32"
        return v1.save_compressed_v1(model, path, dense_dtype=dense_dtype, index_coding=index_coding,
                                     brotli_quality=brotli_quality, metadata=extra)
    if format_version != schema.VERSION:
        raise SINRError(f"format_version must be 1 or {schema.VERSION}, got {format_version!r}")
    if dense_dtype is not None:
        raise SINRError("dense_dtype is a format-1 option; in format 2 set SINRConfig(dense_dtype=...) before compressing")
    settings = save_settings(model, names, index_coding, symbol_coding, brotli_quality)
    items = model_items(model, require_codes)
    payload, parts = encode_items(items, settings)
    file_bytes = container.write_file(path, payload, extra)
    return FileReport.from_parts(str(path), file_bytes, parts, items)


def encoded_size(model: nn.Module, require_codes: bool = True, **settings) -> tuple[int, FileReport]:
    """Bytes the file of ``model`` would have (written nowhere), and its report."""
    chosen = save_settings(model, settings.get("names"), settings.get("index_coding"),
                           settings.get("symbol_coding"), settings.get("brotli_quality"))
    items = model_items(model, require_codes)
    payload, parts = encode_items(items, chosen)
    size = container.safetensors_size(len(payload))
    return size, FileReport.from_parts("<memory>", size, parts, items)


def fill_file_bytes(model: nn.Module, report: CompressionReport, require_codes: bool = True) -> None:
    """Fill ``report`` with the bytes of the file this model writes, by layer and in total
    (container included): what ``compress_model`` reports after ``code_model``."""
    size, file_report = encoded_size(model, require_codes)
    report.file_bytes = size
    report.file_parts = file_report.parts()
    by_entry = file_report.entries
    for layer in report.layers:
        values = by_entry.get(f"{layer.name}.weight", {})
        bias = by_entry.get(f"{layer.name}.bias", {})
        layer.bits_values = round(8 * values.get("values", 0))
        layer.bits_indices = round(8 * values.get("indices", 0))
        layer.bits_bias = round(8 * bias.get("biases", 0))
        layer.index_coding = values.get("index_coding", "tied" if layer.tied_to else "")
        layer.coded_bytes = round(sum(v for k, v in values.items() if k != "index_coding")
                                  + sum(v for k, v in bias.items() if k != "index_coding"))
    layered = {f"{l.name}.weight" for l in report.layers} | {f"{l.name}.bias" for l in report.layers}
    report.coded_bytes_other = round(sum(v for name, parts in by_entry.items() if name not in layered
                                         for k, v in parts.items() if k != "index_coding"))


def check_storable(model: nn.Module) -> None:
    """Raise if a tensor of ``model`` could not be written (dtype, NaN/Inf): run by
    ``compress_model`` before anything is modified."""
    for name, tensor in model.state_dict().items():
        if tensor.dtype not in schema.DTYPE_IDS:
            raise SINRInputError(f"cannot store {name!r}: unsupported dtype {tensor.dtype}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise SINRInputError(f"{name}: tensor of shape {tuple(tensor.shape)} has {bad} NaN/Inf entries")


def codes_bytes(codes: CodedTensor, *, index_coding: str = "auto", symbol_coding: str = "auto",
                brotli_quality: int = FILE_QUALITY) -> float:
    """Bytes one tensor's SINR codes take in a file (segments, range-coded share, side info)."""
    item = Item("w", codes.values.dtype, tuple(codes.spec.shape), "sinr", codes)
    _, parts = container.encode_payload([item], names=False, quality=brotli_quality, index_policy=index_coding,
                                        symbol_policy=symbol_coding)
    return sum(v for k, v in parts.entries["w"].items() if k != "index_coding")


def uniform_bytes(tensor: torch.Tensor, quantizer: UniformQuantizer, *, symbol_coding: str = "auto",
                  brotli_quality: int = FILE_QUALITY) -> float:
    """Bytes one tensor takes in a file on a uniform grid (its symbols and side info)."""
    item = Item("w", tensor.dtype, tuple(tensor.shape), "uniform", (tensor, quantizer))
    _, parts = container.encode_payload([item], names=False, quality=brotli_quality, symbol_policy=symbol_coding)
    return sum(v for k, v in parts.entries["w"].items() if k != "index_coding")


# ----------------------------------------------------------------------------- reading
def read_compressed(path: str | os.PathLike, *, skeleton: nn.Module | None = None,
                    budget_bytes: int = schema.DEFAULT_BUDGET_BYTES) -> FileSummary:
    """Open and validate a compressed file's record; raises ``SINRFormatError`` on anything wrong.

    Nothing is decoded: each tensor's bytes are the segment lengths its record declares, its side
    info, and its share of the range-coded segment by information content, computed from the
    stored models (``container.bytes_by_entry``). The cost is one read of the file and a parse of
    its record, which is under ``budget_bytes`` like decoding (``container.parse_payload``).
    The streams themselves are checked only when decoded (``decode_state_dict``)."""
    raw = container.read_file(path)
    if raw.version == 1:
        from . import v1

        return v1.summary(path, raw)  # reuses the bytes already read; parses JSON, decodes nothing
    signature = dense_signature(skeleton) if skeleton is not None else None
    parsed = container.parse_payload(raw.payload, signature, str(path), budget_bytes)
    tensors = []
    sizes = container.bytes_by_entry(parsed, str(path))
    for entry in parsed.entries:
        size = sizes[entry.name]
        info = {"name": entry.name, "kind": entry.kind, "dtype": str(entry.dtype).replace("torch.", ""),
                "shape": list(entry.shape), "segment_bytes": round(size["segments"] + size["range"]),
                "bytes": size["segments"] + size["range"] + size["side_info"]}
        p = entry.params
        if entry.kind == "sinr":
            spec = p.spec
            info.update(mode=spec.mode, s=spec.s, k2=spec.k2, seed=spec.dictionary.seed, value_bits=spec.quantizer.bits,
                        index_coding=f"{p.index_coding}({p.index_param})", value_coding=_coding_name(p.values))
        elif entry.kind == "uniform":
            info.update(bits=p.quantizer.bits, value_coding=_coding_name(p.symbols))
        elif entry.kind == "integers":
            info.update(first=p.first, bits=p.bits, value_coding=_coding_name(p.symbols) if p.symbols else "empty")
        elif entry.kind == "stepped":
            info.update(groups=len(p.groups), steps=list(p.quantizer.steps),
                        bits=[g.bits for g in p.groups],
                        value_coding=sorted({_coding_name(g.symbols) for g in p.groups if g.symbols} or {"empty"}))
        elif entry.kind == "raw":
            info.update(stored=str(p.stored).replace("torch.", ""))
        elif entry.kind == "alias":
            info.update(alias_of=parsed.entries[p].name)
        tensors.append(info)
    return FileSummary(str(path), raw.version, raw.file_bytes, raw.metadata, tensors, parsed.names_stored)


def _coding_name(params) -> str:
    from .symbols import NAMES

    return NAMES[params.coding]


def _skeleton_bytes(signature) -> int:
    return sum(int(torch.tensor(shape).prod()) * schema.element_size(dtype) if shape else schema.element_size(dtype)
               for _, dtype, shape in signature)


def decode_file(path: str | os.PathLike, raw: container.RawFile, signature=None, budget: int | None = None
                ) -> tuple[container.ParsedPayload, list[Decoded]]:
    """Parse and decode a format-2 file already read by ``container.read_file``."""
    if budget is None:
        budget = 4 * _skeleton_bytes(signature) + _LOAD_HEADROOM if signature is not None else schema.DEFAULT_BUDGET_BYTES
    parsed = container.parse_payload(raw.payload, signature, str(path), budget)
    return parsed, container.decode_payload(parsed, budget, str(path))


def decode_state_dict(path: str | os.PathLike, device=None, *, skeleton: nn.Module | None = None,
                      budget_bytes: int = schema.DEFAULT_BUDGET_BYTES) -> dict[str, torch.Tensor]:
    """A plain dense state_dict (``name.weight``, ``name.bias`` and the rest), for code without
    torch_sinr layers. Decoding may allocate at most ``budget_bytes`` (a file is untrusted input;
    raise it for large trusted files). Bare files need ``skeleton`` (the model they came from).
    Tied or shared tensors come back as one tensor under each name."""
    raw = container.read_file(path)
    if raw.version == 1:
        from . import v1

        return v1.decode_state_dict_v1(path, device, raw, budget_bytes)
    signature = dense_signature(skeleton) if skeleton is not None else None
    parsed = container.parse_payload(raw.payload, signature, str(path), budget_bytes)
    decoded = container.decode_payload(parsed, budget_bytes, str(path))
    state: dict[str, torch.Tensor] = {}
    dense: dict[int, torch.Tensor] = {}
    for index, (entry, value) in enumerate(zip(parsed.entries, decoded)):
        source = value.alias_of if value.alias_of is not None else index
        if source not in dense:
            tensor = value.codes.decode().to(entry.dtype) if value.codes is not None else value.tensor
            dense[source] = tensor.to(device) if device is not None else tensor
        state[entry.name] = dense[source]
    return state


def load_compressed(path: str | os.PathLike, model: nn.Module, *, device=None) -> nn.Module:
    """Restore a compressed file into ``model``, a freshly built model of the same architecture.

    Names, dtypes and shapes are compared with the model before any stream is decoded, and the
    model is modified only once everything has decoded. The file's SINR layers replace the
    model's linears of the same names; every other tensor is copied into the model, and the
    settings the file was written with are kept, so saving the loaded model gives the same bytes.
    """
    raw = container.read_file(path)
    if raw.version == 1:
        from . import v1

        return v1.load_compressed_v1(path, model, device=device, raw=raw)
    modules = dict(model.named_modules(remove_duplicate=False))
    signature = dense_signature(model)
    parsed, decoded = decode_file(path, raw, signature)
    # --- structural checks against the skeleton, still before any change ----------------------
    sinr_entries = {}
    for entry, value in zip(parsed.entries, decoded):
        if value.codes is None:
            continue
        owner, _, leaf = entry.name.rpartition(".")
        target = modules.get(owner)
        if leaf != "weight" or not isinstance(target, (nn.Linear, SINRLinear)):
            raise SINRFormatError(f"file codes {entry.name!r}, but {owner!r} is "
                                  f"{type(target).__name__ if target is not None else 'missing'} in the model, "
                                  f"not an nn.Linear")
        sinr_entries[owner] = (entry, value)
    # --- build the new layers ----------------------------------------------------------------
    built: dict[str, SINRLinear] = {}
    by_entry: dict[int, SINRLinear] = {}
    index_of = {e.name: i for i, e in enumerate(parsed.entries)}
    state_values = {e.name: v for e, v in zip(parsed.entries, decoded)}
    for owner, (entry, value) in sinr_entries.items():
        target = modules[owner]
        has_bias = target.bias is not None
        if value.alias_of is not None and modules[parsed.entries[value.alias_of].name.rpartition(".")[0]] is target:
            continue  # the same module under a second name: filled in below
        layer = SINRLinear(value.codes.spec, bias=has_bias, dtype=entry.dtype)  # the model's own dtype
        with torch.no_grad():
            if value.alias_of is not None and value.alias_of in by_entry:
                source = by_entry[value.alias_of]
                layer.values, layer.indices = source.values, source.indices  # tied codes
            else:
                layer.indices.copy_(value.codes.indices)
                layer.values.copy_(value.codes.values)
        layer.train(target.training)
        built[owner] = layer
        by_entry.setdefault(index_of[entry.name], layer)
    for owner, (entry, value) in sinr_entries.items():
        if owner not in built:
            source_owner = parsed.entries[value.alias_of].name.rpartition(".")[0]
            built[owner] = built[source_owner]
    if device is not None:
        for layer in {id(l): l for l in built.values()}.values():
            layer.to(device)
    # --- modify the model ----------------------------------------------------------------------

    for owner, layer in built.items():
        set_module(model, owner, layer)
    state = model.state_dict(keep_vars=True)
    owners = dict(model.named_modules(remove_duplicate=False))
    with torch.no_grad():
        for name, value in state_values.items():
            if value.codes is not None:
                continue
            state[name].copy_(value.tensor.to(state[name].device))
            if value.storage is not None:
                owner, _, leaf = name.rpartition(".")
                set_storage(owners[owner] if owner else model, leaf, value.storage)
    from ..nn.config import SINRConfig

    model.sinr_config = SINRConfig(index_coding=parsed.index_policy, symbol_coding=parsed.symbol_policy,
                                   store_names=parsed.names_stored, brotli_quality=parsed.quality)
    return model
