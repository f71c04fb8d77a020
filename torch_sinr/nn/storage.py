"""How each tensor that SINR does not code is stored, so that memory always equals the file.

Input and output layers, biases and other parameters are stored with a uniform quantizer at a
chosen width (the default) or at a float dtype (``float32``, ``float16``, ``bfloat16``); float
buffers (running statistics, scene bounds, constants) are stored exactly, at their own dtype. A
float tensor whose values are integers (hash-grid latents trained with a rate term, SHACIRA-style)
can be marked ``INTEGER_STORAGE`` before ``compress_model``: it is rounded to integers and the file
entropy-codes those (format kind ``integers``). A float tensor can likewise carry a
``StepQuantizer`` (integers times a step per group of rows, e.g. per hash-table level; format kind
``stepped``), which ``compress_model`` keeps. The choice is kept on the module that owns the
tensor, in a plain ``sinr_storage`` dict ({parameter or buffer name: UniformQuantizer | StepQuantizer |
dtype name | "integer"}): it survives ``deepcopy`` and moving the module into another model,
``compress_model`` and ``load_compressed`` set it, the writer and fine-tuning read it.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from ..core.quantization import StepQuantizer, UniformQuantizer

Storage = Union[UniformQuantizer, StepQuantizer, str]
FLOAT_STORAGE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64}
DTYPE_STORAGE = {v: k for k, v in FLOAT_STORAGE.items()}
# A float tensor stored as integers (its own dtype in memory, integer symbols in the file).
INTEGER_STORAGE = "integer"
_ATTR = "sinr_storage"


def get_storage(module: nn.Module, name: str) -> Storage | None:
    return getattr(module, _ATTR, {}).get(name)


def set_storage(module: nn.Module, name: str, storage: Storage) -> None:
    table = dict(getattr(module, _ATTR, {}))  # a copy: modules sharing one dict by deepcopy stay apart
    table[name] = storage
    object.__setattr__(module, _ATTR, table)


def storage_by_key(model: nn.Module) -> dict[str, Storage]:
    """{state_dict key: storage} for every tensor of ``model`` that has one."""
    out = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, storage in getattr(module, _ATTR, {}).items():
            out[f"{prefix}.{name}" if prefix else name] = storage
    return out


def round_to_storage(tensor: torch.Tensor, storage: Storage) -> torch.Tensor:
    """The values ``tensor`` has once stored (same dtype and shape as ``tensor``)."""
    if isinstance(storage, UniformQuantizer):
        return storage.round_trip(tensor.detach().reshape(-1)).reshape(tensor.shape).to(tensor.dtype)
    if isinstance(storage, StepQuantizer):
        return storage.round_trip(tensor.detach()).to(tensor.dtype)
    if storage == INTEGER_STORAGE:
        return torch.round(tensor.detach())  # half to even, same dtype
    return tensor.detach().to(FLOAT_STORAGE[storage]).to(tensor.dtype)


def fake_quantize(tensor: torch.Tensor, storage: Storage) -> torch.Tensor:
    """``round_to_storage`` in the forward pass, identity gradient (straight-through)."""
    return tensor + (round_to_storage(tensor, storage) - tensor).detach()


def is_stored_exactly(tensor: torch.Tensor, storage: Storage) -> bool:
    return torch.equal(round_to_storage(tensor, storage), tensor.detach())


def requantize_dense_(model: nn.Module) -> nn.Module:
    """After training a compressed model's parameters freely (not through ``finetune_codes``): put
    every uniformly stored parameter back on a grid of the same width, refitted to its current
    range, so the model in memory is again exactly its file. Float storages round to their dtype,
    integer storage to the nearest integer."""
    for module in model.modules():
        for name, storage in list(getattr(module, _ATTR, {}).items()):
            tensor = module._parameters.get(name)
            if tensor is None or is_stored_exactly(tensor, storage):
                continue
            if isinstance(storage, UniformQuantizer):
                storage = UniformQuantizer.fit(tensor.detach(), storage.bits)
                set_storage(module, name, storage)
            with torch.no_grad():
                tensor.copy_(round_to_storage(tensor, storage))
    return model
