"""Which module types SINR can code, and how: a registry instead of ``isinstance`` chains.

A :class:`ModuleHandler` tells ``compress_model`` / ``decompress_model`` how to treat one dense
module type: its fan-in (for the input-layer rule), the 2-D weight SINR codes, how to build the
compressed module from the codes, and how to turn a compressed module back into a dense one.
``nn.Linear -> SINRLinear`` is registered here; other kinds (e.g. a hash-grid decoder's fused
linears) plug in with :func:`register_module_handler` without touching the walker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..core.tensor_codes import CodedTensor
from .layer import SINRLinear


@dataclass(frozen=True)
class ModuleHandler:
    dense_type: type[nn.Module]  # the module type it codes (subclasses included)
    compressed_type: type[nn.Module]  # the module type that replaces it
    fan_in: Callable[[nn.Module], int]
    weight: Callable[[nn.Module], torch.Tensor]  # the 2-D (out, in) parameter SINR codes
    bias: Callable[[nn.Module], torch.Tensor | None]
    # (dense module, codes, stored bias) -> compressed module, in the dense module's dtype
    build: Callable[[nn.Module, CodedTensor, torch.Tensor | None], nn.Module]
    restore: Callable[[nn.Module], nn.Module]  # compressed -> dense module computing the same


_HANDLERS: list[ModuleHandler] = []


def register_module_handler(handler: ModuleHandler) -> None:
    """Add (or replace, for the same dense type) a handler; later registrations win."""
    _HANDLERS[:] = [h for h in _HANDLERS if h.dense_type is not handler.dense_type]
    _HANDLERS.insert(0, handler)


def handler_for(module: nn.Module) -> ModuleHandler | None:
    """The handler that codes ``module``, or None (already compressed modules have none)."""
    if is_compressed(module):
        return None
    return next((h for h in _HANDLERS if isinstance(module, h.dense_type)), None)


def is_compressed(module: nn.Module) -> bool:
    return any(isinstance(module, h.compressed_type) for h in _HANDLERS)


def compressed_handler(module: nn.Module) -> ModuleHandler | None:
    return next((h for h in _HANDLERS if isinstance(module, h.compressed_type)), None)


def _build_linear(old: nn.Linear, codes: CodedTensor, bias: torch.Tensor | None) -> SINRLinear:
    layer = SINRLinear.from_codes(codes, bias)
    # codes are coded in float32; the layer then runs in the model's own dtype
    return layer.to(dtype=old.weight.dtype)


register_module_handler(ModuleHandler(
    dense_type=nn.Linear, compressed_type=SINRLinear, fan_in=lambda m: m.in_features,
    weight=lambda m: m.weight, bias=lambda m: m.bias, build=_build_linear,
    restore=lambda m: m.to_linear()))
