"""Coding a network as its difference from a shared initialisation (a meta-learned one).

A network fitted from a meta-learned initialisation (``meta.adapt`` and further steps) stays close
to it, so its weights are the initialisation plus a small offset. INRIC codes the weights; the
SINR paper's C3 / C4 too. Coding the offset instead spends the file's bits on what the image added:
at the same sparsity the same relative code error is an absolute error ``|offset| / |W|`` times
smaller. The initialisation is shared by every image, stored once and counted apart (as the
peers count it).

- ``offset_network(model, init)``: a copy of ``model`` whose linears (all, or ``layers``) compute
  ``F.linear(x, W0 + D, b0 + d)`` with the initialisation ``(W0, b0)`` as non-persistent buffers
  and the offset ``(D, d)`` as an ``nn.Linear`` named ``delta``; same function as ``model``.
  ``compress_model`` / ``compress`` code the ``delta`` linears like any other linear; the state
  dict, and so the file, holds only offsets.

- ``choose_offset_layers(model, init, **encode_options)``: per linear, whether its weight or its
  offset codes closer at the same SINR settings (same s, dictionary and value bits: the same
  count of stored numbers), measured by coding both; pass the layers that chose offsets to
  ``offset_network(..., layers=...)``. A layer the image moved far from the initialisation can
  code better as weights (the offset is then no smaller than the weight).

The file side (the initialisation's fingerprint recorded, and checked before decoding) is
``torch_sinr.shared_init``: this room does not write files.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..core.tensor_codes import encode_tensor
from ..errors import SINRInputError


class OffsetLinear(nn.Module):
    """``y = x (W0 + D)^T + (b0 + d)``: a fixed base (buffers, not saved) plus a learned offset."""

    def __init__(self, base_weight: torch.Tensor, base_bias: torch.Tensor | None) -> None:
        super().__init__()
        out_features, in_features = base_weight.shape
        self.register_buffer("base_weight", base_weight.detach().clone(), persistent=False)
        self.register_buffer("base_bias", None if base_bias is None else base_bias.detach().clone(), persistent=False)
        self.delta = nn.Linear(in_features, out_features, bias=base_bias is not None,
                               device=base_weight.device, dtype=base_weight.dtype)
        with torch.no_grad():
            self.delta.weight.zero_()
            if self.delta.bias is not None:
                self.delta.bias.zero_()

    @property
    def in_features(self) -> int:
        return self.base_weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.base_weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.base_weight + self.delta.weight
        bias = None if self.base_bias is None else self.base_bias + self.delta.bias
        return F.linear(x, weight, bias)


def offset_network(model: nn.Module, init: dict[str, torch.Tensor], layers: list[str] | None = None) -> nn.Module:
    """A copy of ``model`` with each ``nn.Linear`` in ``layers`` (default: all) an ``OffsetLinear``
    over ``init[name.weight]`` / ``init[name.bias]``, its offset set so that the copy computes
    what ``model`` computes. Other parameters are copied as they are."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = list(linears) if layers is None else list(layers)
    unknown = [name for name in chosen if name not in linears]
    if unknown:
        raise SINRInputError(f"layers {unknown} are not nn.Linear modules of the model: {sorted(linears)}")
    network = copy.deepcopy(model)
    for name in chosen:
        linear = linears[name]
        weight_key, bias_key = f"{name}.weight", f"{name}.bias"
        if weight_key not in init or (linear.bias is not None and bias_key not in init):
            raise SINRInputError(f"the initialisation has no parameters for layer {name!r}")
        if tuple(init[weight_key].shape) != tuple(linear.weight.shape):
            raise SINRInputError(f"layer {name!r}: initialisation weight {tuple(init[weight_key].shape)}, "
                                 f"model weight {tuple(linear.weight.shape)}")
        base_weight = init[weight_key].to(linear.weight)
        base_bias = init[bias_key].to(linear.bias) if linear.bias is not None else None
        offset = OffsetLinear(base_weight, base_bias)
        with torch.no_grad():
            offset.delta.weight.copy_(linear.weight - base_weight)
            if base_bias is not None:
                offset.delta.bias.copy_(linear.bias - base_bias)
        offset.train(linear.training)
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, child, offset)
    return network


def choose_offset_layers(model: nn.Module, init: dict[str, torch.Tensor], **encode_options) -> dict[str, dict]:
    """For every ``nn.Linear`` of ``model`` with an initialisation: the relative Frobenius error
    of its weight coded by SINR as it is and as the offset from ``init`` (``encode_tensor`` with
    ``encode_options``, the same for both), and which is smaller (``"chosen"``: ``"offsets"`` or
    ``"weights"``). Errors are relative to the weight, so the two compare as the layer's output
    would: the initialisation is added back exactly."""
    choice = {}
    for name, linear in model.named_modules():
        key = f"{name}.weight"
        if not isinstance(linear, nn.Linear) or key not in init:
            continue
        weight = linear.weight.detach()
        if tuple(init[key].shape) != tuple(weight.shape):
            raise SINRInputError(f"layer {name!r}: initialisation weight {tuple(init[key].shape)}, "
                                 f"model weight {tuple(weight.shape)}")
        offset = weight - init[key].to(weight)
        norm = float(weight.norm()) or 1.0
        errors = {}
        for target, tensor in (("weights", weight), ("offsets", offset)):
            with torch.no_grad():
                decoded = encode_tensor(tensor, **encode_options).decode().reshape(tensor.shape).to(tensor)
            errors[target] = float((tensor - decoded).norm()) / norm
        choice[name] = {"weights_error": errors["weights"], "offsets_error": errors["offsets"],
                        "chosen": "offsets" if errors["offsets"] < errors["weights"] else "weights"}
    return choice
