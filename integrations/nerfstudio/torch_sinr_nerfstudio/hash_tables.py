"""A scene's hash tables as stepped integers: what makes a nerfacto file small.

nerfacto keeps 99.9% of its bytes in the float32 tables of its torch ``HashEncoding``s (the
field's and the proposal networks'). Here every table is quantized level by level
(``StepQuantizer``: level ``l``'s entries are integers times its step) and the
file range-codes each level's integers with a stored histogram (format kind ``stepped``).

- ``scene_tables``: the torch hash encodings of a scene, each once (nerfacto registers each
  proposal network's encoding under two names; the file stores the second as an alias):
  nerfstudio's ``HashEncoding`` (``2**T`` rows per level) or, in a tcnn scene converted to the
  torch port, ``tcnn_port.TcnnHashGrid`` (tcnn's row count per level, dense coarse levels).
- ``reachable_rows`` / ``zero_unreachable_``: nerfstudio hashes every level into its own
  ``2**T`` rows, also the coarse ones, whose ``(res + 1)**3`` vertices are fewer than its rows;
  the other rows keep their random initial values forever and no position in [0, 1]^3 reads
  them. Zeroing them changes no rendered value and leaves the coder nothing to pay for.
- ``quantize_tables_``: put every table on its level steps (in place) and mark its storage.
- ``tables_bytes``: the coded size of the tables at a step, estimated from each level's
  empirical entropy (the range coder lands within a few hundred bytes of it), for searches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from torch_sinr import SINRConfigError
from torch_sinr.core.quantization import StepQuantizer
from torch_sinr.inr.hashgrid import hash_coords
from torch_sinr.nn.storage import round_to_storage, set_storage

from .tcnn_port import TcnnHashGrid

# Levels with at most this many vertices per table row are enumerated to find the rows they
# read; finer levels read practically every row (a row is missed with probability e**-16).
_ENUMERATE_VERTICES_PER_ROW = 16


@dataclass
class SceneTable:
    name: str  # the first state-dict prefix of the encoding
    encoding: nn.Module  # nerfstudio's HashEncoding (torch implementation) or the port's TcnnHashGrid

    @property
    def levels(self) -> int:
        return len(self.level_rows)

    @property
    def level_rows(self) -> list[int]:
        """Rows of each level, in table order."""
        if isinstance(self.encoding, TcnnHashGrid):
            return self.encoding.level_entries()
        return [int(self.encoding.hash_table_size)] * int(self.encoding.num_levels)

    @property
    def table(self) -> nn.Parameter:
        return self.encoding.hash_table


def scene_tables(view: nn.Module) -> list[SceneTable]:
    """Every torch hash table of ``view`` once, in module order."""
    from nerfstudio.field_components.encodings import HashEncoding

    from .compat import check_tcnn_ported

    check_tcnn_ported(view)
    seen, out = set(), []
    for name, module in view.named_modules():  # remove_duplicate: a shared encoding comes once
        torch_table = isinstance(module, HashEncoding) and module.tcnn_encoding is None
        if (torch_table or isinstance(module, TcnnHashGrid)) and id(module) not in seen:
            seen.add(id(module))
            out.append(SceneTable(name, module))
    return out


def reachable_rows(table: SceneTable) -> torch.Tensor:
    """Bool mask over the table's rows: True where some position in [0, 1]^3 reads the row.

    A tcnn port's grid answers for itself (``TcnnHashGrid.reachable_entries``); for nerfstudio's:

    Level ``l`` scales a position by ``s = scalings[l]`` and reads the vertices ``floor`` and
    ``ceil`` of each axis, so its vertices are ``0..s`` per axis; their hashes are its rows.
    """
    if isinstance(table.encoding, TcnnHashGrid):
        return table.encoding.reachable_entries()
    rows = table.level_rows[0]
    log2_rows = int(table.encoding.log2_hashmap_size)
    mask = torch.zeros(table.levels, rows, dtype=torch.bool)
    for level, scaling in enumerate(table.encoding.scalings.tolist()):
        side = int(math.ceil(scaling)) + 1
        if side**3 > _ENUMERATE_VERTICES_PER_ROW * rows:
            mask[level] = True
            continue
        grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)
        for z in range(side):
            vertices = torch.cat([grid, torch.full((grid.shape[0], 1), z)], dim=1)
            mask[level, hash_coords(vertices, log2_rows)] = True
    return mask.reshape(-1)


@torch.no_grad()
def zero_unreachable_(tables: list[SceneTable]) -> dict[str, float]:
    """Zero every row no position reads; returns each table's share of reachable rows."""
    shares = {}
    for t in tables:
        mask = reachable_rows(t).to(t.table.device)
        t.table[~mask] = 0.0
        shares[t.name] = float(mask.float().mean())
    return shares


def level_quantizer(table: SceneTable, step: float) -> StepQuantizer:
    """``step`` for every level of ``table``."""
    if not (math.isfinite(step) and step > 0):
        raise SINRConfigError(f"the table step must be a finite number > 0, got {step!r}")
    return StepQuantizer.per_group(table.level_rows, [step] * table.levels)


@torch.no_grad()
def quantize_tables_(tables: list[SceneTable], step: float) -> None:
    """Round every table to its level steps, in place, and mark its storage (``compress_model``
    and ``save_compressed`` keep it)."""
    for t in tables:
        quantizer = level_quantizer(t, step)
        t.table.copy_(round_to_storage(t.table, quantizer))
        set_storage(t.encoding, "hash_table", quantizer)


def _entropy_bytes(codes: torch.Tensor) -> float:
    _, counts = torch.unique(codes, return_counts=True)
    counts = counts.double()
    return float(-(counts * torch.log2(counts / counts.sum())).sum()) / 8


@torch.no_grad()
def tables_bytes(tables: list[SceneTable], step: float, originals: dict[str, torch.Tensor] | None = None) -> float:
    """The tables' coded bytes at ``step``: each level's empirical entropy (plus a histogram
    allowance), from ``originals`` (the unquantized tables) when given."""
    total = 0.0
    for t in tables:
        table = originals[t.name] if originals is not None else t.table
        codes = level_quantizer(t, step).quantize(table.detach().cpu())
        for level in codes.split(t.level_rows):
            total += _entropy_bytes(level) + 64  # the stored model: a few dozen bytes per level
    return total


def snapshot(tables: list[SceneTable]) -> dict[str, torch.Tensor]:
    """Copies of the tables (to re-quantize from the originals at another step)."""
    return {t.name: t.table.detach().clone() for t in tables}


@torch.no_grad()
def restore_(tables: list[SceneTable], originals: dict[str, torch.Tensor]) -> None:
    for t in tables:
        t.table.copy_(originals[t.name])
