"""OMP must agree with scikit-learn (supports decided in float64, coefficients to 1e-6), on every
path (gram where its kernel builds, batch and screen), both screening precisions, with and without
the Gram matrix, in row chunks, and on CUDA when there is one."""

import importlib

import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp

from torch_sinr import SINRInputError
from torch_sinr.core.coders import omp, omp_batch, omp_gram, omp_screen, screening
from torch_sinr.core.dictionary import DictionarySpec, get_dictionary

omp_entry = importlib.import_module("torch_sinr.core.coders.omp")  # the package re-exports the function


NO_KERNEL = omp_gram._kernel() is None
GRAM = pytest.param("gram", marks=pytest.mark.skipif(NO_KERNEL, reason="the omp_gram kernel does not build here"))


def problem(k1, k2, batch, seed=0):
    a = get_dictionary(DictionarySpec(seed, k1, k2)).double()
    w = torch.randn(batch, k1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.05
    return a, w


def sklearn_codes(a, w, s):
    return orthogonal_mp(a.numpy(), w.numpy().T, n_nonzero_coefs=s).T


def assert_same_as_sklearn(code, a, w, s):
    ours = code.to_dense(a.shape[1]).cpu().numpy()
    reference = sklearn_codes(a.cpu(), w.cpu(), s)
    assert np.array_equal(ours != 0, reference != 0), "supports differ"
    assert np.abs(ours - reference).max() < 1e-6


@pytest.fixture(params=["float32", "bfloat16"])
def screen_precision(request, monkeypatch):
    """Run a test under each screening precision (bfloat16 only where it passes calibration)."""
    if request.param == "bfloat16" and not screening.calibrate():
        pytest.skip("this machine's bfloat16 GEMM does not pass calibration; float32 is used")
    monkeypatch.setenv("TORCH_SINR_OMP_SCREEN", request.param)
    monkeypatch.setattr(screening, "_CHOICE", {})
    monkeypatch.setattr(omp_entry, "_PREPARED", {})
    return request.param


CASES = [(64, 1024, 40, 20), (128, 512, 30, 60), (256, 4096, 16, 64), (32, 64, 10, 15)]


@pytest.mark.parametrize("method", [GRAM, "batch", "screen"])
@pytest.mark.parametrize("k1, k2, batch, s", CASES)
def test_omp_matches_sklearn_fixed_s(k1, k2, batch, s, method, screen_precision):
    a, w = problem(k1, k2, batch)
    code = omp(a, w, n_nonzero=s, method=method)
    assert_same_as_sklearn(code, a, w, s)
    assert (code.counts == s).all()


@pytest.mark.parametrize("method", [GRAM, "batch", "screen"])
def test_omp_matches_sklearn_tolerance_mode(method):
    a, w = problem(64, 1024, 12, seed=3)
    limit = 0.2 * w.norm(dim=1)
    code = omp(a, w, max_residual=limit, method=method)
    dense = code.to_dense(1024).numpy()
    for b in range(w.shape[0]):
        reference = orthogonal_mp(a.numpy(), w[b].numpy(), tol=float(limit[b]) ** 2)
        assert np.array_equal(dense[b] != 0, reference != 0)
        assert np.abs(dense[b] - reference).max() < 1e-6
        assert int(code.counts[b]) == int((reference != 0).sum())


def test_batch_and_screen_paths_agree_on_a_layer_sized_problem(screen_precision):
    a, w = problem(128, 2048, 200, seed=11)
    batch = omp(a, w, n_nonzero=57, method="batch")
    screen = omp(a, w, n_nonzero=57, method="screen")
    assert torch.equal(batch.indices.sort(1).values, screen.indices.sort(1).values)
    assert (batch.to_dense(2048) - screen.to_dense(2048)).abs().max() < 1e-10


def test_batch_without_gram_and_in_row_chunks_is_the_same(monkeypatch):
    a, w = problem(64, 1024, 50, seed=4)
    reference = omp(a, w, n_nonzero=25, method="batch")
    monkeypatch.setattr(omp_batch, "GRAM_MAX_BYTES", 0)  # keep the support's atoms instead
    monkeypatch.setattr(omp_batch, "CHUNK_BYTES", 1)  # one row per chunk
    monkeypatch.setattr(omp_entry, "_PREPARED", {})
    other = omp(a, w, n_nonzero=25, method="batch")
    assert omp_entry.prepared(a, torch.device("cpu")).gram is None
    assert torch.equal(reference.indices, other.indices)
    assert (reference.values - other.values).abs().max() < 1e-12


def test_chunked_screening_scores_hot_blocks_exactly(monkeypatch, screen_precision):
    """Dictionaries wider than CHUNK_COLUMNS keep only block maxima; still sklearn's supports."""
    monkeypatch.setattr(screening, "CHUNK_COLUMNS", 128)
    monkeypatch.setattr(omp_entry, "_PREPARED", {})
    a, w = problem(32, 1000, 40, seed=8)  # 1000 atoms: 8 chunks, the last block padded
    assert omp_entry.prepared(a, torch.device("cpu")).screen.chunks is not None
    assert_same_as_sklearn(omp(a, w, n_nonzero=15, method="batch"), a, w, 15)


def test_full_float64_rescoring_of_rows_with_many_candidates(monkeypatch):
    """With no candidate block allowed, every row takes the full float64 path: still exact."""
    monkeypatch.setattr(screening, "MAX_BLOCKS_PER_ROW", 0)
    a, w = problem(64, 1024, 20, seed=6)
    assert_same_as_sklearn(omp(a, w, n_nonzero=20, method="batch"), a, w, 20)


def test_screen_path_float32_fallback_keeps_exact_argmax(monkeypatch):
    """With one candidate the float64 re-scoring has no slack: the fallback must keep sklearn's choice."""
    monkeypatch.setattr(omp_screen, "_CANDIDATES", 1)
    a, w = problem(64, 1024, 30, seed=5)
    assert_same_as_sklearn(omp(a, w, n_nonzero=25, method="screen"), a, w, 25)


def near_tie_dictionary(k1=32, k2=256, seed=0):
    """Gaussian atoms, with exact duplicates, a copy scaled by 1 + 1e-13 and a near-zero atom."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(k1, k2, generator=gen, dtype=torch.float64) / k1**0.5
    a[:, 10] = a[:, 3]  # exact tie: the lower index must win
    a[:, 20] = a[:, 7] * (1 + 1e-13)  # a tie below float32 resolution, decided in float64
    a[:, 30] = a[:, 5] * 1e-9  # an atom almost nothing
    return a.float().double()  # dictionaries are float32 values


@pytest.mark.parametrize("method", [GRAM, "batch", "screen"])
def test_near_ties_and_degenerate_atoms_match_sklearn(method, screen_precision):
    a = near_tie_dictionary()
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(24, 32, generator=gen, dtype=torch.float64) * 0.1
    # rows built on the tied atoms, so the ties are at the top of the correlations
    w[:8] += 3 * a[:, 3] + 2 * a[:, 7]
    w[8:12] = a[:, 3] + a[:, 10] * 0  # exactly atom 3 (and its duplicate 10)
    code = omp(a, w, n_nonzero=12, method=method)
    ours = code.to_dense(a.shape[1]).numpy()
    for b in range(w.shape[0]):
        reference = orthogonal_mp(a.numpy(), w[b].numpy(), n_nonzero_coefs=12)
        assert np.array_equal(ours[b] != 0, reference != 0), f"row {b}"
        assert np.abs(ours[b] - reference).max() < 1e-6
    assert (code.indices[8:12, 0] == 3).all() and (code.counts[8:12] == 1).all()


@pytest.mark.skipif(NO_KERNEL, reason="the omp_gram kernel does not build here")
def test_gram_kernel_decides_below_float32_resolution_in_float64():
    """The kernel's bulk runs in float32. Atom 7 is 0.9 atom 1 plus a normal part, and atom 200 is
    atom 7 scaled by 1 + 2e-8 (a third of float32's resolution). Atom 1 goes first; the second
    step's scores of 7 and 200 are a small difference of large float32 terms, so their float32
    order is rounding's, and only the float64 rescoring of every candidate within the error bound
    picks 200 for every row, as sklearn does. (Rescoring the float32 maximum alone, with no slack,
    picks 7 on some of these rows.)"""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(64, 512, generator=gen, dtype=torch.float64)
    a /= a.norm(dim=0)
    a[:, 7] = 0.9 * a[:, 1] + (1 - 0.81) ** 0.5 * a[:, 7]
    a[:, 200] = a[:, 7] * (1 + 2e-8)  # float64 values: the difference is below float32's resolution (6e-8)
    w = torch.randn(64, 64, generator=gen, dtype=torch.float64) * 0.01 + 6 * a[:, 1] + 3 * a[:, 7]
    w[32:] = -w[32:]
    code = omp(a, w, n_nonzero=20, method="gram")
    assert (code.indices[:, 0] == 1).all() and (code.indices[:, 1] == 200).all()
    for b in range(w.shape[0]):
        reference = orthogonal_mp(a.numpy(), w[b].numpy(), n_nonzero_coefs=20)
        assert np.array_equal(code.to_dense(512)[b].numpy() != 0, reference != 0), f"row {b}"


def test_exactly_sparse_signal_is_recovered():
    a, _ = problem(64, 512, 1)
    x = torch.zeros(512, dtype=torch.float64)
    x[[3, 100, 400]] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for method in ("batch", "screen") + (() if NO_KERNEL else ("gram",)):
        code = omp(a, (a @ x)[None], n_nonzero=3, method=method)
        assert torch.allclose(code.to_dense(512)[0], x, atol=1e-10)


@pytest.mark.parametrize("method", [GRAM, "batch", "screen"])
def test_residual_history_is_the_error_of_each_prefix(method):
    a, w = problem(64, 1024, 8)
    code = omp(a, w, n_nonzero=10, track_residual=True, method=method)
    for s in (1, 5, 10):
        shorter = omp(a, w, n_nonzero=s, method=method).to_dense(1024)
        residual = ((w - shorter @ a.T) ** 2).sum()
        assert torch.isclose(code.residual_history[s - 1], residual, rtol=1e-9)


@pytest.mark.skipif(NO_KERNEL, reason="the omp_gram kernel does not build here")
def test_gram_path_is_auto_on_cpu_and_independent_of_threads(monkeypatch):
    a, w = problem(128, 2048, 40, seed=12)
    calls, real = [], omp_gram.gram_omp
    monkeypatch.setattr(omp_gram, "gram_omp", lambda *args: calls.append(1) or real(*args))
    code = omp(a, w, n_nonzero=57)
    assert calls, "auto did not take the gram path"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = omp(a, w, n_nonzero=57, method="gram")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(code.indices, one.indices) and torch.equal(code.values, one.values)
    batch = omp(a, w, n_nonzero=57, method="batch")
    assert torch.equal(code.indices, batch.indices)
    assert (code.values - batch.values).abs().max() < 1e-12


@pytest.mark.skipif(NO_KERNEL, reason="the omp_gram kernel does not build here")
def test_gram_codes_do_not_depend_on_the_progress_bar():
    # A^T w was once computed in larger row chunks without a bar: the BLAS product's last bits
    # moved with the split (247 of 14,336 values differed on this problem), so the codes did too
    a = get_dictionary(DictionarySpec(seed=0, k1=256, k2=4096), "cpu")
    w = torch.randn(1792, 256, generator=torch.Generator().manual_seed(0)) * 0.05
    quiet = omp(a, w, n_nonzero=8, method="gram", progress=False)
    shown = omp(a, w, n_nonzero=8, method="gram", progress=True)
    assert torch.equal(quiet.indices, shown.indices) and torch.equal(quiet.values, shown.values)


@pytest.mark.skipif(NO_KERNEL, reason="the omp_gram kernel does not build here")
def test_gram_path_falls_back_or_refuses_where_it_cannot_run(monkeypatch):
    a, w = problem(64, 1024, 10, seed=13)
    monkeypatch.setattr(omp_gram, "FACTOR_MAX_BYTES", 16 * 20 * 20 - 1)  # a 20 x 20 factor (twice) does not fit
    assert omp_gram.why_unavailable(1024, 20, torch.device("cpu"), True)
    code = omp(a, w, n_nonzero=20)  # auto: the torch paths
    assert_same_as_sklearn(code, a, w, 20)
    with pytest.raises(SINRInputError, match="gram"):
        omp(a, w, n_nonzero=20, method="gram")
    assert "CPU" in omp_gram.why_unavailable(1024, 4, torch.device("meta"), True)
    assert "Gram" in omp_gram.why_unavailable(1024, 4, torch.device("cpu"), False)


def test_auto_chooses_batch_for_layers_and_screen_for_small_problems():
    assert omp_entry.choose_method(256, 256, 4096, 116) == "batch"
    assert omp_entry.choose_method(195, 64, 65536, 29) == "batch"
    assert omp_entry.choose_method(16, 64, 1024, 29) == "screen"
    assert omp_entry.choose_method(2, 16, 64, 4) == "screen"


def test_prepared_dictionary_is_cached_and_refreshed_after_an_edit():
    a, _ = problem(16, 128, 1, seed=9)
    first = omp_entry.prepared(a, torch.device("cpu"))
    assert omp_entry.prepared(a, torch.device("cpu")) is first
    a.mul_(2.0)  # an in-place edit bumps the version counter: prepared again
    assert omp_entry.prepared(a, torch.device("cpu")) is not first


@pytest.mark.parametrize("bad", ["nan", "shape", "s0", "none", "method"])
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
        elif bad == "method":
            omp(a, w, 4, method="fastest")
        else:
            omp(a, w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["batch", "screen"])
def test_cuda_matches_sklearn_and_cpu(method):
    a, w = problem(256, 4096, 64, seed=2)
    code = omp(a.cuda(), w.cuda(), n_nonzero=64, method=method)
    assert code.indices.device.type == "cuda"
    assert_same_as_sklearn(code, a, w, 64)
    cpu = omp(a, w, n_nonzero=64, method=method)
    assert torch.equal(code.indices.cpu().sort(1).values, cpu.indices.sort(1).values)
