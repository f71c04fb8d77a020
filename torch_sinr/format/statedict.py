"""Compressing a bare state_dict (no model class at hand), as the CLI does.

A module tree is rebuilt from the keys: every ``X.weight`` that is 2-D floating point, whose
module ``X`` holds nothing but ``weight`` and an optional 1-D ``bias`` of matching size, becomes
an ``nn.Linear`` at path ``X``; every other tensor becomes a buffer of its module. The tree has
the same state_dict keys, so ``compress_model``/``save_compressed``/``decode_state_dict`` work
on it unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import SINRInputError


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors, or from a torch file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise SINRInputError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise SINRInputError(f"cannot read {path} as safetensors: {exc}") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SINRInputError(_unreadable(path, exc)) from None
    if isinstance(data, dict) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        for key in ("state_dict", "model", "module"):
            inner = data.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return dict(data)
    raise SINRInputError(f"{path} holds no state_dict (a dict of tensors, or one under 'state_dict'/'model')")


def module_from_state_dict(state: dict[str, torch.Tensor]) -> nn.Module:
    if not state:
        raise SINRInputError("the state_dict is empty")
    children: dict[str, set[str]] = {}
    for key in state:
        parts = key.split(".")
        if any(p == "" for p in parts):
            raise SINRInputError(f"state_dict key {key!r} has an empty name component")
        for i in range(1, len(parts)):
            children.setdefault(".".join(parts[:i]), set()).add(parts[i])
    linear_paths = set()
    for key, tensor in state.items():
        path, _, leaf = key.rpartition(".")
        if leaf != "weight" or not path or tensor.ndim != 2 or not tensor.is_floating_point():
            continue
        members = children.get(path, set())
        bias = state.get(f"{path}.bias")
        bias_ok = bias is None or (bias.ndim == 1 and bias.shape[0] == tensor.shape[0] and bias.is_floating_point())
        only_leaves = all(f"{path}.{m}" in state for m in members) and members <= {"weight", "bias"}
        if only_leaves and bias_ok:
            linear_paths.add(path)

    root = nn.Module()

    def module_at(path: str) -> nn.Module:
        module = root
        if not path:
            return module
        for part in path.split("."):
            if part not in module._modules:
                module.add_module(part, nn.Module())
            module = module._modules[part]
        return module

    for path in sorted(linear_paths):
        weight = state[f"{path}.weight"]
        bias = state.get(f"{path}.bias")
        parent, _, name = path.rpartition(".")
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        module_at(parent).add_module(name, linear)
    for key, tensor in state.items():
        path, _, leaf = key.rpartition(".")
        if path in linear_paths:
            continue
        module_at(path).register_buffer(leaf, tensor.clone())
    return root


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _unreadable(path: Path, exc: Exception) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused ``path`` and what to do.

    torch's own text is several lines with terminal colours and advises turning weights_only off,
    which this library never does (unpickling runs arbitrary code): a whole pickled module gets
    the one fix that works, saving its state_dict.
    """
    text = _ANSI.sub("", str(exc))
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if pickled:
        return (f"{path} holds a pickled object ({pickled.group(1)}), not a state_dict; torch_sinr loads "
                f"checkpoints with weights_only=True and never unpickles code. Save the weights instead: "
                f"torch.save(model.state_dict(), '{path.stem}_state.pt') (or safetensors), and compress that file")
    reason = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if reason:  # torch's reason, without its advice to load with weights_only=False
        return f"cannot read {path} as a torch checkpoint (weights_only=True): {reason.group(1).strip()}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"cannot read {path} as a torch checkpoint (weights_only=True): {first}"


def skeleton_from_state_dict(state: dict[str, torch.Tensor]) -> nn.Module:
    """A module whose state_dict has ``state``'s names, dtypes and shapes in ``state``'s order.

    Enough for what a bare file needs of its model (its signature): every tensor is a buffer,
    so nothing is inferred about layer types (``module_from_state_dict`` does that, for coding).
    Keys of one module must be contiguous, as every ``state_dict()`` writes them."""
    if not state:
        raise SINRInputError("the state_dict is empty")
    root = nn.Module()
    for key, tensor in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if part not in module._modules:
                module.add_module(part, nn.Module())
            module = module._modules[part]
        module.register_buffer(leaf, tensor)
    if list(root.state_dict()) != list(state):
        raise SINRInputError("the state_dict's keys are not grouped by module as state_dict() writes them")
    return root
