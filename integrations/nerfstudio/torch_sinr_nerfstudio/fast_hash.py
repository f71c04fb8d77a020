"""nerfstudio's torch ``HashEncoding`` on torch_sinr's fused hash-grid gather: same parameters,
same function, fewer operations per training step (no committed benchmark times the two yet).

nerfstudio's pure-torch encoding gathers the 8 corners of every level one by one and lets
autograd scatter each corner's gradient separately; ``interpolate_hashed_levels`` builds all
indices at once and scatters the table's gradient in one fused step. The table, its layout and
the hash are nerfstudio's, so checkpoints and compressed files are interchangeable with
unpatched runs. tcnn encodings are left alone.
"""

from __future__ import annotations

import contextlib
import types
from typing import Iterator

from torch import Tensor, nn

from torch_sinr.inr.hashgrid import interpolate_hashed_levels
from torch_sinr.nn.storage import fake_quantize, get_storage


def fake_quantized_table(encoding) -> Tensor:
    """The table an encoding reads: through its stored steps (straight-through rounding) while
    it trains quantization-aware (``sinr_quantize_aware``, set by the scene codec and the hook)."""
    table = encoding.hash_table
    if getattr(encoding, "sinr_quantize_aware", False):
        storage = get_storage(encoding, "hash_table")
        if storage is not None:
            return fake_quantize(table, storage)
    return table


def fast_forward(encoding, in_tensor: Tensor) -> Tensor:
    """``HashEncoding.pytorch_fwd`` through ``interpolate_hashed_levels`` (any leading shape)."""
    flat = in_tensor.reshape(-1, in_tensor.shape[-1])
    out = interpolate_hashed_levels(fake_quantized_table(encoding), flat, encoding.scalings,
                                    encoding.log2_hashmap_size)
    return out.view(*in_tensor.shape[:-1], out.shape[-1])


def use_fast_hash_encoding(model: nn.Module, enable: bool = True) -> int:
    """Route every torch ``HashEncoding`` inside ``model`` through ``fast_forward`` (or, with
    ``enable=False``, back to nerfstudio's own); returns how many."""
    from nerfstudio.field_components.encodings import HashEncoding

    count = 0
    for module in model.modules():
        if isinstance(module, HashEncoding) and module.tcnn_encoding is None:
            if enable:
                module.pytorch_fwd = types.MethodType(fast_forward, module)
            else:
                module.__dict__.pop("pytorch_fwd", None)
            count += 1
    return count


@contextlib.contextmanager
def fast_hash_encoding() -> Iterator[None]:
    """While active, every torch ``HashEncoding`` (also ones built inside nerfstudio's trainer)
    uses ``fast_forward``; the class is restored afterwards."""
    from nerfstudio.field_components.encodings import HashEncoding

    original = HashEncoding.pytorch_fwd
    HashEncoding.pytorch_fwd = fast_forward
    try:
        yield
    finally:
        HashEncoding.pytorch_fwd = original
