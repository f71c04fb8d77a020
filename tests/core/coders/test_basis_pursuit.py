"""Basis pursuit must reach the LP optimum and refit on its support."""

import numpy as np
import pytest
import torch

from torch_sinr import SINRConfigError
from torch_sinr.core.coders import basis_pursuit
from torch_sinr.core.coders.basis_pursuit import l1_minimize

from .test_omp import problem


def test_l1_minimize_reaches_lp_optimum_with_dual_certificate():
    a, w = problem(20, 80, 1, seed=7)
    x, y = l1_minimize(a.numpy(), w[0].numpy())
    at = a.numpy()
    assert np.allclose(at @ x, w[0].numpy(), atol=1e-9)  # feasible
    # Strong duality for min |x|_1 s.t. Ax=w: max w.y s.t. |A^T y|_inf <= 1.
    assert np.abs(at.T @ y).max() <= 1 + 1e-7
    assert np.isclose(np.abs(x).sum(), float(w[0].numpy() @ y), rtol=1e-7)


def test_l1_recovers_planted_sparse_vector_and_bp_refits():
    a, _ = problem(40, 200, 1, seed=2)
    x0 = np.zeros(200)
    x0[[5, 50, 150]] = [1.0, -0.7, 0.3]
    w = a.numpy() @ x0
    x, _ = l1_minimize(a.numpy(), w)
    assert np.allclose(x, x0, atol=1e-7)
    code = basis_pursuit(a, torch.from_numpy(w)[None], n_nonzero=3)
    assert code.indices[0].tolist() == [5, 50, 150]
    assert np.allclose(code.values[0].numpy(), [1.0, -0.7, 0.3], atol=1e-8)


def test_basis_pursuit_needs_overcomplete_dictionary():
    a, w = problem(32, 16, 1)
    with pytest.raises(SINRConfigError, match="overcomplete"):
        basis_pursuit(a, w, n_nonzero=4)
