"""Screening OMP (the original path): every row of a layer at once, CPU or CUDA.

All B signals advance together, so each step's atom selection is a single (B x k1) @ (k1 x k2)
float32 product; the top ``_CANDIDATES`` atoms per row are re-scored in float64, so the chosen
atom is the float64 argmax, as in scikit-learn. A row whose float32 margin is too thin to trust
is re-scored in full float64. The support is kept as an orthonormal basis Q (B x t x k1, float64)
with the Cholesky factor of its Gram matrix; the residual updates in O(k1 t) a step.

``omp_batch`` is the faster path for most sizes; this one stays as the reference it is tested
against and for the sizes where it still wins (``omp.choose_method``).
"""

from __future__ import annotations

import torch

_CANDIDATES = 3


def _top(scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n largest entries per row and their columns (``topk``'s answer, in place of it: n
    passes of ``max`` cost a fraction of ``topk`` on wide rows, measured 3-4x on 64 x 65536).
    Overwrites the picked entries of ``scores`` (non-negative) with -1."""
    values, columns = [], []
    for _ in range(n):
        value, column = scores.max(dim=1)
        values.append(value)
        columns.append(column)
        scores.scatter_(1, column[:, None], -1.0)
    return torch.stack(values, 1), torch.stack(columns, 1)


def screening_omp(
    dictionary: torch.Tensor,
    signals: torch.Tensor,
    limit: int,
    tol2: torch.Tensor,
    track_residual: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """OMP by float32 screening; the arguments and results as ``omp_batch.batch_omp``'s."""
    k1, k2 = dictionary.shape
    batch = signals.shape[0]
    device = signals.device
    atoms64 = dictionary.to(device=device, dtype=torch.float64)
    atoms32 = atoms64.to(torch.float32)
    atoms64_t = atoms64.t().contiguous()  # (k2, k1): gathering atoms as rows
    atom_norm_max = atoms64.norm(dim=0).max()
    w = signals.to(torch.float64)
    residual = w.clone()

    support = torch.zeros(batch, limit, dtype=torch.int64, device=device)
    counts = torch.zeros(batch, dtype=torch.int64, device=device)
    # Support Gram matrix G_I = L L^T (lower L); Q = A_I L^-T is an orthonormal basis of the
    # support, y = Q^T w. Each step appends one row to L, one vector to Q and one entry to y,
    # so the residual updates in O(k1) and x = L^-T y is solved once at the end.
    # Only the entries a row has written are ever read (padding is fixed up before the solve).
    chol = torch.empty(batch, limit, limit, dtype=torch.float64, device=device)
    basis = torch.empty(batch, limit, k1, dtype=torch.float64, device=device)
    proj = torch.empty(batch, limit, dtype=torch.float64, device=device)
    taken = torch.zeros(batch, k2, dtype=torch.bool, device=device)
    active = (w * w).sum(1) > tol2
    n_cand = min(_CANDIDATES, k2)
    history = torch.zeros(limit, dtype=torch.float64, device=device) if track_residual else None

    for t in range(limit):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        if rows.numel() == batch:
            rows = slice(None)  # all rows: index with views instead of copies
        row_ids = torch.arange(batch, device=device) if isinstance(rows, slice) else rows
        r = residual[rows]
        # 1) Select: float32 screening, float64 decision among the best candidates.
        # Taken atoms are orthogonal to the residual (|corr| ~ rounding noise); they are masked
        # among the candidates below, which is cheaper than masking the whole (B, k2) matrix.
        corr32 = (r.to(torch.float32) @ atoms32).abs_()
        top32, cand = _top(corr32, n_cand)
        cand, order = cand.sort(dim=1)  # ascending index: ties resolve to the lowest, as np.argmax
        top32 = top32.gather(1, order)
        corr64 = torch.bmm(atoms64_t[cand], r[:, :, None]).squeeze(2).abs()
        corr64 = corr64.masked_fill(taken[rows].gather(1, cand), -1.0)
        best64, pos = corr64.max(dim=1)
        new = cand.gather(1, pos[:, None]).squeeze(1)
        # Worst-case float32 error of a correlation (rounding r, then a k1-term dot product in any
        # order): (k1 + 1) * 2**-24 * |a| * |r|. Where the margin to the last candidate is thinner
        # than two such errors, the true argmax may lie outside: score those rows fully.
        bound = (k1 + 1) * 2.0**-24 * atom_norm_max * r.norm(dim=1)
        unsure = (best64 - top32.min(dim=1).values.double()) < 2 * bound
        if n_cand < k2 and unsure.any():
            ur = unsure.nonzero().squeeze(1)
            full = (r[ur] @ atoms64).abs().masked_fill_(taken[row_ids[ur]], -1.0)
            new[ur] = full.argmax(dim=1)
        # 2) Grow L and Q (Gram-Schmidt of the new atom against the support).
        atom = atoms64_t[new]  # (R, k1)
        atom_sq = (atom * atom).sum(1)
        if t == 0:
            lower = atom.new_zeros(atom.shape[0], 0)
            ortho = atom
        else:
            lower = torch.bmm(basis[rows, :t], atom[:, :, None]).squeeze(2)  # L^-1 A_I^T a
            ortho = atom - torch.bmm(lower[:, None, :], basis[rows, :t]).squeeze(1)
        diag2 = atom_sq - (lower * lower).sum(1)
        # A (numerically) dependent atom cannot improve the fit: stop that row, as sklearn does.
        degenerate = diag2 <= 1e4 * torch.finfo(torch.float64).eps * atom_sq
        if degenerate.any():
            active[row_ids[degenerate]] = False
            keep = ~degenerate
            rows, atom, lower, diag2, new, ortho, r = (
                row_ids[keep], atom[keep], lower[keep], diag2[keep], new[keep], ortho[keep], r[keep])
            row_ids = rows
            if rows.numel() == 0:
                break
        diag = diag2.sqrt()
        q = ortho / diag[:, None]
        chol[rows, t, :t] = lower
        chol[rows, t, t] = diag
        basis[rows, t] = q
        support[rows, t] = new
        taken[row_ids, new] = True
        counts[rows] = t + 1
        coeff = (q * r).sum(1)
        proj[rows, t] = coeff
        r = r - coeff[:, None] * q
        residual[rows] = r
        active[rows] = (r * r).sum(1) > tol2[rows]
        if history is not None:
            history[t] = (residual * residual).sum()

    # 3) Least squares on each support: L^T x = y (padding: unit diagonal, y = 0, so x = 0).
    pad = torch.arange(limit, device=device)[None, :] >= counts[:, None]
    chol.masked_fill_(pad[:, :, None], 0.0)
    chol.diagonal(dim1=1, dim2=2).add_(pad.to(torch.float64))
    proj.masked_fill_(pad, 0.0)
    coef = torch.linalg.solve_triangular(chol.transpose(1, 2), proj[:, :, None], upper=True).squeeze(2)
    coef = coef.masked_fill(pad, 0.0)

    if history is not None and t < limit - 1:
        history[t + 1 :] = (residual * residual).sum()
    return support, coef, counts, history
