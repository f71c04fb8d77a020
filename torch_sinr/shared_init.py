"""Files that mean something only with a shared network: offsets from a meta-learned
initialisation (``inr.offsets``) and the latents of a modulated network (``inr.modulated``).

What is shared is stored once for many files and not in them. So the file records its
fingerprint (``inr.meta.init_fingerprint``, SHA-256 of its tensors), and loading checks it first:
a file is never decoded against another shared network (it would give another image, silently).

- ``save_offsets(network, path, fingerprint)``: ``save_compressed`` of an ``offset_network``
  (coded or not), the fingerprint in the file's metadata;
- ``load_offsets(path, model, init)``: refuses a file of another initialisation, or one without a
  fingerprint (``SINRInputError`` naming both), else loads it into ``offset_network(model, init)``;
- ``save_latents(grid, path, fingerprint)`` / ``load_latents(path, model)``: a ``LatentGrid``
  (coded or not), with the base network's fingerprint and the patch layout in the metadata; the
  layout read back is checked (integers, bounded) before anything is allocated from it.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .errors import SINRInputError
from .format import load_compressed, read_compressed, save_compressed
from .inr.meta import init_fingerprint
from .inr.modulated import LatentGrid, ModulatedSiren
from .inr.offsets import OffsetLinear, offset_network

__all__ = ["FINGERPRINT_KEY", "LAYOUT_KEY", "load_latents", "load_offsets", "save_latents", "save_offsets"]

FINGERPRINT_KEY = "sinr_init_fingerprint"
LAYOUT_KEY = "sinr_patch_layout"  # "rows,cols,patch"
MAX_PATCHES = 2**22  # a layout beyond this is refused before a skeleton is allocated


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
    _check_fingerprint(path, read_compressed(path).metadata, init_fingerprint(init), "offsets from an initialisation",
                       "initialisation")
    return load_compressed(path, offset_network(model, init, layers))


def _check_fingerprint(path, metadata: dict, ours: str, what: str, shared: str) -> None:
    recorded = metadata.get(FINGERPRINT_KEY)
    if recorded is None:
        raise SINRInputError(f"{path}: not a file of {what} (no {FINGERPRINT_KEY})")
    if recorded != ours:
        raise SINRInputError(f"{path}: coded against {shared} {recorded[:16]}..., not this one "
                             f"({ours[:16]}...); decoding it against another would give another image")


def save_latents(grid: nn.Module, path: str | os.PathLike, fingerprint: str, **save_options) -> None:
    """``save_compressed`` of a ``LatentGrid`` (its linear coded or not), recording the base
    network's fingerprint and the patch layout."""
    if not isinstance(grid, LatentGrid):
        raise SINRInputError(f"save_latents takes a LatentGrid, got {type(grid).__name__}")
    metadata = {**save_options.pop("metadata", {}), FINGERPRINT_KEY: fingerprint,
                LAYOUT_KEY: f"{grid.rows},{grid.cols},{grid.patch}"}
    save_compressed(grid, path, metadata=metadata, **save_options)


def load_latents(path: str | os.PathLike, model: ModulatedSiren) -> LatentGrid:
    """The ``LatentGrid`` a file holds, for ``model``'s base network; refused if the file was
    coded against another base network, or its layout is not one a grid can have."""
    metadata = read_compressed(path).metadata
    _check_fingerprint(path, metadata, init_fingerprint(dict(model.named_parameters())), "modulated-network latents",
                       "base network")
    layout = str(metadata.get(LAYOUT_KEY, ""))
    parts = layout.split(",")
    if len(parts) != 3 or not all(p.isdigit() and 0 < len(p) <= 7 for p in parts):
        raise SINRInputError(f"{path}: patch layout {layout[:40]!r} is not 'rows,cols,patch'")
    rows, cols, patch = (int(p) for p in parts)
    if min(rows, cols, patch) < 1 or rows * cols > MAX_PATCHES or patch > 2**12:
        raise SINRInputError(f"{path}: patch layout {rows} x {cols} of {patch} px is out of bounds")
    skeleton = LatentGrid(torch.zeros(rows * cols, model.latent_dim), rows, cols, patch)
    return load_compressed(path, skeleton)
