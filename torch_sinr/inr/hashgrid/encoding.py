"""A multiresolution hash-grid encoding (Instant-NGP / SHACIRA style) in plain PyTorch, for 2-D and 3-D.

Geometry. Level ``l`` has ``res = resolutions()[l]`` vertices per axis; vertex ``i`` sits at
``u = i / (res - 1)``, so ``u = 0`` is the first vertex and ``u = 1`` the last one exactly. A point
``u`` in [0, 1]^dims falls in the cell ``cell = clamp(floor(u * (res - 1)), 0, res - 2)`` with
``frac = u * (res - 1) - cell`` in [0, 1]; its feature at that level is the d-linear interpolation
of the table rows of the cell's ``2**dims`` corner vertices (4 in 2-D, 8 in 3-D). Interpolation is
therefore exact at vertices and continuous across cell borders. Coordinates outside [0, 1] are
clamped to [0, 1] first.

Storage. A level whose ``res**dims <= 2**log2_table`` is stored dense: vertex ``(x, y[, z])`` owns
row ``x + y*res (+ z*res*res)``. Finer levels share ``2**log2_table`` rows through the spatial hash
``(x*1) XOR (y*2654435761) [XOR (z*805459861)] mod 2**log2_table`` (the primes of Instant-NGP and
SHACIRA), computed in int64 (``hash_coords``). All levels live in one parameter ``latents`` of
shape ``(sum(level_sizes), latent_dim)``, level after level, so the compression code and the file
format see one ordinary 2-D tensor.

Output. ``forward`` returns ``(N, levels * latent_dim)``: level 0's ``latent_dim`` values, then
level 1's, and so on (level-major).

Memory. One forward builds, for every point, level and corner, an int64 row index, a weight and
the gathered row: about ``N * levels * 2**dims * (8 + 4 + 4*latent_dim)`` bytes of temporaries
(float32 latents; index and weights are kept for backward, the rows are not), e.g. 0.67 GB for
N = 2**18 points of the 16-level 3-D nerfacto grid with 2 features. Backward adds a gradient the
size of ``latents`` and, briefly, the per-corner gradients (``4*latent_dim`` bytes per entry).
Callers with more points than memory allows evaluate them in chunks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import SINRConfigError, SINRInputError
from .fast import LevelPlan, index_and_weights, interpolate_levels, row_gatherer

__all__ = ["HASH_PRIMES", "HashGrid", "HashGridConfig", "hash_coords", "interpolate_hashed_levels"]

# ``rounding(rows) -> (values, slope)``, elementwise; slope None means 1 (see HashGrid.forward).
Rounding = Callable[[Tensor], "tuple[Tensor, Tensor | None]"]

# Per-axis multipliers of the spatial hash (Instant-NGP, SHACIRA, nerfstudio): x, y, z.
HASH_PRIMES = (1, 2654435761, 805459861)

# Largest vertex count per axis: float32 coordinates carry 24 bits, so finer grids cannot be
# addressed, and it keeps vertex * prime far inside int64.
_MAX_RES = 2**24


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    # bool is an int subclass; True as a level count is a bug, not a 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise SINRConfigError(f"HashGridConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise SINRConfigError(f"HashGridConfig.{name} must be {bounds}, got {value}")


@dataclass(frozen=True)
class HashGridConfig:
    """Shape of a multiresolution hash grid: levels, table size, values per row, resolutions.

    ``log2_table`` is T: a level with ``res**dims <= 2**T`` vertices is stored dense, a finer one is
    hashed into ``2**T`` rows. ``latent_dim`` is the number of values per row (SHACIRA stores 1
    integer latent per row; nerfstudio-style grids store 2 features). The table starts uniform in
    ``(-init_scale, init_scale)``.
    """

    dims: int = 2
    levels: int = 16
    log2_table: int = 19
    latent_dim: int = 1
    min_res: int = 16
    max_res: int = 512
    init_scale: float = 1e-4

    def __post_init__(self) -> None:
        _check_int("dims", self.dims, 2, 3)
        _check_int("levels", self.levels, 1)
        _check_int("log2_table", self.log2_table, 1, 30)
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("min_res", self.min_res, 1, _MAX_RES - 1)
        _check_int("max_res", self.max_res, 1, _MAX_RES - 1)
        if self.min_res > self.max_res:
            raise SINRConfigError(f"HashGridConfig.min_res ({self.min_res}) must be <= max_res ({self.max_res})")
        scale = self.init_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
            raise SINRConfigError(f"HashGridConfig.init_scale must be a finite float >= 0, got {scale!r}")

    def resolutions(self) -> list[int]:
        """Vertices per axis at each level: ``1 + floor(min_res * b**l)``, ``b = (max_res/min_res)**(1/(levels-1))``.

        Computed in float64 with NumPy's exp/log/floor, step for step as SHACIRA's
        ``LatentGrid.from_geometric`` does, so the same settings give the same grid (and the same
        latent count). Where ``min_res * b**l`` is an integer in exact arithmetic, rounding can
        land just below it: (16, 512, 24 levels) ends at 512 vertices, not 513.
        """
        if self.levels == 1:
            return [1 + self.min_res]
        b = np.exp((np.log(self.max_res) - np.log(self.min_res)) / (self.levels - 1))
        return [int(1 + np.floor(self.min_res * (b**level))) for level in range(self.levels)]

    def level_sizes(self) -> list[int]:
        """Table rows per level: ``res**dims`` for a dense level, ``2**log2_table`` for a hashed one."""
        table = 2**self.log2_table
        return [res**self.dims if res**self.dims <= table else table for res in self.resolutions()]

    def dense_levels(self) -> list[bool]:
        """Per level: True where every vertex has its own row (``res**dims <= 2**log2_table``)."""
        table = 2**self.log2_table
        return [res**self.dims <= table for res in self.resolutions()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def hash_coords(vertices: Tensor, log2_table: int) -> Tensor:
    """Hashed table row (level offset not included) of integer vertex coordinates ``(M, d)``, d in {2, 3}.

    ``(x*1) XOR (y*2654435761) [XOR (z*805459861)] mod 2**log2_table``, in int64; returns ``(M,)`` int64.
    """
    if isinstance(log2_table, bool) or not isinstance(log2_table, int) or not 1 <= log2_table <= 30:
        raise SINRConfigError(f"log2_table must be an int in 1..30, got {log2_table!r}")
    if not isinstance(vertices, Tensor) or vertices.dim() != 2 or vertices.shape[1] not in (2, 3):
        shape = tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices).__name__
        raise SINRInputError(f"vertices must be an (M, 2) or (M, 3) integer tensor, got {shape}")
    if vertices.dtype.is_floating_point or vertices.dtype.is_complex or vertices.dtype == torch.bool:
        raise SINRInputError(f"vertices must be an integer tensor, got dtype {vertices.dtype}")
    v = vertices.to(torch.int64)
    h = v[:, 0] * HASH_PRIMES[0]
    for axis in range(1, v.shape[1]):
        h = h ^ (v[:, axis] * HASH_PRIMES[axis])
    # The table size is a power of two: masking the low bits is the modulo, also for the negative
    # products int64 wrap-around could give (two's complement), and cheaper than %.
    return h & (2**log2_table - 1)


class HashGrid(nn.Module):
    """Multiresolution hash-grid encoding of points in [0, 1]^dims (see the module docstring).

    ``latents`` ``(sum(level_sizes), latent_dim)`` holds every level's table, level after level;
    ``forward(coords (N, dims))`` returns ``(N, levels * latent_dim)`` in the latents' dtype.
    """

    def __init__(self, config: HashGridConfig, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(config, HashGridConfig):
            raise SINRConfigError(f"config must be a HashGridConfig, got {type(config).__name__}")
        if not dtype.is_floating_point:
            raise SINRConfigError(f"HashGrid dtype must be a floating dtype, got {dtype}")
        self.config = config
        self.dims = config.dims
        self.levels = config.levels
        self.latent_dim = config.latent_dim
        self.out_features = config.levels * config.latent_dim

        resolutions = config.resolutions()
        sizes = config.level_sizes()
        dense = config.dense_levels()
        # Resolutions never decrease, so the dense levels are the first ones; forward relies on it
        # to build dense and hashed indices as two slices instead of masking every level twice.
        self.num_dense = sum(dense)
        if dense != [True] * self.num_dense + [False] * (self.levels - self.num_dense):
            raise SINRConfigError(f"dense levels must come first, got {dense}")
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        # Per level and axis, what a vertex coordinate is multiplied by before the per-axis terms
        # are combined: row strides (1, res, res*res) for a dense level (terms summed), the hash
        # primes for a hashed one (terms XORed).
        multipliers = [[res**axis for axis in range(self.dims)] if is_dense else list(HASH_PRIMES[:self.dims])
                       for res, is_dense in zip(resolutions, dense)]

        self.latents = nn.Parameter(torch.empty(sum(sizes), config.latent_dim, device=device, dtype=dtype))
        with torch.no_grad():
            self.latents.uniform_(-config.init_scale, config.init_scale)
        # Derived from config alone, so not saved in state_dict (persistent=False).
        buffer = dict(device=device)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64, **buffer), persistent=False)
        self.register_buffer("resolution", torch.tensor(resolutions, dtype=torch.int64, **buffer),
                             persistent=False)
        self.register_buffer("dense", torch.tensor(dense, dtype=torch.bool, **buffer), persistent=False)
        self.register_buffer("multipliers", torch.tensor(multipliers, dtype=torch.int64, **buffer),
                             persistent=False)
        self._plans: dict[tuple[torch.device, torch.dtype], LevelPlan] = {}

    def level_plan(self, work: torch.dtype = torch.float32) -> LevelPlan:
        """The inference path's per-level constants on the latents' device, built once per device and dtype."""
        device = self.latents.device
        key = (device, work)
        if key not in self._plans:
            c = self.config
            scale = torch.tensor([res - 1 for res in c.resolutions()], dtype=work, device=device).view(-1, 1)
            strides = [[res**axis for axis in range(self.dims)] for res in c.resolutions()]
            offsets = [int(o) for o in self.offsets.tolist()]
            self._plans[key] = LevelPlan.build(self.dims, scale, scale - 1.0, strides, offsets, self.num_dense,
                                               HASH_PRIMES, c.log2_table, self.latents.shape[0])
        return self._plans[key]

    def extra_repr(self) -> str:
        c = self.config
        return (f"dims={c.dims}, levels={c.levels} ({self.num_dense} dense), log2_table={c.log2_table}, "
                f"latent_dim={c.latent_dim}, res={c.min_res}..{c.max_res}, rows={self.latents.shape[0]}")

    def _check_coords(self, coords: Tensor) -> None:
        if not isinstance(coords, Tensor):
            raise SINRInputError(f"coords must be a tensor, got {type(coords).__name__}")
        if coords.dim() != 2 or coords.shape[1] != self.dims:
            raise SINRInputError(f"coords must have shape (N, {self.dims}), got {tuple(coords.shape)}")
        if not coords.dtype.is_floating_point:
            raise SINRInputError(f"coords must be a floating tensor, got dtype {coords.dtype}")
        if bool(torch.isnan(coords).any()):
            raise SINRInputError(f"coords {tuple(coords.shape)} contain NaN")

    def forward(self, coords: Tensor, transform: Callable[[Tensor], Tensor] | None = None, *,
                rounding: Rounding | None = None) -> Tensor:
        """Features ``(N, levels * latent_dim)`` of points ``coords (N, dims)`` in [0, 1] (clamped).

        ``transform`` maps the gathered table rows (any shape, elementwise) before they are
        interpolated: e.g. the rounding of integer latents during training, applied to the rows
        a batch reads instead of the whole table. With it, the gather and the weighted sum are
        plain autograd ops (slower backward than the fused path, which is used without it).

        ``rounding`` is the fused alternative for an elementwise transform whose derivative is
        known: ``rounding(rows) -> (values, slope)`` (slope None: 1), e.g.
        ``quantize.soft_round_with_slope``. The values are interpolated as ``transform``'s would
        be; backward scales the gradient by the slope and scatters it into the table once.
        """
        if transform is not None or rounding is not None or _needs_grad(self.latents, coords):
            return self.training_forward(coords, transform, rounding=rounding)
        # the inference path (fast.py): the same numbers, no autograd bookkeeping
        out = self.interpolate(coords, self.latents.detach())
        return out.permute(1, 0, 2).reshape(coords.shape[0], self.out_features)

    def interpolate(self, coords: Tensor, table: Tensor) -> Tensor:
        """The inference path: features ``(levels, N, latent_dim)`` (level-major, not yet per point)
        of ``coords`` read from ``table`` (``latents`` or a same-shaped stand-in, e.g. rounded).

        Records nothing for autograd; ``forward`` uses it whenever no gradient is needed.
        """
        if table.shape != self.latents.shape:
            raise SINRInputError(f"table must have the latents' shape {tuple(self.latents.shape)}, "
                                 f"got {tuple(table.shape)}")
        u = self.prepare_coords(coords)
        with torch.no_grad():
            return interpolate_levels(self.level_plan(u.dtype), table.contiguous(), u, u.dtype)

    def prepare_coords(self, coords: Tensor) -> Tensor:
        """``coords`` checked (shape, dtype, NaN) and clamped to [0, 1] in the dtype of the
        vertex-unit arithmetic (float64 for float64 coords, else float32), contiguous: what
        ``interpolate`` reads. A caller that interpolates many chunks of one batch (a decoder)
        prepares the batch once and calls ``fast.interpolate_levels`` per chunk."""
        self._check_coords(coords)
        work = torch.float64 if coords.dtype == torch.float64 else torch.float32   # vertex units up to 2**24
        return coords.to(work).clamp(0.0, 1.0).contiguous()

    def training_forward(self, coords: Tensor, transform: Callable[[Tensor], Tensor] | None = None, *,
                         rounding: Rounding | None = None) -> Tensor:
        """``forward`` through the path autograd records (fused gather, scatter in backward), always.

        ``forward`` takes it whenever a gradient is needed; called directly under ``torch.no_grad()``
        without ``rounding`` it is the inference path this module had before fast.py
        (benchmarks/hashgrid_speed.py times both).
        """
        self._check_coords(coords)
        n, levels, nd = coords.shape[0], self.levels, self.num_dense
        work = torch.float64 if coords.dtype == torch.float64 else torch.float32   # vertex units up to 2**24
        if rounding is not None and transform is None:
            if coords.requires_grad and torch.is_grad_enabled():
                index, weights = self._recorded_index_and_weights(coords, work)
            else:
                # the weights are constants here: fast.py builds the same rows and weights with less work
                u = coords.to(work).clamp(0.0, 1.0)
                with torch.no_grad():
                    index, weights = index_and_weights(self.level_plan(work), u, work, self.latents.dtype)
                index = index.long()  # scatter_add_ takes int64 rows
            out = _RoundedRows.apply(self.latents, index, weights, rounding)
            return out.permute(1, 0, 2).reshape(n, self.out_features)
        index, weights = self._recorded_index_and_weights(coords, work)
        if transform is None:
            out = _WeightedRows.apply(self.latents, index, weights)
        else:
            rows = transform(self.latents.index_select(0, index.reshape(-1))).view(*index.shape, self.latent_dim)
            out = (rows * weights[..., None]).sum(dim=1)
        return out.permute(1, 0, 2).reshape(n, self.out_features)                   # level-major per point

    def _recorded_index_and_weights(self, coords: Tensor, work: torch.dtype) -> tuple[Tensor, Tensor]:
        """Rows ``(L, C, N)`` int64 and weights ``(L, C, N)``, the weights recorded by autograd."""
        n, levels, nd = coords.shape[0], self.levels, self.num_dense
        # Points last: every tensor below is (levels, ..., N), so each elementwise op runs over N
        # contiguous values instead of broadcasting over tiny corner/axis dimensions of size 2.
        u = coords.to(work).clamp(0.0, 1.0).t()                                     # (d, N)
        # Integer buffers, converted here: Module.half() would round float buffers (res - 1 > 2048).
        scale = (self.resolution - 1).to(work)[:, None, None]
        pos = u[None] * scale                                                       # (L, d, N) vertex units
        # the last cell is res - 2: u = 1 is the far corner of the last cell (frac = 1), not a cell past it
        cell = torch.minimum(pos.floor(), scale - 1.0)                              # >= 0 since u >= 0
        frac = (pos - cell).to(self.latents.dtype)
        mult = self.multipliers[:, :, None]
        lo = cell.to(torch.int64) * mult                                            # per-axis term, low vertex
        hi = lo + mult                                                              # (cell + 1) * multiplier

        # Corner c = bx + 2*by (+ 4*bz), b_axis = 0 for the cell's low vertex on that axis, 1 for the high one.
        index = torch.empty(levels, *([2] * self.dims), n, dtype=torch.int64, device=coords.device)
        if nd:
            # dense rows are plain sums of the terms; the level offset rides on the x term
            _corners(_pairs(lo[:nd], hi[:nd], x_shift=self.offsets[:nd, None]), torch.add, out=index[:nd])
        if nd < levels:
            # masking each term first is the same as masking their XOR (the mask keeps low bits)
            mask = 2**self.config.log2_table - 1
            hashed = index[nd:]
            _corners(_pairs(lo[nd:] & mask, hi[nd:] & mask), torch.bitwise_xor, out=hashed)
            hashed += self.offsets[nd:].view(-1, *([1] * (self.dims + 1)))
        weights = _corners(_pairs(1.0 - frac, frac), torch.mul)                    # (L, C, N)

        return index.view(levels, 2**self.dims, n), weights

    def rows(self, level: int, vertices: Tensor) -> Tensor:
        """Global row of ``latents`` (level offset included) of integer vertices ``(M, dims)`` at ``level``."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.levels:
            raise SINRInputError(f"level must be an int in 0..{self.levels - 1}, got {level!r}")
        if not isinstance(vertices, Tensor) or vertices.dim() != 2 or vertices.shape[1] != self.dims:
            shape = tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices).__name__
            raise SINRInputError(f"vertices must have shape (M, {self.dims}), got {shape}")
        if vertices.dtype.is_floating_point or vertices.dtype.is_complex or vertices.dtype == torch.bool:
            raise SINRInputError(f"vertices must be an integer tensor, got dtype {vertices.dtype}")
        res = self.config.resolutions()[level]
        v = vertices.to(device=self.offsets.device, dtype=torch.int64)
        if v.numel() and (int(v.min()) < 0 or int(v.max()) > res - 1):
            raise SINRInputError(f"vertices at level {level} must lie in 0..{res - 1}, "
                                 f"got {int(v.min())}..{int(v.max())}")
        offset = self.offsets[level]
        if bool(self.dense[level]):
            return (v * self.multipliers[level]).sum(dim=1) + offset
        return hash_coords(v, self.config.log2_table) + offset


