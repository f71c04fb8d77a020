"""The inference path of the hash-grid encodings: the same numbers as the training path, without autograd.

``HashGrid.forward`` and ``interpolate_hashed_levels`` take this path when no gradient is asked
for (grad mode off, or neither the table nor the coordinates require one). It computes exactly
what the training path computes (same cells, same rows, same weights multiplied in the same
order, same left-to-right weighted sum; ``tests/inr/hashgrid/test_fast.py`` checks bit equality),
with less work per point:

- the per-level constants (scales, last cells, dense row strides, each corner's row shift plus the
  level offset, hash primes and mask) are built once per grid and device (``LevelPlan``) instead
  of every call;
- a dense level's 4 (8) corner rows are its cell's base row plus a per-level constant, added in
  one broadcast op (the training path combines the per-axis terms corner by corner); a hashed
  level XORs the per-axis terms of all corners in one broadcast op;
- all levels and corners share one flat index (int32 up to 2**31 rows) and one 1-D
  ``index_select`` on the flat table (a 1-D gather is ~4x faster than ``index_select`` on a 2-D ``(rows, 1)`` table here);
  2-D tables whose row fits 2, 4 or 8 bytes (nerfstudio's 2 float32 features) are gathered as
  one integer per row;
- points go through in chunks of ``CHUNK``, bounding the temporaries (see CHUNK for the size);
- no tensor is recorded for backward, nothing is checked twice.

Where the C++ kernel is built (``torch_sinr.native``, on first use; a compiler is all it needs),
``interpolate_levels`` hands float32 CPU work to it: the same operations in the same order (bit
equal, tests/inr/hashgrid/test_native.py) in one pass per block of points, rows prefetched a
block ahead, on torch's thread pool. The torch ops below remain the path for other dtypes and
devices, for machines without a compiler, and inside ``torch_only()``.

What the profile of the old path showed (SHACIRA-style large-image grid, 16 levels, 2**20 random
points): ~25 elementwise passes over int64 ``(levels, corners, N)`` tensors, a 2-D gather, a
stack of the weights and a permuted copy; the gather itself was under a fifth of the time.
"""

from __future__ import annotations

import ctypes
import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from torch_sinr import native
from torch_sinr.errors import SINRInputError

__all__ = ["CHUNK", "LevelPlan", "index_and_weights", "interpolate_levels", "native_available", "row_gatherer",
           "torch_only"]

# Points per chunk. Alone on a core, 2**13..2**14 were fastest (temporaries in cache; 2**16
# within ~20%). With 2 threads on cores shared with other processes, every op ends in a barrier
# that waits for the thread the scheduler paused, so fewer, larger ops win: 2**16 and 2**17
# decoded 2-3x faster than 2**13 on this 2-core machine at load ~8. 2**16 points x 16 levels x 4
# corners of int32 index, float32 weights and rows is ~50 MB of temporaries.
CHUNK = 1 << 16
# Rows are addressed in int32 where the table allows (fewer bytes through every index op: ~15%
# faster here); hashed terms are multiplied in int64 (a prime times a vertex overflows int32) and
# masked below 2**30 before they are narrowed.
_INT32_ROWS = 2**31 - 1


