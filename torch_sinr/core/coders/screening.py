"""Exact OMP atom selection from a low-precision correlation product.

Each OMP step needs ``argmax_j |a_j . r|`` over all k2 atoms, decided in float64 as
scikit-learn decides it. Computing all k2 correlations in float64 costs a float64 GEMM per step;
here they are computed in a cheaper precision (bfloat16 on CPUs with AMX/AVX512-BF16 units,
float32 elsewhere) together with a *certified* per-row error bound ``e``:

    |c_low[j] - c_exact[j]| <= e   for every atom j.

Every atom that could be the float64 argmax then satisfies ``|c_low[j]| >= max|c_low| - 2 e``
(proof: the true argmax j* has ``|c_low[j*]| >= |c[j*]| - e >= |c[m]| - e >= |c_low[m]| - 2e``
for the low-precision argmax m). Only those candidates, usually one or two per row, are
re-scored in float64. So the chosen atom is the float64 argmax, whatever the screening precision;
precision only changes how many candidates get re-scored.

The bound (Cauchy-Schwarz over the rounding of both operands, Higham's gamma_n for a float32
accumulation in any order, and the rounding of a bfloat16 output):

    e = |da| |r| + |a~| |dr| + gamma_k1 |a~| |r~| + 2**-8 max|c_low|

with ``da``/``dr`` the exact rounding errors of the atoms and the residual, measured, not assumed.
It holds for any GEMM that multiplies exactly and accumulates in float32; ``calibrate`` checks
that on this machine once before bfloat16 screening is trusted (a GEMM that accumulated in
bfloat16 would fail the check, and float32 screening would be used instead).

Candidates are found without a full-size compare-and-nonzero pass (the slowest part when
measured): the row maxima of 64-atom blocks are reduced first, and only blocks whose maximum
reaches the threshold are searched. Dictionaries wider than ``CHUNK_COLUMNS`` are screened in
column chunks whose product stays in cache, keeping only the block maxima (measured 8.3 vs 27 ms
a step on 195 x 64 -> 65536); every atom of a block that reaches the threshold is then scored in
float64 directly.
"""

from __future__ import annotations

import os
import time

import torch

from ...errors import SINRConfigError

_U32 = 2.0**-24
_BF16_OUT = 2.0**-8  # a bfloat16 output is within 2**-9 of the float32 sum; twice that for slack
BLOCK = 64
CHUNK_COLUMNS = 4096
# Rows with more candidate blocks than this (a residual that is all but zero: every atom is within
# the error bound) are re-scored in full float64 instead. Measured with bfloat16 screening on
# 1796 x 256 -> 4096 rows: 1-3 candidate blocks per row, rarely more than 9.
MAX_BLOCKS_PER_ROW = 32

SCREEN_DTYPES = ("float32", "bfloat16")
_ENV = "TORCH_SINR_OMP_SCREEN"