def interpolate_hashed_levels(table: Tensor, positions: Tensor, scalings: Tensor, log2_table: int) -> Tensor:
    """The Instant-NGP layout nerfstudio's torch ``HashEncoding`` uses, on this module's fused gather.

    Every level is hashed (no dense levels) into its own ``2**log2_table`` rows of ``table``
    (``(levels * 2**log2_table, features)``, level after level); level ``l`` scales ``positions``
    ``(N, d)`` (d = 2 or 3, in [0, 1]) by ``scalings[l]`` and interpolates between the vertices
    ``floor`` and ``floor + 1`` of each axis. Returns ``(N, levels * features)``, level-major.

    Same function as nerfstudio's ``HashEncoding.pytorch_fwd`` (same rows, same weights; only the
    order of the floating-point sums differs), with the table's gradient scattered in one fused
    step: what makes training a torch nerfacto field on a CPU about twice as fast
    (``benchmarks/hashgrid_speed.py`` measures the encoding alone).
    """
    if not isinstance(positions, Tensor) or positions.dim() != 2 or positions.shape[1] not in (2, 3):
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise SINRInputError(f"positions must be an (N, 2) or (N, 3) floating tensor, got {shape}")
    if not positions.dtype.is_floating_point:
        raise SINRInputError(f"positions must be a floating tensor, got dtype {positions.dtype}")
    levels, rows = scalings.numel(), 2**log2_table
    if table.dim() != 2 or table.shape[0] != levels * rows:
        raise SINRInputError(f"table must have shape ({levels} * 2**{log2_table}, features), "
                             f"got {tuple(table.shape)}")
    n, dims = positions.shape
    if not _needs_grad(table, positions):
        # the inference path (fast.py): the same numbers, no autograd bookkeeping
        scale = scalings.to(positions).view(-1, 1)
        offsets = [level * rows for level in range(levels)]
        plan = LevelPlan.build(dims, scale, None, [[0] * dims] * levels, offsets, 0, HASH_PRIMES, log2_table,
                               table.shape[0])
        out = interpolate_levels(plan, table.detach(), positions, positions.dtype)
        return out.permute(1, 0, 2).reshape(n, levels * table.shape[1])
    # As nerfstudio: the float product position * scaling, its floor as the low vertex, the rest as
    # the weight of the high vertex (an integer product gives weight 0 to a vertex it never reads).
    pos = positions.t()[None] * scalings.to(positions).view(-1, 1, 1)           # (L, d, N)
    cell = pos.floor()
    frac = (pos - cell).to(table.dtype)
    primes = torch.tensor(HASH_PRIMES[:dims], dtype=torch.int64, device=positions.device).view(1, -1, 1)
    mask = rows - 1
    lo = cell.to(torch.int64) * primes
    hi = lo + primes
    index = torch.empty(levels, *([2] * dims), n, dtype=torch.int64, device=positions.device)
    _corners(_pairs(lo & mask, hi & mask), torch.bitwise_xor, out=index)
    index += (torch.arange(levels, device=positions.device) * rows).view(-1, *([1] * (dims + 1)))
    weights = _corners(_pairs(1.0 - frac, frac), torch.mul)                        # (L, C, N)
    out = _WeightedRows.apply(table, index.view(levels, 2**dims, n), weights)
    return out.permute(1, 0, 2).reshape(n, levels * table.shape[1])