@dataclass(frozen=True)
class LevelPlan:
    """Per-level constants of a grid on one device; built once (``HashGrid.level_plan``).

    Levels ``0 .. num_dense - 1`` are dense (a vertex's row is ``sum_a v_a * stride_a``), the
    rest hashed (``XOR_a v_a * prime_a & hash_mask``). ``top`` clamps cells to the last one
    (``res - 2``) where coordinates are clamped to [0, 1] (HashGrid); None where they are not
    (nerfstudio's layout).
    """

    dims: int
    levels: int
    index_dtype: torch.dtype  # int32 where every row number fits, else int64
    scale: Tensor            # (L, 1) work dtype: coordinate -> vertex units
    top: Tensor | None       # (L, 1) work dtype: the last cell's low vertex, or None
    num_dense: int
    dense_strides: Tensor    # (nd, dims) index dtype: row strides (1, res, res*res)
    dense_corners: Tensor    # (nd, 2**dims, 1) index dtype: corner's row shift + level offset
    primes: tuple[int, ...]  # per axis, for hashed levels
    hash_mask: int
    hashed_offsets: Tensor   # (L - nd, 1) index dtype
    # the native kernel's constants (CPU, float32 work): scale, top or None, dense strides, level
    # offsets, primes; None where the kernel does not apply
    native_consts: tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor] | None = None

    @staticmethod
    def build(dims: int, scale: Tensor, top: Tensor | None, strides: list[list[int]], offsets: list[int],
              num_dense: int, primes: tuple[int, ...], log2_table: int, rows: int) -> "LevelPlan":
        """``rows``: the table's row count (decides the index dtype)."""
        device = scale.device
        corners = []
        for level in range(num_dense):
            shifts = []
            for corner in range(2**dims):
                bits = [(corner >> axis) & 1 for axis in range(dims)]
                shifts.append(offsets[level] + sum(b * s for b, s in zip(bits, strides[level])))
            corners.append(shifts)
        index = torch.int32 if rows <= _INT32_ROWS else torch.int64
        as_index = dict(dtype=index, device=device)
        consts = None
        if device.type == "cpu" and scale.dtype == torch.float32 and dims in (2, 3):
            as_long = dict(dtype=torch.int64)
            consts = (scale.reshape(-1).contiguous(), None if top is None else top.reshape(-1).contiguous(),
                      torch.tensor(strides[:num_dense], **as_long).view(num_dense, dims).contiguous(),
                      torch.tensor(offsets, **as_long), torch.tensor(primes[:dims], **as_long))
        return LevelPlan(
            dims=dims, levels=scale.shape[0], index_dtype=index, scale=scale, top=top, num_dense=num_dense,
            dense_strides=torch.tensor(strides[:num_dense], **as_index).view(num_dense, dims),
            dense_corners=torch.tensor(corners, **as_index).view(num_dense, 2**dims, 1),
            primes=tuple(primes[:dims]), hash_mask=2**log2_table - 1,
            hashed_offsets=torch.tensor(offsets[num_dense:], **as_index).view(-1, 1), native_consts=consts)


def interpolate_levels(plan: LevelPlan, table: Tensor, coords: Tensor, work: torch.dtype) -> Tensor:
    """Features ``(L, N, F)`` of points ``coords (N, dims)`` (already clamped where the plan
    clamps), interpolated from ``table (rows, F)``; call under ``torch.no_grad()`` or inference mode.

    ``work`` is the dtype of the vertex-unit arithmetic (float32, or float64 for float64 coords),
    as in the training path.
    """
    out = _native_interpolate(plan, table, coords, work)
    if out is not None:
        return out
    n = coords.shape[0]
    out = torch.empty(plan.levels, n, table.shape[1], dtype=table.dtype, device=table.device)
    gather = row_gatherer(table)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        index, weights = index_and_weights(plan, coords[start:stop], work, table.dtype)
        rows = gather(index.view(-1)).view(*index.shape, table.shape[1])
        target = out[:, start:stop]
        # as the training path's _WeightedRows: corner 0 times its weight, then the others added
        # in order with addcmul_, so the sums round alike
        torch.mul(rows[:, 0], weights[:, 0, :, None], out=target)
        for corner in range(1, index.shape[1]):
            target.addcmul_(rows[:, corner], weights[:, corner, :, None])
    return out


_use_native = True


@contextlib.contextmanager
def torch_only():
    """Within it, the inference path runs on torch ops even where the C++ kernel is built (the
    path a machine without a compiler takes; benchmarks time both)."""
    global _use_native
    previous, _use_native = _use_native, False
    try:
        yield
    finally:
        _use_native = previous


def native_available() -> bool:
    """Whether the C++ kernel (torch_sinr/native/hashgrid.cpp) is built and loaded here."""
    return _kernel() is not None


def _kernel():
    lib = native.load("hashgrid")
    if lib is None:
        return None
    fn = lib.sinr_hashgrid_interpolate
    if not fn.argtypes:
        p, i = ctypes.c_void_p, ctypes.c_int64
        fn.argtypes = [p, i, i, p, i, i, i, p, p, i, p, p, p, i, p, i, i, i]
        fn.restype = ctypes.c_int
    return fn


