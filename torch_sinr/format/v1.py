"""Format version 1 (torch_sinr 0.1): its reader, kept so every v1 file keeps decoding, and its
writer (``save_compressed(..., format_version=1)``), for readers that know only v1.

Layout (format version 1):
- one uint8 tensor ``payload``: the concatenated byte streams (see ``bitstream``);
- string metadata: ``format`` ("torch_sinr"), ``format_version``, ``torch_sinr_version``,
  ``dictionary_generator`` and ``layout``, a JSON document listing every SINR layer (shape, mode,
  s, dictionary spec, quantizer, index coding, stream offsets) and every dense tensor (dtype,
  shape, stored precision, stream offset).

A file is untrusted input. safetensors guarantees sane offsets and no code execution; what the
metadata means is checked here, field by field, before anything is allocated or modified, and
any problem raises ``SINRFormatError``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .._version import __version__
from ..core.dictionary import GENERATOR, SUPPORTED_GENERATORS, DictionarySpec
from ..core.quantization import SUPPORTED_BITS, UniformQuantizer
from ..core.tensor_codes import MODES, CodeSpec
from ..errors import SINRError, SINRFormatError
from ..nn.layer import SINRLinear
from ..nn.storage import set_storage
from ..nn.transform import set_module
from .codec import entropy
from .codec.bitpack import unpack_cost
from .codec.indices import CODINGS
from .codec.indices import decode_cost as index_decode_cost
from .codec.indices import decoded_index_size
from .report import FileReport, FileSummary
from .v1_streams import (DTYPE_NAMES, decode_dense, decode_layer_indices, decode_values, itemsize, layer_streams,
                         tensor_to_bytes, torch_dtype)

DENSE_DTYPES = ("float32", "float16", "bfloat16")

FORMAT = "torch_sinr"
FORMAT_VERSION = 1
PAYLOAD = "payload"
# Bounds for hostile files: no dimension, count or decoded size beyond these is accepted.
MAX_DIM = 1 << 24
MAX_ELEMENTS = 1 << 31
MAX_DECODED_BYTES = 8 << 30
# Format-1 reading is under the same budget as format 2: the default of decode_state_dict
# (schema.DEFAULT_BUDGET_BYTES), and load_compressed's skeleton-sized one.
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_RESERVED_METADATA = ("format", "format_version", "torch_sinr_version", "dictionary_generator", "layout")


# ----------------------------------------------------------------------------- writing
def _sinr_layers(model: nn.Module) -> dict[str, SINRLinear]:
    return {name: m for name, m in model.named_modules(remove_duplicate=False) if isinstance(m, SINRLinear) and name}


def save_compressed_v1(model: nn.Module, path: str | os.PathLike, *, dense_dtype: str = "float32",
                       index_coding: str | None = None, brotli_quality: int | None = None,
                       metadata: dict[str, str] | None = None) -> FileReport:
    """Write ``model`` (after ``compress_model``) as a format-1 file; returns its byte report.

    Values already on their quantization grid are written exactly, so the loaded model equals
    the in-memory one bit for bit. Values moved off the grid (fine-tuning) are quantized here
    with a warning: call ``SINRLinear.requantize_()`` first to keep memory and file equal.
    ``metadata`` adds str -> str entries (e.g. provenance) beside the format's own keys, which
    it may not override; they are written as given and never interpreted by ``read_compressed``.
    """
    extra = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise SINRError("metadata must map str to str")
    reserved = sorted(set(extra) & set(_RESERVED_METADATA))
    if reserved:
        raise SINRError(f"metadata keys {reserved} are reserved for the file format")
    config = getattr(model, "sinr_config", None)
    index_coding = index_coding or (config.index_coding if config else "auto")
    quality = brotli_quality if brotli_quality is not None else (config.brotli_quality if config else entropy.DEFAULT_QUALITY)
    if dense_dtype not in DENSE_DTYPES:
        raise SINRError(f"dense_dtype must be one of {DENSE_DTYPES}, got {dense_dtype!r}")
    layers = _sinr_layers(model)
    if not layers:
        raise SINRError("the model has no SINRLinear layers: run compress_model first")
    payload = bytearray()
    report = FileReport(path=str(path), file_bytes=0)

    def add(stream: bytes, raw_size: int) -> list[int]:
        entry = [len(payload), len(stream), raw_size]
        payload.extend(stream)
        return entry

    sinr_entries, skip_keys, seen, seen_modules = [], set(), {}, {}
    for name, layer in layers.items():
        skip_keys.update({f"{name}.values", f"{name}.indices", f"{name}.bias"})
        if id(layer) in seen_modules:  # the same module under a second name: no streams at all
            sinr_entries.append({"name": name, "alias_of": seen_modules[id(layer)]})
            continue
        seen_modules[id(layer)] = name
        entry = {"name": name, "bias": dense_dtype if layer.bias is not None else None}
        tied = seen.get(id(layer.values))
        seen.setdefault(id(layer.values), name)
        spec = layer.spec
        if not torch.equal(spec.quantizer.round_trip(layer.values.detach().cpu()), layer.values.detach().cpu()):
            import warnings
            warnings.warn(f"{name}: values are off their quantization grid (fine-tuned?); the file stores them "
                          f"quantized, so the loaded model will differ. Call requantize_() before saving.")
            spec = CodeSpec(spec.shape, spec.mode, spec.s, spec.dictionary,
                            UniformQuantizer.fit(layer.values, spec.quantizer.bits))
        entry.update(_spec_to_json(spec))
        streams = layer_streams(layer, spec, dense_dtype, index_coding, quality)
        sizes = {"values": 0, "indices": 0, "bias": len(streams.bias or b"")}
        if tied is None:
            n = spec.n_vectors * spec.s
            entry["index_coding"] = [streams.index_coding, streams.index_param]
            entry["values_stream"] = add(streams.values, (n * spec.quantizer.bits + 7) // 8)
            entry["indices_stream"] = add(streams.indices, streams.raw_index_size)
            sizes.update(values=len(streams.values), indices=len(streams.indices))
        else:
            entry["tied_to"] = tied
        if streams.bias is not None:
            entry["bias_stream"] = add(streams.bias, layer.out_features * itemsize(dense_dtype))
        report.values_bytes += sizes["values"]
        report.indices_bytes += sizes["indices"]
        report.bias_bytes += sizes["bias"]
        report.layers[name] = sizes
        sinr_entries.append(entry)

    dense_entries, seen_tensors = [], {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key in skip_keys:
            continue
        original = DTYPE_NAMES.get(tensor.dtype)
        if original is None:
            raise SINRError(f"cannot store {key!r}: unsupported dtype {tensor.dtype}")
        stored = dense_dtype if tensor.is_floating_point() else original
        entry = {"name": key, "dtype": original, "stored": stored, "shape": list(tensor.shape)}
        if id(tensor) in seen_tensors:
            entry["tied_to"] = seen_tensors[id(tensor)]
        else:
            seen_tensors[id(tensor)] = key
            stream = entropy.compress(tensor_to_bytes(tensor, stored), quality)
            entry["stream"] = add(stream, tensor.numel() * itemsize(stored))
            report.other_bytes += len(stream)
        dense_entries.append(entry)

    layout = {"sinr": sinr_entries, "dense": dense_entries, "payload_bytes": len(payload)}
    metadata = {**extra, "format": FORMAT, "format_version": str(FORMAT_VERSION), "torch_sinr_version": __version__,
                "dictionary_generator": GENERATOR, "layout": json.dumps(layout, separators=(",", ":"))}
    tensor = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else torch.zeros(0, dtype=torch.uint8)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({PAYLOAD: tensor}, str(tmp), metadata=metadata)
    os.replace(tmp, path)  # never leave a half-written file under the final name
    report.file_bytes = path.stat().st_size
    return report


def _spec_to_json(spec: CodeSpec) -> dict:
    return {"shape": list(spec.shape), "mode": spec.mode, "s": spec.s, "k2": spec.k2, "seed": spec.dictionary.seed,
            "value_bits": spec.quantizer.bits, "lo": spec.quantizer.lo, "hi": spec.quantizer.hi}


# ----------------------------------------------------------------------------- reading
def _fail(where: str, message: str) -> SINRFormatError:
    return SINRFormatError(f"{where}: {message}")


def _get(entry: dict, key: str, kind, where: str, *, optional: bool = False):
    if key not in entry:
        if optional:
            return None
        raise _fail(where, f"missing field {key!r}")
    value = entry[key]
    if value is None and optional:
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        try:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        except OverflowError:  # a JSON integer beyond float range
            ok = False
    if not ok:
        raise _fail(where, f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _int(entry: dict, key: str, lo: int, hi: int, where: str) -> int:
    value = _get(entry, key, int, where)
    if not lo <= value <= hi:
        raise _fail(where, f"field {key!r}={value} is outside [{lo}, {hi}]")
    return value


def _stream(entry: dict, key: str, payload_size: int, where: str) -> tuple[int, int, int]:
    value = _get(entry, key, list, where)
    if len(value) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise _fail(where, f"{key} must be [offset, length, decoded_size] of non-negative ints")
    offset, length, raw = value
    if offset + length > payload_size:
        raise _fail(where, f"{key} [{offset}, {offset + length}) runs past the payload ({payload_size} bytes)")
    if raw > MAX_DECODED_BYTES:
        raise _fail(where, f"{key} declares {raw} decoded bytes, over the limit")
    return offset, length, raw


def _shape(entry: dict, key: str, where: str) -> tuple[int, ...]:
    shape = _get(entry, key, list, where)
    if len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape):
        raise _fail(where, f"{key} {shape} is not a valid shape")
    if math.prod(shape) > MAX_ELEMENTS:
        raise _fail(where, f"{key} {shape} has too many elements")
    return tuple(shape)


@dataclass
class _LayerRecord:
    name: str
    spec: CodeSpec
    bias_dtype: str | None
    index_coding: tuple[str, int] | None
    values_stream: tuple[int, int, int] | None
    indices_stream: tuple[int, int, int] | None
    bias_stream: tuple[int, int, int] | None
    tied_to: str | None


@dataclass
class _DenseRecord:
    name: str
    dtype: str
    stored: str
    shape: tuple[int, ...]
    stream: tuple[int, int, int] | None
    tied_to: str | None


def replace_name(record: _LayerRecord, name: str) -> _LayerRecord:
    return _LayerRecord(name, record.spec, record.bias_dtype, None, None, None, None, record.name)


def _parse_layer(entry, payload_size: int) -> _LayerRecord:
    if not isinstance(entry, dict):
        raise SINRFormatError("layout: a sinr entry is not an object")
    name = _get(entry, "name", str, "layout")
    where = f"layer {name!r}"
    shape = _shape(entry, "shape", where)
    if len(shape) != 2 or 0 in shape:
        raise _fail(where, f"shape {list(shape)} is not a 2-D weight shape")
    mode = _get(entry, "mode", str, where)
    if mode not in MODES:
        raise _fail(where, f"unknown mode {mode!r}")
    k1 = shape[1] if mode == "row" else shape[0] * shape[1]
    k2 = _int(entry, "k2", 1, MAX_ELEMENTS, where)
    s = _int(entry, "s", 1, min(k1, k2), where)
    bits = _get(entry, "value_bits", int, where)
    if bits not in SUPPORTED_BITS:
        raise _fail(where, f"value_bits={bits} is not supported")
    lo, hi = _get(entry, "lo", float, where), _get(entry, "hi", float, where)
    if bits != 32 and not (abs(float(lo)) <= _FLOAT32_MAX and abs(float(hi)) <= _FLOAT32_MAX and lo <= hi):
        # format-1 layers hold float32 values: a range beyond it decodes to Inf
        raise _fail(where, f"value range [{lo}, {hi}] is not ordered and representable in float32")
    seed = _int(entry, "seed", 0, 2**32 - 1, where)
    try:
        dictionary = DictionarySpec(seed=seed, k1=k1, k2=k2)
        quantizer = UniformQuantizer(bits, float(lo), float(hi))
        spec = CodeSpec(shape=shape, mode=mode, s=s, dictionary=dictionary, quantizer=quantizer)
    except SINRError as exc:
        raise _fail(where, str(exc)) from None
    if spec.n_vectors * s > MAX_ELEMENTS:
        raise _fail(where, "too many codes")
    bias_dtype = _get(entry, "bias", str, where, optional=True)
    if bias_dtype is not None and bias_dtype not in DENSE_DTYPES:
        raise _fail(where, f"bias dtype {bias_dtype!r} is not supported")
    tied_to = _get(entry, "tied_to", str, where, optional=True)
    coding = values_stream = indices_stream = None
    if tied_to is None:
        pair = _get(entry, "index_coding", list, where)
        if len(pair) != 2 or pair[0] not in CODINGS or not isinstance(pair[1], int) or isinstance(pair[1], bool):
            raise _fail(where, f"index_coding {pair!r} is not valid")
        coding = (pair[0], pair[1])
        values_stream = _stream(entry, "values_stream", payload_size, where)
        if values_stream[2] != (spec.n_vectors * s * bits + 7) // 8:
            raise _fail(where, "values stream size does not match shape, s and value_bits")
        indices_stream = _stream(entry, "indices_stream", payload_size, where)
        expected = decoded_index_size(coding[0], coding[1], spec.n_vectors, s, k2)
        if expected is not None and indices_stream[2] != expected:
            raise _fail(where, "indices stream size does not match its coding")
    bias_stream = None
    if bias_dtype is not None:
        bias_stream = _stream(entry, "bias_stream", payload_size, where)
        if bias_stream[2] != shape[0] * itemsize(bias_dtype):
            raise _fail(where, "bias stream size does not match out_features")
    return _LayerRecord(name, spec, bias_dtype, coding, values_stream, indices_stream, bias_stream, tied_to)


def _parse_dense(entry, payload_size: int) -> _DenseRecord:
    if not isinstance(entry, dict):
        raise SINRFormatError("layout: a dense entry is not an object")
    name = _get(entry, "name", str, "layout")
    where = f"tensor {name!r}"
    dtype, stored = _get(entry, "dtype", str, where), _get(entry, "stored", str, where)
    for d in (dtype, stored):
        if d not in DTYPE_NAMES.values():
            raise _fail(where, f"dtype {d!r} is not supported")
    if (stored != dtype) and not (torch_dtype(dtype).is_floating_point and stored in DENSE_DTYPES):
        raise _fail(where, f"cannot store {dtype} as {stored}")
    shape = _shape(entry, "shape", where)
    tied_to = _get(entry, "tied_to", str, where, optional=True)
    stream = None
    if tied_to is None:
        stream = _stream(entry, "stream", payload_size, where)
        if stream[2] != math.prod(shape) * itemsize(stored):
            raise _fail(where, "stream size does not match shape and dtype")
    return _DenseRecord(name, dtype, stored, shape, stream, tied_to)


@dataclass
class CompressedFile:
    """A validated compressed file, read fully into memory (it is small by construction)."""

    metadata: dict[str, str]
    layers: list[_LayerRecord]
    dense: list[_DenseRecord]
    payload: bytes
    file_bytes: int
    aliases: dict[str, str] = field(default_factory=dict)  # name -> layer it is the same module as

    def _slice(self, stream: tuple[int, int, int]) -> bytes:
        offset, length, _ = stream
        return self.payload[offset : offset + length]

    def layer_codes(self, record: _LayerRecord, by_name: dict[str, "_LayerRecord"]):
        source = by_name[record.tied_to] if record.tied_to else record
        where = f"layer {record.name!r}"
        values = _finite(decode_values(source.spec, self._slice(source.values_stream), where + " values"), where)
        indices = decode_layer_indices(source.spec, self._slice(source.indices_stream), *source.index_coding,
                                       source.indices_stream[2], where + " indices")
        bias = None
        if record.bias_stream is not None:
            bias = _finite(decode_dense(self._slice(record.bias_stream), record.bias_dtype, (record.spec.shape[0],),
                                        where + " bias").to(torch.float32), where + " bias")
        return indices, values, bias

    def dense_tensor(self, record: _DenseRecord, by_name: dict[str, "_DenseRecord"]) -> torch.Tensor:
        source = by_name[record.tied_to] if record.tied_to else record
        tensor = decode_dense(self._slice(source.stream), source.stored, source.shape, f"tensor {record.name!r}")
        return _finite(tensor.to(torch_dtype(record.dtype)), f"tensor {record.name!r}")


def decoded_bytes(cf: "CompressedFile") -> int:
    """Bytes decoding every layer and tensor of ``cf`` allocates at most, expansions included:
    streams decompressed and unpacked, indices decoded, the atoms the codes use, the dense
    weight A x (decode_state_dict computes it; load_compressed's layers on first use)."""
    total = 0
    for r in cf.layers:
        spec = r.spec
        count = spec.n_vectors * spec.s
        total += count * (8 + 4) + spec.k1 * min(spec.k2, count) * 8 + math.prod(spec.shape) * 4
        if r.values_stream is not None:
            total += r.values_stream[2] + unpack_cost(spec.quantizer.bits, count) + count * 4
        if r.indices_stream is not None:
            total += r.indices_stream[2] + index_decode_cost(r.index_coding[0], r.index_coding[1], r.indices_stream[2],
                                                             spec.n_vectors, spec.s, spec.k2)
        if r.bias_stream is not None:
            total += r.bias_stream[2] + spec.shape[0] * 8
    for r in cf.dense:
        numel = math.prod(r.shape)
        total += numel * (2 * itemsize(r.stored) + itemsize(r.dtype) + 1)
    return total


def _check_budget(cf: "CompressedFile", path, budget: int | None) -> None:
    if budget is None:
        return
    need = decoded_bytes(cf)
    if need > budget:
        raise SINRFormatError(f"{path}: decoding needs {need} bytes, over the budget of {budget} "
                              f"(pass a larger budget if the file is trusted)")


def _finite(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if tensor.is_floating_point() and tensor.numel() and not torch.isfinite(tensor).all():
        raise SINRFormatError(f"{what}: decodes to NaN or Inf")
    return tensor


def read_compressed_v1(path: str | os.PathLike, raw=None, budget: int | None = None) -> CompressedFile:
    """Open and validate a compressed file (raises SINRFormatError on anything wrong). With
    ``budget``, what decoding it would allocate is checked against it too."""
    from .container import read_file

    path = Path(path)
    raw = raw if raw is not None else read_file(path)  # the safetensors layer, checked once for every version
    if raw.version != 1:
        raise SINRFormatError(f"{path}: not a format-1 file")
    metadata = raw.metadata
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise SINRFormatError(f"{path}: format version {metadata.get('format_version')!r} is not supported by "
                              f"torch_sinr {__version__} (it reads version {FORMAT_VERSION})")
    if metadata.get("dictionary_generator") not in SUPPORTED_GENERATORS:
        raise SINRFormatError(f"{path}: unknown dictionary generator {metadata.get('dictionary_generator')!r}")
    try:
        layout = json.loads(metadata.get("layout", ""))
    except (ValueError, RecursionError):  # JSONDecodeError, int digit limit, nesting
        raise SINRFormatError(f"{path}: layout metadata is not valid JSON") from None
    if not isinstance(layout, dict) or not isinstance(layout.get("sinr"), list) or not isinstance(layout.get("dense"), list):
        raise SINRFormatError(f"{path}: layout must hold 'sinr' and 'dense' lists")
    payload = raw.payload
    if layout.get("payload_bytes") != len(payload):
        raise SINRFormatError(f"{path}: payload is {len(payload)} bytes, layout says {layout.get('payload_bytes')!r}")
    aliases: dict[str, str] = {}
    layer_entries = []
    for e in layout["sinr"]:
        if isinstance(e, dict) and "alias_of" in e:
            aliases[_get(e, "name", str, "layout")] = _get(e, "alias_of", str, "layout")
        else:
            layer_entries.append(e)
    layers = [_parse_layer(e, len(payload)) for e in layer_entries]
    dense = [_parse_dense(e, len(payload)) for e in layout["dense"]]
    names = [r.name for r in layers] + [r.name for r in dense] + list(aliases)
    if len(set(names)) != len(names):
        raise SINRFormatError(f"{path}: duplicate names in layout")
    coded = {r.name: r for r in layers}
    for alias, source in aliases.items():
        if source not in coded or coded[source].tied_to is not None:
            raise SINRFormatError(f"{path}: layer {alias!r} is an alias of {source!r}, which is not a coded layer")
    dense_keys = {r.name for r in dense}
    for r in [*layers, *(_LayerRecord(a, coded[src].spec, None, None, None, None, None, None) for a, src in aliases.items())]:
        clash = {f"{r.name}.weight", f"{r.name}.bias", f"{r.name}.values", f"{r.name}.indices"} & dense_keys
        if clash:
            raise SINRFormatError(f"{path}: layer {r.name!r} collides with dense tensors {sorted(clash)}")
    layer_names = {r.name: r for r in layers}
    for r in layers:
        if r.tied_to is not None:
            src = layer_names.get(r.tied_to)
            if src is None or src.tied_to is not None or src.spec != r.spec:
                raise SINRFormatError(f"{path}: layer {r.name!r} is tied to {r.tied_to!r}, which is not a compatible coded layer")
    dense_names = {r.name: r for r in dense}
    for r in dense:
        if r.tied_to is not None:
            src = dense_names.get(r.tied_to)
            if src is None or src.tied_to is not None or src.shape != r.shape or src.dtype != r.dtype:
                raise SINRFormatError(f"{path}: tensor {r.name!r} is tied to {r.tied_to!r}, which is not compatible")
    total = sum(r.spec.n_vectors * r.spec.s * 16 for r in layers) + sum(math.prod(r.shape) * 8 for r in dense)
    if total > MAX_DECODED_BYTES:
        raise SINRFormatError(f"{path}: declares {total} bytes of decoded tensors, over the limit")
    cf = CompressedFile(metadata, layers, dense, payload, raw.file_bytes, aliases)
    _check_budget(cf, path, budget)
    return cf


def _build_layers(cf: CompressedFile, device) -> tuple[dict[str, SINRLinear], dict[str, torch.Tensor]]:
    by_name = {r.name: r for r in cf.layers}
    built: dict[str, SINRLinear] = {}
    for record in sorted(cf.layers, key=lambda r: r.tied_to is not None):
        indices, values, bias = cf.layer_codes(record, by_name)
        from ..core.tensor_codes import CodedTensor
        from .kinds import check_codes_finite

        check_codes_finite(CodedTensor(record.spec, indices, values), torch.float32, f"layer {record.name!r}")
        layer = SINRLinear(record.spec, bias=bias is not None)
        with torch.no_grad():
            layer.indices.copy_(indices)
            layer.values.copy_(values)
            if bias is not None:
                layer.bias.copy_(bias)
        if record.tied_to is not None:
            layer.values, layer.indices = built[record.tied_to].values, built[record.tied_to].indices
        built[record.name] = layer.to(device) if device is not None else layer
    dense_by_name = {r.name: r for r in cf.dense}
    dense = {r.name: cf.dense_tensor(r, dense_by_name) for r in cf.dense}
    return built, dense


def load_compressed_v1(path: str | os.PathLike, model: nn.Module, *, device=None, raw=None) -> nn.Module:
    """Restore a compressed file into ``model``, a freshly built model of the same architecture.

    The file's SINR layers replace the model's linears of the same names; every other tensor
    is loaded into the model. Names and shapes must match exactly (a mismatch raises before
    anything is changed). Returns the model.
    """
    skeleton = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    cf = read_compressed_v1(path, raw, 4 * skeleton + (256 << 20))  # model_io's load budget
    modules = dict(model.named_modules(remove_duplicate=False))
    by_record = {r.name: r for r in cf.layers}
    for record in [*cf.layers, *(replace_name(by_record[src], a) for a, src in cf.aliases.items())]:
        target = modules.get(record.name)
        if not isinstance(target, (nn.Linear, SINRLinear)):
            raise SINRFormatError(f"file layer {record.name!r} has no nn.Linear of that name in the model "
                                  f"(found {type(target).__name__ if target is not None else 'nothing'})")
        shape = (target.out_features, target.in_features)
        if shape != record.spec.shape or (target.bias is not None) != (record.bias_dtype is not None):
            raise SINRFormatError(f"layer {record.name!r}: file has shape {record.spec.shape} "
                                  f"(bias={record.bias_dtype is not None}), model has {shape} (bias={target.bias is not None})")
    built, dense = _build_layers(cf, device)
    for alias, source in cf.aliases.items():
        built[alias] = built[source]
    # Expected state after replacement: the model's keys minus the replaced linears' own tensors.
    replaced = set(built)
    expected = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        owner = key.rpartition(".")[0]
        if owner in replaced:
            continue
        expected[key] = tensor
    missing = sorted(set(expected) - set(dense))
    unexpected = sorted(set(dense) - set(expected))
    if missing or unexpected:
        raise SINRFormatError(f"file does not match the model: missing from file {missing[:10]}, "
                              f"not in model {unexpected[:10]}")
    for key, tensor in dense.items():
        if tuple(expected[key].shape) != tuple(tensor.shape):
            raise SINRFormatError(f"tensor {key!r}: file has shape {tuple(tensor.shape)}, model has {tuple(expected[key].shape)}")
    # --- validated: modify the model --------------------------------------------------------

    originals = {name: modules[name] for name in built}
    for name, layer in built.items():
        layer.train(originals[name].training)
        set_module(model, name, layer)
    # Modules shared between two names become one SINRLinear again.
    by_original: dict[int, SINRLinear] = {}
    for name in built:
        first = by_original.setdefault(id(originals[name]), built[name])
        if first is not built[name]:
            set_module(model, name, first)
    state = model.state_dict(keep_vars=True)
    owners = dict(model.named_modules(remove_duplicate=False))
    stored = {r.name: r.stored for r in cf.dense}
    with torch.no_grad():
        for key, tensor in dense.items():
            state[key].copy_(tensor)
            if tensor.is_floating_point() and stored[key] in DENSE_DTYPES:  # re-saved as v2, stored the same way
                owner, _, leaf = key.rpartition(".")
                set_storage(owners[owner] if owner else model, leaf, stored[key])
    for record in cf.layers:
        if record.bias_dtype is not None:
            set_storage(built[record.name], "bias", record.bias_dtype)
    return model


def decode_state_dict_v1(path: str | os.PathLike, device=None, raw=None, budget: int | None = None
                         ) -> dict[str, torch.Tensor]:
    """A plain dense state_dict (``name.weight``, ``name.bias`` and the rest), for code without
    torch_sinr; decoding may allocate at most ``budget`` bytes (checked before anything is decoded)."""
    from ..core.tensor_codes import CodedTensor

    cf = read_compressed_v1(path, raw, budget)
    by_name = {r.name: r for r in cf.layers}
    state: dict[str, torch.Tensor] = {}
    for record in cf.layers:
        indices, values, bias = cf.layer_codes(record, by_name)
        weight = _finite(CodedTensor(record.spec, indices.to(device or "cpu"), values.to(device or "cpu")).decode(),
                         f"layer {record.name!r} dense weight A x")
        state[f"{record.name}.weight"] = weight
        if bias is not None:
            state[f"{record.name}.bias"] = bias.to(weight.device)
    for alias, source in cf.aliases.items():
        for leaf in ("weight", "bias"):
            if f"{source}.{leaf}" in state:
                state[f"{alias}.{leaf}"] = state[f"{source}.{leaf}"]
    dense_by_name = {r.name: r for r in cf.dense}
    for r in cf.dense:
        state[r.name] = cf.dense_tensor(r, dense_by_name).to(device or "cpu")
    return state


def summary(path, raw):
    """A version-agnostic description of a v1 file (see ``report.FileSummary``); decodes nothing
    (its JSON layout is parsed within the bounds ``read_compressed_v1`` checks)."""
    cf = read_compressed_v1(path, raw)
    tensors = []
    for r in cf.layers:
        s = r.spec
        sizes = sum(st[1] for st in (r.values_stream, r.indices_stream) if st is not None)
        info = {"name": f"{r.name}.weight", "kind": "sinr", "dtype": "float32", "shape": list(s.shape),
                "segment_bytes": sizes, "mode": s.mode, "s": s.s, "k2": s.k2, "seed": s.dictionary.seed,
                "value_bits": s.quantizer.bits,
                "index_coding": f"tied to {r.tied_to}" if r.tied_to else f"{r.index_coding[0]}({r.index_coding[1]})"}
        tensors.append(info)
        if r.bias_stream is not None:
            tensors.append({"name": f"{r.name}.bias", "kind": "raw", "dtype": "float32", "shape": [s.shape[0]],
                            "segment_bytes": r.bias_stream[1], "stored": r.bias_dtype})
    by_layer = {r.name: r for r in cf.layers}
    for alias, source in cf.aliases.items():
        tensors.append({"name": f"{alias}.weight", "kind": "alias", "dtype": "float32",
                        "shape": list(by_layer[source].spec.shape), "segment_bytes": 0, "alias_of": f"{source}.weight"})
        if by_layer[source].bias_dtype is not None:
            tensors.append({"name": f"{alias}.bias", "kind": "alias", "dtype": "float32",
                            "shape": [by_layer[source].spec.shape[0]], "segment_bytes": 0, "alias_of": f"{source}.bias"})
    for r in cf.dense:
        tensors.append({"name": r.name, "kind": "alias" if r.tied_to else "raw", "dtype": r.dtype, "shape": list(r.shape),
                        "segment_bytes": r.stream[1] if r.stream else 0, "stored": r.stored})
    return FileSummary(str(path), 1, cf.file_bytes, cf.metadata, tensors, True)
