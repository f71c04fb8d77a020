"""The screening bound must hold, and the candidates must always contain the float64 argmax."""

import pytest
import torch

from torch_sinr.core.coders import screening
from torch_sinr.core.dictionary import DictionarySpec, get_dictionary

DTYPES = [torch.float32, torch.bfloat16]


def setup(k1, k2, rows, dtype, seed=0):
    atoms_t = get_dictionary(DictionarySpec(seed, k1, k2)).double().t().contiguous()
    r = torch.randn(rows, k1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return atoms_t, r, screening.ScreenDictionary(atoms_t, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_error_bound_holds_for_every_atom(dtype):
    atoms_t, r, screen = setup(128, 1000, 64, dtype)
    corr, bound = screen.correlations(r)
    exact = (r @ atoms_t.t()).abs()
    error = (corr[:, :1000].double() - exact).abs()
    assert (error <= bound[:, None] + screen.out_rel * corr.amax(1, keepdim=True).double()).all()
    # and it is useful: far below the spread of the correlations it has to tell apart
    assert (bound < 0.02 * corr.amax(1).double()).all()
    assert (corr[:, 1000:] == 0).all()  # padding to whole blocks adds zero atoms


@pytest.mark.parametrize("dtype", DTYPES)
def test_candidates_contain_the_float64_argmax_and_are_few(dtype):
    atoms_t, r, screen = setup(256, 4096, 300, dtype, seed=3)
    corr, blocks, bound = screen.block_maxima(r)
    rows, atoms, full = screening.candidates(corr, blocks, bound, 4096, screen.out_rel)
    exact_best = (r @ atoms_t.t()).abs().argmax(1)
    listed = set(zip(rows.tolist(), atoms.tolist()))
    for b in range(300):
        assert b in full.tolist() or (b, int(exact_best[b])) in listed
    assert rows.numel() < 4 * 300  # a few per row, not a full re-scoring
    assert int(atoms.max()) < 4096  # padding never listed


def test_candidates_flag_rows_whose_residual_is_all_but_zero():
    atoms_t, r, screen = setup(64, 4096, 4, torch.float32)
    r[1] = 0.0  # every correlation 0: every atom within the bound
    corr, blocks, bound = screen.block_maxima(r)
    _, _, full = screening.candidates(corr, blocks, bound, 4096, screen.out_rel)
    assert full.tolist() == [1]


def test_calibration_refuses_a_gemm_that_accumulates_in_bfloat16(monkeypatch):
    real = screening.ScreenDictionary.correlations

    def sloppy(self, residual):
        corr, bound = real(self, residual)
        # what a bfloat16 accumulation over k1 = 1024 terms looks like: errors ~ sqrt(k1) 2**-9
        noise = torch.randn(corr.shape, generator=torch.Generator().manual_seed(0)) * 2**-9 * corr.amax()
        return corr + noise.abs(), bound

    monkeypatch.setattr(screening.ScreenDictionary, "correlations", sloppy)
    assert screening.calibrate() is False


def test_screen_dtype_honours_the_override(monkeypatch):
    monkeypatch.setattr(screening, "_CHOICE", {})
    monkeypatch.setenv("TORCH_SINR_OMP_SCREEN", "float32")
    assert screening.screen_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setenv("TORCH_SINR_OMP_SCREEN", "float16")
    with pytest.raises(ValueError, match="TORCH_SINR_OMP_SCREEN"):
        screening.screen_dtype(torch.device("cpu"))