def _native_interpolate(plan: LevelPlan, table: Tensor, coords: Tensor, work: torch.dtype) -> Tensor | None:
    """``interpolate_levels`` by the C++ kernel, or None where it does not apply (not a CPU float32
    table and float32 work, or the kernel not built): the same numbers, one pass over the points.

    Returns the ``(L, N, F)`` view of an ``(N, L, F)`` tensor: callers that want per-point features
    (every caller does) get them by a reshape without a copy.
    """
    if (not _use_native or plan.native_consts is None or work != torch.float32 or table.dtype != torch.float32
            or coords.dtype != torch.float32 or table.device.type != "cpu" or coords.device.type != "cpu"):
        return None
    fn = _kernel()
    if fn is None:
        return None
    # the kernel reads dims floats per point and F per row: shapes are checked here, not trusted
    if coords.dim() != 2 or coords.shape[1] != plan.dims or table.dim() != 2:
        raise SINRInputError(f"coordinates must be (N, {plan.dims}) and the table 2-D, got {tuple(coords.shape)} "
                             f"and {tuple(table.shape)}")
    scale, top, strides, offsets, primes = plan.native_consts
    table = table.contiguous()
    coords = coords.contiguous()
    n, features = coords.shape[0], table.shape[1]
    out = torch.empty(n, plan.levels, features, dtype=torch.float32)
    if n:
        status = fn(table.data_ptr(), table.shape[0], features, coords.data_ptr(), n, plan.dims, plan.levels,
                    scale.data_ptr(), None if top is None else top.data_ptr(), plan.num_dense,
                    strides.data_ptr(), offsets.data_ptr(), primes.data_ptr(), plan.hash_mask,
                    out.data_ptr(), features, plan.levels * features, torch.get_num_threads())
        if status != 0:
            # only non-finite coordinates of an unclamped layout reach a row outside the table
            raise SINRInputError("hash-grid coordinates map outside the table (non-finite or out-of-range "
                                 "coordinates)")
    return out.permute(1, 0, 2)


def row_gatherer(table: Tensor):
    """``index -> table[index]`` as ``(len(index), F)``, by the fastest 1-D gather the row allows."""
    features = table.shape[1]
    if features == 1:
        flat = table.reshape(-1)
        return lambda index: flat.index_select(0, index)
    row_bytes = features * table.element_size()
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}.get(row_bytes)
    if as_int is not None and table.is_contiguous():
        # one row is one integer: a 1-D gather of whole rows, its bits viewed back as floats
        packed = table.view(as_int).view(-1)
        return lambda index: packed.index_select(0, index).view(table.dtype).view(-1, features)
    return lambda index: table.index_select(0, index)


def index_and_weights(plan: LevelPlan, coords: Tensor, work: torch.dtype, dtype: torch.dtype
                       ) -> tuple[Tensor, Tensor]:
    """Flat table rows ``(L, C, n)`` (``plan.index_dtype``) and weights ``(L, C, n)`` of one chunk; corner
    ``c = bx + 2*by (+ 4*bz)`` as in the training path."""
    n, dims, levels, nd = coords.shape[0], plan.dims, plan.levels, plan.num_dense
    device = coords.device
    u = coords.to(work).t().contiguous()                                       # (d, n), rows contiguous
    # per axis: weights of the low and the high vertex (1 - frac, frac), and the cell
    axis_weights = torch.empty(dims, levels, 2, n, dtype=dtype, device=device)
    cells = torch.empty(dims, levels, n, dtype=plan.index_dtype, device=device)
    one = torch.ones((), dtype=dtype, device=device)
    for axis in range(dims):
        high = axis_weights[axis, :, 1]
        # vertex units, computed in place of the high weight where the dtypes agree (one pass less)
        pos = torch.mul(u[axis], plan.scale, out=high) if work == dtype else u[axis] * plan.scale
        cell = pos.floor()
        if plan.top is not None:
            torch.minimum(cell, plan.top, out=cell)
        pos -= cell
        if pos is not high:
            high.copy_(pos)
        torch.sub(one, high, out=axis_weights[axis, :, 0])
        cells[axis].copy_(cell)

    corners = 2**dims
    index = torch.empty(levels, corners, n, dtype=plan.index_dtype, device=device)
    if nd:
        base = torch.addcmul(cells[0, :nd], cells[1, :nd], plan.dense_strides[:, 1:2])
        for axis in range(2, dims):
            base.addcmul_(cells[axis, :nd], plan.dense_strides[:, axis:axis + 1])
        torch.add(base[:, None], plan.dense_corners, out=index[:nd])
    if nd < levels:
        terms = []
        for axis in range(dims):
            low = cells[axis, nd:].long() * plan.primes[axis]
            terms.append(torch.stack([low, low + plan.primes[axis]], dim=1))  # (Lh, 2, n)
        hashed = index[nd:].view(levels - nd, *([2] * dims), n)
        if dims == 2:
            torch.bitwise_xor(terms[1][:, :, None], terms[0][:, None], out=hashed)
        else:
            yz = terms[2][:, :, None, None] ^ terms[1][:, None, :, None]
            torch.bitwise_xor(yz, terms[0][:, None, None], out=hashed)
        hashed &= plan.hash_mask
        hashed += plan.hashed_offsets.view(-1, *([1] * (dims + 1)))

    wx, wy = axis_weights[0], axis_weights[1]
    if dims == 2:
        weights = wy[:, :, None] * wx[:, None]                                 # (L, by, bx, n)
    else:
        weights = (axis_weights[2][:, :, None, None] * wy[:, None, :, None]) * wx[:, None, None]
    return index, weights.view(levels, corners, n)
