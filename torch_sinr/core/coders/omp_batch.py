"""Batch OMP: all rows at once, certified low-precision screening, Gram-based Cholesky updates.

Per step and row, the work that does not depend on k2 grows with the support size t instead of
k1 * t (today's screening OMP keeps an orthonormal basis of the support, B x t x k1 float64,
and reads it twice a step):

1. Selection: |A^T r| in bfloat16 or float32 (one GEMM), then float64 re-scoring of the few
   atoms that the certified error bound cannot rule out (``screening``); the float64 argmax,
   lowest index on ties, as in scikit-learn.
2. Cholesky growth from the Gram matrix: the new row of L is ``L^-1 G[I, new]``. G = A^T A is
   computed once per dictionary in float64 when it fits ``GRAM_MAX_BYTES``; otherwise the
   support's atoms are kept per row (B x s x k1) and the column is their product with the new
   atom. L^-1 is kept instead of L: its new row is ``[-v/d, 1/d]`` with ``v = L^-T lower``, so
   both triangular solves are batched matrix-vector products.
3. Coefficients ``x = L^-T y`` with ``L y = A_I^T w`` (y grows one entry a step), and the
   residual ``r = w - A_I x`` from the dictionary by a sparse (CSR) product, as scikit-learn
   recomputes it, so no error accumulates across steps.

Rows are processed in chunks so that per-row state stays under ``CHUNK_BYTES``.
"""

from __future__ import annotations

import warnings

import torch
from torch.profiler import record_function

from .screening import BLOCK, CHUNK_COLUMNS, ScreenDictionary, candidates, hot_blocks

GRAM_MAX_BYTES = 256 * 2**20
CHUNK_BYTES = 256 * 2**20
# Hot blocks per row to budget for (measured 1-3 with bfloat16 screening; more are rare, and
# MAX_BLOCKS_PER_ROW caps them).
HOT_BLOCKS_PER_ROW = 4


