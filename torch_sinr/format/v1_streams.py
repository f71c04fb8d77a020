"""Format 1's streams: one layer's codes (or one dense tensor) as Brotli-coded byte streams, and
back. Used by the v1 reader and writer only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ..core.tensor_codes import CodeSpec
from ..errors import SINRFormatError, SINRInputError
from .codec import entropy
from .codec.bitpack import pack_uint, packed_size, unpack_uint
from .codec.indices import decode_indices, encode_indices

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
                 "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
                 "uint16": torch.uint16, "uint32": torch.uint32, "uint64": torch.uint64,
                 "complex64": torch.complex64, "complex128": torch.complex128}
DTYPE_NAMES = {v: k for k, v in _TORCH_DTYPES.items()}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _TORCH_DTYPES[name]
    except KeyError:
        raise SINRFormatError(f"unsupported dtype {name!r}") from None


def itemsize(name: str) -> int:
    return torch.empty(0, dtype=torch_dtype(name)).element_size()


def tensor_to_bytes(tensor: torch.Tensor, dtype_name: str) -> bytes:
    t = tensor.detach().to("cpu", torch_dtype(dtype_name)).contiguous().reshape(-1)  # 0-dim cannot be viewed
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def bytes_to_tensor(data: bytes, dtype_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return raw.view(torch_dtype(dtype_name)).reshape(shape).clone()


def check_storable(state: dict[str, torch.Tensor]) -> None:
    """Raise before anything is modified if a tensor has a dtype the file cannot hold."""
    for name, tensor in state.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise SINRInputError(f"cannot store {name!r}: unsupported dtype {tensor.dtype} "
                                 f"(supported: {sorted(DTYPE_NAMES.values())})")


def round_to(tensor: torch.Tensor, dtype_name: str) -> torch.Tensor:
    """The value a float tensor has after storage at ``dtype_name`` (identity for non-floats)."""
    if not tensor.is_floating_point():
        return tensor
    return tensor.to(torch_dtype(dtype_name)).to(tensor.dtype)


@dataclass
class LayerStreams:
    values: bytes
    indices: bytes
    bias: bytes | None
    index_coding: str
    index_param: int
    raw_index_size: int

    def sizes(self) -> dict[str, int]:
        return {"values": len(self.values), "indices": len(self.indices), "bias": len(self.bias or b"")}


def encode_layer(spec: CodeSpec, indices: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                 bias_dtype: str, index_coding: str = "auto", quality: int = entropy.DEFAULT_QUALITY) -> LayerStreams:
    q = spec.quantizer.quantize(values.detach().cpu()).numpy().ravel()
    raw_values = pack_uint(q, spec.quantizer.bits)
    coding, param, raw_indices = encode_indices(indices.detach().cpu().numpy(), spec.k2, index_coding)
    bias_stream = entropy.compress(tensor_to_bytes(bias, bias_dtype), quality) if bias is not None else None
    return LayerStreams(entropy.compress(raw_values, quality), entropy.compress(raw_indices, quality), bias_stream,
                        coding, param, len(raw_indices))


# compress_model's report and save_compressed need the same streams; Brotli at quality 11 is the
# slow part of both, so the streams of a layer are kept until its codes or bias change.
_STREAM_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def layer_streams(layer, spec: CodeSpec, bias_dtype: str, index_coding: str, quality: int) -> LayerStreams:
    """``encode_layer`` for a SINRLinear, cached on the layer while its tensors are unchanged."""
    settings = (spec, bias_dtype, index_coding, quality)
    tensors = [layer.values.detach(), layer.indices] + ([layer.bias.detach()] if layer.bias is not None else [])
    cached = _STREAM_CACHE.get(layer)
    if cached is not None and cached[0] == settings and len(cached[1]) == len(tensors) and all(
            a.shape == b.shape and torch.equal(a, b.to(a.device)) for a, b in zip(cached[1], tensors)):
        return cached[2]
    streams = encode_layer(spec, layer.indices, layer.values, layer.bias, bias_dtype, index_coding, quality)
    _STREAM_CACHE[layer] = (settings, [t.detach().cpu().clone() for t in tensors], streams)
    return streams


def decode_values(spec: CodeSpec, stream: bytes, what: str) -> torch.Tensor:
    n = spec.n_vectors * spec.s
    raw = entropy.decompress(stream, packed_size(spec.quantizer.bits, n), what)
    q = torch.from_numpy(unpack_uint(raw, spec.quantizer.bits, n, what))
    return spec.quantizer.dequantize(q).reshape(spec.n_vectors, spec.s)


def decode_layer_indices(spec: CodeSpec, stream: bytes, coding: str, param: int, raw_size: int, what: str) -> torch.Tensor:
    raw = entropy.decompress(stream, raw_size, what)
    return torch.from_numpy(decode_indices(coding, param, raw, spec.n_vectors, spec.s, spec.k2))


def decode_dense(stream: bytes, dtype_name: str, shape: tuple[int, ...], what: str) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    raw = entropy.decompress(stream, numel * itemsize(dtype_name), what)
    return bytes_to_tensor(raw, dtype_name, shape)
