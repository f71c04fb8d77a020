"""Files of networks coded as offsets from a shared initialisation (``inr.offsets``).

The offsets mean nothing without the initialisation they were taken from, which is stored once
for many files and not in them. So the file records the initialisation's fingerprint
(``inr.meta.init_fingerprint``, SHA-256 of its tensors), and loading checks it first: a file is
never decoded against another initialisation (it would give another image, silently).

- ``save_offsets(network, path, fingerprint)``: ``save_compressed`` of an ``offset_network``
  (coded or not), the fingerprint in the file's metadata;
- ``load_offsets(path, model, init)``: refuses a file of another initialisation, or one without a
  fingerprint (``SINRInputError`` naming both), else loads it into ``offset_network(model, init)``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .errors import SINRInputError
from .format import load_compressed, read_compressed, save_compressed
from .inr.meta import init_fingerprint
from .inr.offsets import OffsetLinear, offset_network

__all__ = ["FINGERPRINT_KEY", "load_offsets", "save_offsets"]

FINGERPRINT_KEY = "sinr_init_fingerprint"


def save_offsets(network: nn.Module, path: str | os.PathLike, fingerprint: str, **save_options) -> None:
    """``save_compressed`` of an offset network, recording the initialisation's fingerprint."""
    if not any(isinstance(m, OffsetLinear) for m in network.modules()):
        raise SINRInputError("save_offsets takes a network from offset_network (it has no OffsetLinear)")
    metadata = {**save_options.pop("metadata", {}), FINGERPRINT_KEY: fingerprint}
    save_compressed(network, path, metadata=metadata, **save_options)


def load_offsets(path: str | os.PathLike, model: nn.Module, init: dict[str, torch.Tensor],
                 layers: list[str] | None = None) -> nn.Module:
    """The offset network of ``model`` over ``init`` (same ``layers`` as when it was saved) with
    the file's offsets loaded; refused if the file was coded against another initialisation."""
    recorded = read_compressed(path).metadata.get(FINGERPRINT_KEY)
    if recorded is None:
        raise SINRInputError(f"{path}: not a file of offsets from an initialisation (no {FINGERPRINT_KEY})")
    ours = init_fingerprint(init)
    if recorded != ours:
        raise SINRInputError(f"{path}: coded against initialisation {recorded[:16]}..., not this one "
                             f"({ours[:16]}...); decoding it against another would give another image")
    return load_compressed(path, offset_network(model, init, layers))