class ScreenDictionary:
    """A dictionary prepared for screening: padded to whole blocks, in the screening dtype, with
    the norms the error bound needs."""

    def __init__(self, atoms64_t: torch.Tensor, dtype: torch.dtype, chunk_columns: int | None = None):
        k2, k1 = atoms64_t.shape
        chunk_columns = CHUNK_COLUMNS if chunk_columns is None else chunk_columns
        self.k1, self.k2, self.dtype = k1, k2, dtype
        padded = -(-k2 // BLOCK) * BLOCK
        low = torch.zeros(k1, padded, dtype=dtype, device=atoms64_t.device)
        low[:, :k2] = atoms64_t.t().to(torch.float32).to(dtype)
        self.padded = padded
        low64 = low[:, :k2].double()
        self.norm_low = float(low64.norm(dim=0).max())
        self.norm_error = float((atoms64_t.t() - low64).norm(dim=0).max())
        del low64
        # One screening copy: the whole (k1, padded k2) matrix, or its column chunks (contiguous,
        # so each chunk's product is one GEMM). Padding columns are zero, and never candidates.
        if padded > chunk_columns:
            self.matrix, self.chunks = None, [low[:, j:j + chunk_columns].contiguous()
                                              for j in range(0, padded, chunk_columns)]
        else:
            self.matrix, self.chunks = low, None
        n = k1 + 1
        self.gamma = n * _U32 / (1 - n * _U32)
        self.out_rel = _BF16_OUT if dtype == torch.bfloat16 else 0.0

    def block_maxima(self, residual: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Per row, the maximum screened |a_j . r| of every block of ``BLOCK`` atoms (rows, blocks),
        the error bound (as ``correlations``) and, for a dictionary screened in one piece, the
        screened correlations themselves (None when screened in chunks)."""
        if self.chunks is None:
            corr, bound = self.correlations(residual)
            return corr, corr.view(corr.shape[0], -1, BLOCK).amax(dim=2), bound
        low = residual.to(torch.float32).to(self.dtype)
        rows = residual.shape[0]
        blocks = torch.empty(rows, self.padded // BLOCK, dtype=torch.float32, device=residual.device)
        start = 0
        for chunk in self.chunks:
            width = chunk.shape[1] // BLOCK
            blocks[:, start:start + width] = (low @ chunk).float().abs_().view(rows, width, BLOCK).amax(dim=2)
            start += width
        return None, blocks, self._bound(residual, low)

    def nbytes(self) -> int:
        parts = [self.matrix] if self.chunks is None else self.chunks
        return sum(p.numel() * p.element_size() for p in parts)

    def correlations(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """|A^T r| as float32 (rows, padded k2) and the per-row bound on its error, apart from
        the rounding of a bfloat16 output (``out_rel`` times the row maximum; ``candidates``).
        For a dictionary screened in one piece (``chunks`` is None)."""
        low = residual.to(torch.float32).to(self.dtype)
        # float32 for the reductions that follow: converting once is faster than reducing
        # bfloat16 on the CPU (measured 5.3 vs 7.4 ms on 1796 x 4096)
        corr = (low @ self.matrix).float().abs_()
        return corr, self._bound(residual, low)

    def _bound(self, residual: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low64 = low.double()
        r_norm = residual.norm(dim=1)
        bound = (self.norm_error * r_norm
                 + self.norm_low * (residual - low64).norm(dim=1)
                 + self.gamma * self.norm_low * low64.norm(dim=1))
        if residual.is_cuda and self.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
            # a user who allowed TF32 gets float32 GEMMs that round both inputs to 10-bit mantissas
            bound = bound + 2 * 2.0**-11 * self.norm_low * r_norm
        return bound * (1 + 1e-6)


def hot_blocks(blocks: torch.Tensor, bound: torch.Tensor, out_rel: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (row, block) pairs whose block maximum reaches ``max - 2 bound`` in its row, the
    per-row threshold, and the rows with too many such blocks to list (rescored in full)."""
    top = blocks.amax(dim=1)
    threshold = top - 2 * (bound.float() + out_rel * top)
    # float32 rounding of the threshold itself: lower it by one more ulp-sized step
    threshold = threshold - top * 2 * _U32
    hot = blocks >= threshold[:, None]
    too_many = hot.sum(dim=1) > MAX_BLOCKS_PER_ROW
    if too_many.any():
        hot &= ~too_many[:, None]
    pair_row, pair_block = hot.nonzero(as_tuple=True)
    return pair_row, pair_block, threshold, too_many.nonzero().squeeze(1)


def candidates(corr: torch.Tensor, blocks: torch.Tensor, bound: torch.Tensor, k2: int, out_rel: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (row, atom) whose screened correlation reaches ``max - 2 bound`` in its row, from
    ``block_maxima``'s output for a dictionary screened in one piece.

    Returns (pair rows, pair atoms, rows with too many candidates to list).
    """
    rows = corr.shape[0]
    pair_row, pair_block, threshold, full = hot_blocks(blocks, bound, out_rel)
    values = corr.view(rows, -1, BLOCK)[pair_row, pair_block]  # (pairs, BLOCK)
    keep_pair, offset = (values >= threshold[pair_row][:, None]).nonzero(as_tuple=True)
    atom = pair_block[keep_pair] * BLOCK + offset
    row = pair_row[keep_pair]
    valid = atom < k2
    return row[valid], atom[valid], full


# --- choosing the screening precision ---------------------------------------------------------
_CHOICE: dict[tuple, str] = {}


def screen_dtype(device: torch.device) -> torch.dtype:
    """float32, or bfloat16 where it is measured faster on this machine and its GEMM passes
    ``calibrate``. ``TORCH_SINR_OMP_SCREEN=float32|bfloat16`` overrides (bfloat16 still has to
    pass calibration)."""
    forced = os.environ.get(_ENV)
    if forced is not None and forced not in SCREEN_DTYPES:
        raise SINRConfigError(f"{_ENV} must be one of {SCREEN_DTYPES}, got {forced!r}")
    if device.type != "cpu" or forced == "float32":
        # CUDA float32 GEMMs are fast enough, and bfloat16 GEMMs there may reduce in bfloat16.
        return torch.float32
    key = (str(device), forced)
    if key not in _CHOICE:
        _CHOICE[key] = _measure_choice(force=forced == "bfloat16")
    return getattr(torch, _CHOICE[key])


def _measure_choice(force: bool) -> str:
    if not calibrate():
        return "float32"
    if force:
        return "bfloat16"
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 4096, generator=gen)
    r = torch.randn(512, 256, generator=gen)
    times = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        ad, rd = a.to(dtype), r.to(dtype)
        rd @ ad  # warm-up (oneDNN builds its kernel on the first call)
        start = time.perf_counter()
        for _ in range(3):
            rd @ ad
        times[name] = time.perf_counter() - start
    # bfloat16 also re-scores more candidates; demand a clear margin.
    return "bfloat16" if times["bfloat16"] < 0.6 * times["float32"] else "float32"


def calibrate(trials: int = 4) -> bool:
    """Does this machine's bfloat16 GEMM stay inside the bound ``correlations`` assumes?

    Checked on long (k1 = 1024) random and all-positive products, where an accumulation in
    bfloat16 would exceed it by orders of magnitude.
    """
    gen = torch.Generator().manual_seed(1234)
    for trial in range(trials):
        k1 = 1024
        atoms = torch.randn(512, k1, generator=gen, dtype=torch.float64)
        residual = torch.randn(64, k1, generator=gen, dtype=torch.float64)
        if trial % 2:
            atoms, residual = atoms.abs(), residual.abs()
        screen = ScreenDictionary(atoms.float().double(), torch.bfloat16, chunk_columns=atoms.shape[0])
        corr, bound = screen.correlations(residual)
        exact = (residual @ atoms.float().double().t()).abs()
        error = (corr[:, :512].double() - exact).abs()
        allowed = bound[:, None] + _BF16_OUT * exact
        if not bool((error <= allowed).all()):
            return False
    return True