class PreparedDictionary:
    """What batch OMP needs of one dictionary, computed once per (dictionary, device, dtype)."""

    def __init__(self, dictionary: torch.Tensor, device: torch.device, screen_dtype: torch.dtype):
        k1, k2 = dictionary.shape
        self.k1, self.k2 = k1, k2
        padded = -(-k2 // BLOCK) * BLOCK
        # (padded k2, k1) float64, zero atoms padding the last block: atoms as rows for gathers and
        # CSR products (the first k2 rows, a contiguous view), and as (blocks, BLOCK, k1) for
        # scoring whole blocks in float64 when the dictionary is screened in chunks.
        rows = torch.zeros(padded, k1, dtype=torch.float64, device=device)
        rows[:k2] = dictionary.to(device=device, dtype=torch.float64).t()
        self.atoms_t = rows[:k2]
        self.atom_blocks = rows.view(padded // BLOCK, BLOCK, k1)
        self.atom_sq = (self.atoms_t * self.atoms_t).sum(1)
        self.screen = ScreenDictionary(self.atoms_t, screen_dtype)
        self.gram = self.atoms_t @ self.atoms_t.t() if 8 * k2 * k2 <= GRAM_MAX_BYTES else None
        self._gram32: torch.Tensor | None = None

    def gram32(self) -> torch.Tensor:
        """The Gram matrix rounded to float32 (made on first use, kept): the correlation-space
        kernel's screening copy."""
        if self._gram32 is None:
            self._gram32 = self.gram.to(torch.float32).contiguous()
        return self._gram32

    def nbytes(self) -> int:
        """Bytes held for this dictionary: float64 atoms, the screening copy, the Gram matrix (and
        its float32 copy once made)."""
        gram = 0 if self.gram is None else self.gram.numel() * 8
        gram += 0 if self._gram32 is None else self._gram32.numel() * 4
        return self.atom_blocks.numel() * 8 + self.screen.nbytes() + gram + self.atom_sq.numel() * 8


def rows_per_chunk(k1: int, k2: int, limit: int, has_gram: bool, screen_bytes: int) -> int:
    """Rows whose state and per-step temporaries fit ``CHUNK_BYTES`` (at least one)."""
    padded = -(-k2 // BLOCK) * BLOCK
    chunked = padded > CHUNK_COLUMNS
    per_row = (16 * limit * limit  # L^-1 as rows and as columns
               + 8 * 4 * limit + 8 * 3 * k1  # support, coefficients, v, lower; w, r, product
               + k2  # taken mask
               + 4 * padded // BLOCK  # block maxima
               + (CHUNK_COLUMNS if chunked else padded) * (screen_bytes + 4))  # screened product, float32 |.|
    if chunked:
        per_row += HOT_BLOCKS_PER_ROW * BLOCK * k1 * 8  # hot blocks' atoms gathered for float64 scoring
    if not has_gram:
        per_row += 8 * limit * k1  # the support's atoms
    return max(1, CHUNK_BYTES // per_row)


def _sparse_rows_times_atoms(index: torch.Tensor, coef: torch.Tensor, atoms_t: torch.Tensor) -> torch.Tensor:
    """(n, k1) = sum_j coef[:, j] * atoms_t[index[:, j]], as one CSR x dense product."""
    n, t = index.shape
    crow = torch.arange(0, n * t + 1, t, device=index.device, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        sparse = torch.sparse_csr_tensor(crow, index.reshape(-1), coef.reshape(-1), (n, atoms_t.shape[0]),
                                         check_invariants=False)
        return torch.sparse.mm(sparse, atoms_t)


def _select(prep: PreparedDictionary, r: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the float64 argmax of |A^T r| (lowest index on ties) over atoms not taken, and
    whether an atom already taken scores at least as high. scikit-learn stops a signal then (its
    residual is numerically zero, and its argmax over all atoms lands on the support)."""
    n = r.shape[0]
    corr, blocks, bound = prep.screen.block_maxima(r)
    if corr is not None:
        pair_row, pair_atom, full_rows = candidates(corr, blocks, bound, prep.k2, prep.screen.out_rel)
        del corr
        raw = (prep.atoms_t[pair_atom] * r[pair_row]).sum(1).abs()
    else:  # screened in chunks: score every atom of each hot block in float64
        block_row, block, _, full_rows = hot_blocks(blocks, bound, prep.screen.out_rel)
        raw = torch.bmm(prep.atom_blocks[block], r[block_row][:, :, None]).squeeze(2).abs()  # (pairs, BLOCK)
        pair_atom = (block[:, None] * BLOCK + torch.arange(BLOCK, device=r.device)).reshape(-1)
        pair_row = block_row[:, None].expand(-1, BLOCK).reshape(-1)
        raw = raw.reshape(-1)
        real = pair_atom < prep.k2  # the zero atoms padding the last block
        pair_atom, pair_row, raw = pair_atom[real], pair_row[real], raw[real]
    was_taken = taken[pair_row, pair_atom]
    score = raw.masked_fill(was_taken, -1.0)
    best = torch.full((n,), -2.0, dtype=torch.float64, device=r.device)
    best.scatter_reduce_(0, pair_row, score, reduce="amax")
    best_taken = torch.full((n,), -2.0, dtype=torch.float64, device=r.device)
    best_taken.scatter_reduce_(0, pair_row, raw.masked_fill(~was_taken, -2.0), reduce="amax")
    winner = torch.where(score == best[pair_row], pair_atom, prep.k2)
    new = torch.full((n,), prep.k2, dtype=torch.int64, device=r.device)
    new.scatter_reduce_(0, pair_row, winner, reduce="amin")
    if full_rows.numel():
        full = (r[full_rows] @ prep.atoms_t.t()).abs()
        best_taken[full_rows] = full.masked_fill(~taken[full_rows], -2.0).amax(dim=1)
        full.masked_fill_(taken[full_rows], -1.0)
        best[full_rows], new[full_rows] = full.max(dim=1)  # the first maximum on ties
    return new, best_taken >= best


def batch_omp(
    prep: PreparedDictionary,
    w: torch.Tensor,
    limit: int,
    tol2: torch.Tensor,
    track_residual: bool,
    progress=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """OMP on the rows of ``w`` (float64, on the dictionary's device). Returns support (B, limit),
    coefficients (B, limit), counts (B,) and, with ``track_residual``, the total squared residual
    after each step (limit,)."""
    batch, k1 = w.shape
    device = w.device
    chunk = rows_per_chunk(k1, prep.k2, limit, prep.gram is not None, prep.screen.dtype.itemsize)
    support = torch.zeros(batch, limit, dtype=torch.int64, device=device)
    coef = torch.zeros(batch, limit, dtype=torch.float64, device=device)
    counts = torch.zeros(batch, dtype=torch.int64, device=device)
    history = torch.zeros(limit, dtype=torch.float64, device=device) if track_residual else None
    for start in range(0, batch, chunk):
        stop = min(batch, start + chunk)
        _chunk(prep, w[start:stop], limit, tol2[start:stop], support[start:stop], coef[start:stop],
               counts[start:stop], history, progress)
    return support, coef, counts, history


def _chunk(prep, w, limit, tol2, support, coef, counts, history, progress) -> None:
    batch, k1 = w.shape
    device = w.device
    # L^-1 twice, as rows (linv) and as columns (upper = L^-T): each of the two triangular
    # products a step is then a row vector times a matrix, the form batched GEMV runs fastest in
    # (measured 2x over matrix times column on 1796 x 116 x 116 float64). Rows of L^-1 never
    # change once written, so each step writes one row of linv and one column of upper.
    linv = torch.zeros(batch, limit, limit, dtype=torch.float64, device=device)
    upper = torch.zeros(batch, limit, limit, dtype=torch.float64, device=device)
    taken = torch.zeros(batch, prep.k2, dtype=torch.bool, device=device)
    held = None if prep.gram is not None else torch.zeros(batch, limit, k1, dtype=torch.float64, device=device)
    residual = w.clone()
    active = (w * w).sum(1) > tol2
    t = -1
    for t in range(limit):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        row_ids = rows
        if rows.numel() == batch:
            rows = slice(None)  # all rows: index with views instead of copies (the common case)
        r = residual[rows]
        with record_function("sinr_omp.select"):  # phases named for the profiler (benchmarks.core)
            new, on_support = _select(prep, r, taken[rows])
        if on_support.any():
            active[row_ids[on_support]] = False
            keep = ~on_support
            rows = row_ids = row_ids[keep]
            new = new[keep]
            if rows.numel() == 0:
                break
        with record_function("sinr_omp.cholesky"):
            atom = prep.atoms_t[new]  # (n, k1)
            if t == 0:
                lower = v = atom.new_zeros(atom.shape[0], 0)
            else:
                if prep.gram is not None:
                    column = prep.gram[new[:, None], support[rows, :t]]  # G[I, new]: within one row of G
                else:
                    column = torch.bmm(held[rows, :t], atom[:, :, None]).squeeze(2)
                lower = torch.bmm(column[:, None, :], upper[rows, :t, :t]).squeeze(1)  # L^-1 A_I^T a
            diag2 = prep.atom_sq[new] - (lower * lower).sum(1)
            # A (numerically) dependent atom cannot improve the fit: stop that row, as sklearn does.
            degenerate = diag2 <= 1e4 * torch.finfo(torch.float64).eps * prep.atom_sq[new]
            if degenerate.any():
                active[row_ids[degenerate]] = False
                keep = ~degenerate
                rows = row_ids = row_ids[keep]
                new, atom, lower, diag2 = new[keep], atom[keep], lower[keep], diag2[keep]
                if rows.numel() == 0:
                    break
            diag = diag2.sqrt()
            if t > 0:
                # v = L^-T L^-1 A_I^T a: the new atom's least-squares coefficients on the support.
                v = torch.bmm(lower[:, None, :], linv[rows, :t, :t]).squeeze(1)
                linv[rows, t, :t] = -v / diag[:, None]
                upper[rows, :t, t] = -v / diag[:, None]
            linv[rows, t, t] = 1.0 / diag
            upper[rows, t, t] = 1.0 / diag
            support[rows, t] = new
            taken[row_ids, new] = True
            if held is not None:
                held[rows, t] = atom
            counts[rows] = t + 1
        with record_function("sinr_omp.residual"):
            # The new atom's coefficient is a^T r / d^2 (r is orthogonal to the support), and the old
            # ones move by -coefficient * v: x = L^-T y grown by one row of L^-1.
            x = coef[rows, : t + 1]
            step = (atom * residual[rows]).sum(1) / diag2
            x[:, :t] -= step[:, None] * v
            x[:, t] = step
            coef[rows, : t + 1] = x
            r = w[rows] - _sparse_rows_times_atoms(support[rows, : t + 1], x, prep.atoms_t)
            residual[rows] = r
            active[rows] = (r * r).sum(1) > tol2[rows]
        if history is not None:
            history[t] += (residual * residual).sum()
        if progress is not None:
            progress.update(row_ids.numel())
    if history is not None and t < limit - 1:
        history[t + 1:] += (residual * residual).sum()
