"""OMP must agree with scikit-learn; basis pursuit must reach the LP optimum."""

import importlib

import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp

from torch_sinr import SINRConfigError, SINRInputError
from torch_sinr.coders import basis_pursuit, omp
from torch_sinr.coders.basis_pursuit import l1_minimize
from torch_sinr.dictionary import DictionarySpec, get_dictionary


def problem(k1, k2, batch, seed=0):
    a = get_dictionary(DictionarySpec(seed, k1, k2)).double()
    w = torch.randn(batch, k1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.05
    return a, w


@pytest.mark.parametrize("k1, k2, batch, s", [(64, 1024, 40, 20), (128, 512, 30, 60), (256, 4096, 16, 64), (32, 64, 10, 15)])
def test_omp_matches_sklearn_fixed_s(k1, k2, batch, s):
    a, w = problem(k1, k2, batch)
    code = omp(a, w, n_nonzero=s)
    ours = code.to_dense(k2).numpy()
    reference = orthogonal_mp(a.numpy(), w.numpy().T, n_nonzero_coefs=s).T
    assert np.array_equal(ours != 0, reference != 0), "supports differ"
    assert np.abs(ours - reference).max() < 1e-6
    assert (code.counts == s).all()


def test_omp_matches_sklearn_tolerance_mode():
    a, w = problem(64, 1024, 12, seed=3)
    limit = 0.2 * w.norm(dim=1)
    code = omp(a, w, max_residual=limit)
    dense = code.to_dense(1024).numpy()
    for b in range(w.shape[0]):
        reference = orthogonal_mp(a.numpy(), w[b].numpy(), tol=float(limit[b]) ** 2)
        assert np.array_equal(dense[b] != 0, reference != 0)
        assert np.abs(dense[b] - reference).max() < 1e-6
        assert int(code.counts[b]) == int((reference != 0).sum())


def test_omp_float32_screening_fallback_keeps_exact_argmax(monkeypatch):
    """With one candidate the float64 re-scoring has no slack: the fallback must keep sklearn's choice."""
    module = importlib.import_module("torch_sinr.coders.omp")  # the package re-exports the function

    monkeypatch.setattr(module, "_CANDIDATES", 1)
    a, w = problem(64, 1024, 30, seed=5)
    reference = orthogonal_mp(a.numpy(), w.numpy().T, n_nonzero_coefs=25).T
    assert np.array_equal(omp(a, w, n_nonzero=25).to_dense(1024).numpy() != 0, reference != 0)


def test_omp_exactly_sparse_signal_is_recovered():
    a, _ = problem(64, 512, 1)
    x = torch.zeros(512, dtype=torch.float64)
    x[[3, 100, 400]] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    code = omp(a, (a @ x)[None], n_nonzero=3)
    assert torch.allclose(code.to_dense(512)[0], x, atol=1e-10)


def test_omp_residual_history_is_the_error_of_each_prefix():
    a, w = problem(64, 1024, 8)
    code = omp(a, w, n_nonzero=10, track_residual=True)
    for s in (1, 5, 10):
        shorter = omp(a, w, n_nonzero=s).to_dense(1024)
        residual = ((w - shorter @ a.T) ** 2).sum()
        assert torch.isclose(code.residual_history[s - 1], residual, rtol=1e-9)


@pytest.mark.parametrize("bad", ["nan", "shape", "s0", "none"])
def test_omp_rejects_bad_input(bad):
    a, w = problem(16, 64, 3)
    with pytest.raises(SINRInputError):
        if bad == "nan":
            w[0, 0] = float("nan")
            omp(a, w, 4)
        elif bad == "shape":
            omp(a, w[:, :10], 4)
        elif bad == "s0":
            omp(a, w, 0)
        else:
            omp(a, w)


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
