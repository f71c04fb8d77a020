"""L1 basis pursuit (the supplement's Algorithm 1): min ||x||_1 subject to A x = w.

Solved exactly as a linear program with scipy's HiGHS (x = u - v, u, v >= 0), one row at a
time. The LP optimum is usually not s-sparse (it has up to k1 non-zeros), so it is pruned to the
s largest magnitudes and refitted by least squares on that support, as the issue specifies.
Use it to compare against OMP; OMP is the fast default.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...errors import SINRConfigError, SINRError, SINRInputError
from .omp import SparseCode, _check_inputs


def l1_minimize(dictionary: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min ||x||_1 s.t. A x = w. Returns (x, dual y), where |A^T y| <= 1 certifies optimality."""
    # Imported here, not at the top: scipy costs ~0.5 s and hundreds of modules, and only this
    # coder (never the default) needs it, so ``import torch_sinr`` stays lean.
    from scipy.optimize import linprog

    k1, k2 = dictionary.shape
    cost = np.ones(2 * k2)
    a_eq = np.hstack([dictionary, -dictionary])
    result = linprog(cost, A_eq=a_eq, b_eq=signal, bounds=(0, None), method="highs")
    if result.status != 0:
        raise SINRError(f"basis pursuit LP failed: {result.message}")
    x = result.x[:k2] - result.x[k2:]
    return x, np.asarray(result.eqlin.marginals)


def basis_pursuit(
    dictionary: torch.Tensor, signals: torch.Tensor, n_nonzero: int, progress: bool = False
) -> SparseCode:
    """L1 solution of each row, pruned to its ``n_nonzero`` largest entries and refitted by least squares."""
    _check_inputs(dictionary, signals)
    k1, k2 = dictionary.shape
    if k2 < k1:
        raise SINRConfigError(
            f"basis pursuit needs an overcomplete dictionary (k2 >= k1) for A x = w to have a "
            f"solution; got k1={k1}, k2={k2}"
        )
    if not 1 <= n_nonzero <= min(k1, k2):
        raise SINRInputError(f"n_nonzero must be in [1, {min(k1, k2)}], got {n_nonzero}")
    a = dictionary.detach().cpu().double().numpy()
    w = signals.detach().cpu().double().numpy()
    indices = np.zeros((w.shape[0], n_nonzero), dtype=np.int64)
    values = np.zeros((w.shape[0], n_nonzero))
    for b in tqdm(range(w.shape[0]), desc="basis pursuit", disable=not progress, leave=False):
        x, _ = l1_minimize(a, w[b])
        support = np.sort(np.argsort(-np.abs(x), kind="stable")[:n_nonzero])
        refit, *_ = np.linalg.lstsq(a[:, support], w[b], rcond=None)
        indices[b], values[b] = support, refit
    device = signals.device
    return SparseCode(
        indices=torch.from_numpy(indices).to(device),
        values=torch.from_numpy(values).to(device),
        counts=torch.full((w.shape[0],), n_nonzero, dtype=torch.int64, device=device),
    )