def _needs_grad(table: Tensor, coords: Tensor) -> bool:
    """Whether autograd must record this call: the fast inference path is taken otherwise."""
    return torch.is_grad_enabled() and (table.requires_grad or getattr(coords, "requires_grad", False))


def _pairs(lo: Tensor, hi: Tensor, x_shift: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
    """Per axis, the (low vertex, high vertex) values ``(L', N)`` of ``lo`` / ``hi`` ``(L', d, N)``."""
    pairs = [(lo[:, axis], hi[:, axis]) for axis in range(lo.shape[1])]
    if x_shift is not None:
        pairs[0] = (pairs[0][0] + x_shift, pairs[0][1] + x_shift)
    return pairs


def _corners(pairs: list[tuple[Tensor, Tensor]], op, out: Tensor | None = None) -> Tensor:
    """``op(op(z[bz], y[by]), x[bx])`` for every corner ``c = bx + 2*by (+ 4*bz)``: ``(L', 2**d, N)``.

    With ``out`` (``(L', [2,] 2, 2, N)``, integer indices) each corner is written in place into its
    contiguous ``(L', N)`` slice, with no stacked copy; without it the corners are stacked, which
    autograd can follow (``out=`` ops are not differentiable, and the weights carry the gradient of
    the coordinates). The y/z combination is shared by the two x corners.
    """
    x, y = pairs[0], pairs[1]
    z = pairs[2] if len(pairs) == 3 else None
    results = []
    for bz in (0, 1) if z is not None else (None,):
        for by in (0, 1):
            yz = y[by] if z is None else op(z[bz], y[by])
            for bx in (0, 1):
                if out is None:
                    results.append(op(yz, x[bx]))
                else:
                    op(yz, x[bx], out=out[:, by, bx] if z is None else out[:, bz, by, bx])
    if out is None:
        return torch.stack(results, dim=1)
    return out.view(out.shape[0], 2 ** len(pairs), out.shape[-1])


def _scatter_rows(grad_rows: Tensor, index: Tensor, shape: torch.Size) -> Tensor:
    """``zeros(shape)`` with ``grad_rows (M, F)`` summed into the rows ``index`` (any shape, M entries).

    One-feature tables scatter 1-D: 2**20 random rows into a 4.9M-row table took ~8 ms here
    against ~42 ms through the expanded 2-D index (1 thread; the same sums in the same order).
    """
    grad_table = grad_rows.new_zeros(shape)
    if shape[1] == 1:
        grad_table.view(-1).scatter_add_(0, index.reshape(-1), grad_rows.view(-1))
    else:
        grad_table.scatter_add_(0, index.reshape(-1, 1).expand(-1, shape[1]), grad_rows)
    return grad_table


class _WeightedRows(torch.autograd.Function):
    """``out[l, n] = sum_c weights[l, c, n] * table[index[l, c, n]]``: gather and weighted sum in one.

    Backward scatters into the table with ``scatter_add_`` along an expanded index, for which CPU
    PyTorch has a dedicated kernel: 2**23 random rows into a 6.1M-row table took 0.28 s here against
    0.61 s for ``index_add_`` (``index_select``'s backward) and 2.3 s for ``F.embedding``'s backward
    (2 threads). The gathered rows are not kept for backward; they are gathered again only if the
    weights (and so the coordinates) need a gradient.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        levels, corners, n = index.shape
        rows = row_gatherer(table)(index.view(-1)).view(levels, corners, n, table.shape[1])
        out = rows[:, 0] * weights[:, 0, :, None]
        for c in range(1, corners):
            out.addcmul_(rows[:, c], weights[:, c, :, None])
        ctx.save_for_backward(table, index, weights)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        table, index, weights = ctx.saved_tensors
        features = table.shape[1]
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_rows = (weights[..., None] * grad_out[:, None]).view(-1, features)
            grad_table = _scatter_rows(grad_rows, index, table.shape)
        if ctx.needs_input_grad[2]:
            rows = table.index_select(0, index.view(-1)).view(*index.shape, features)
            grad_weights = (rows * grad_out[:, None]).sum(-1)
        return grad_table, None, grad_weights


class _RoundedRows(torch.autograd.Function):
    """``_WeightedRows`` of ``values, slope = rounding(table rows)``: the rounding fused in.

    Forward interpolates the rounded values exactly as ``_WeightedRows`` interpolates rows.
    Backward needs no autograd graph of the rounding: the rows' gradient is
    ``weight * grad_out * slope``, scattered into the table once with ``scatter_add_``. Against
    an autograd transform (``transform=``), this saves the rounding's recorded intermediates
    and their backward ops, and ``index_select``'s slower ``index_add_`` backward.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weights: Tensor, rounding: Rounding) -> Tensor:
        levels, corners, n = index.shape
        rows = row_gatherer(table)(index.view(-1)).view(levels, corners, n, table.shape[1])
        values, slope = rounding(rows)
        out = values[:, 0] * weights[:, 0, :, None]
        for c in range(1, corners):
            out.addcmul_(values[:, c], weights[:, c, :, None])
        ctx.has_slope = slope is not None
        ctx.table_shape = table.shape
        keep_values = values if ctx.needs_input_grad[2] else None
        ctx.save_for_backward(index, weights, slope, keep_values)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        index, weights, slope, values = ctx.saved_tensors
        features = ctx.table_shape[1]
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_rows = weights[..., None] * grad_out[:, None]
            if ctx.has_slope:
                grad_rows *= slope
            grad_table = _scatter_rows(grad_rows.view(-1, features), index, ctx.table_shape)
        if ctx.needs_input_grad[2]:
            grad_weights = (values * grad_out[:, None]).sum(-1)
        return grad_table, None, grad_weights, None
