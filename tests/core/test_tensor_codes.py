"""Coding arbitrary 2-D tensors (not only layers) and decoding them back."""

import pytest
import torch

from torch_sinr import SINRConfigError, SINRInputError, encode_tensor, encode_tensors
from torch_sinr.core.dictionary import DictionarySpec, get_dictionary
from torch_sinr.core.tensor_codes import decode_codes, relative_error


ROW_ERROR_BOUND = 0.006  # measured 0.0041-0.0043 on Gaussian 64 x 64 matrices (the old 16x, s = 0.45 k1 default: 0.055-0.058)


def test_row_and_flat_modes():
    w = torch.randn(64, 64)
    row = encode_tensor(w)
    # the data-free defaults: the paper's 2**16 atoms and the largest s with 2s < k1
    assert row.spec.mode == "row" and row.spec.k1 == 64 and row.spec.s == 31 and row.spec.k2 == 2**16
    assert relative_error(w, row.decode()) < ROW_ERROR_BOUND
    tiny = encode_tensor(torch.randn(8, 30), dict_ratio=4)
    assert tiny.spec.mode == "flat" and tiny.spec.k1 == 240 and tiny.indices.shape == (1, tiny.spec.s)


def test_auto_mode_flattens_only_layers_small_on_both_sides():
    # A wide layer with a short fan-in (ReLU+PE's 42 -> 300) is coded row by row: flattened, it
    # would need a 12,600 x 201,600 dictionary.
    small = {"dict_ratio": 2, "s": 3}  # only the mode is checked here
    wide = encode_tensor(torch.randn(300, 42), **small)
    assert wide.spec.mode == "row" and wide.spec.k1 == 42 and wide.indices.shape[0] == 300
    assert encode_tensor(torch.randn(3, 49), **small).spec.mode == "flat"
    assert encode_tensor(torch.randn(50, 30), **small).spec.mode == "row"


def test_indices_sorted_and_values_quantized():
    codes = encode_tensor(torch.randn(16, 64), value_bits=8)
    assert (codes.indices.diff(dim=1) > 0).all()
    assert torch.equal(codes.spec.quantizer.round_trip(codes.values), codes.values)
    assert codes.quantized_codes().max() < 256


def test_target_error_chooses_smallest_s():
    w = torch.randn(32, 64)
    codes = encode_tensor(w, target_error=0.15, value_bits=32)
    assert relative_error(w, codes.decode()) <= 0.15
    smaller = encode_tensor(w, s=codes.spec.s - 1, value_bits=32)
    assert relative_error(w, smaller.decode()) > 0.15
    with pytest.raises(SINRConfigError, match="out of reach"):
        encode_tensor(w, target_error=1e-4, dict_ratio=1)


def test_batched_coding_equals_one_by_one():
    tensors = [torch.randn(20, 64), torch.randn(10, 64)]
    together = encode_tensors(tensors)
    for t, codes in zip(tensors, together):
        alone = encode_tensor(t)
        assert torch.equal(alone.indices, codes.indices)
        torch.testing.assert_close(alone.values, codes.values, rtol=0, atol=2 * codes.spec.quantizer.step)


def _row_errors(w, codes):
    decoded = codes.decode()
    return torch.tensor([relative_error(w[i], decoded[i]) for i in range(w.shape[0])])


def test_basis_pursuit_and_omp_both_recover_exactly_sparse_signals():
    """Signals that are exactly 4-sparse in the dictionary (64 x 1024): well inside the recovery
    regime of both L1 and greedy pursuit, so both find the planted support, to rounding."""
    gen = torch.Generator().manual_seed(0)
    a = get_dictionary(DictionarySpec(seed=0, k1=64, k2=1024)).float()
    x = torch.zeros(6, 1024)
    for row in x:
        support = torch.randperm(1024, generator=gen)[:4]
        # magnitudes in [0.5, 1.5]: no atom is too small to find
        row[support] = torch.randn(4, generator=gen).sign() * (0.5 + torch.rand(4, generator=gen))
    w = x @ a.t()
    for coder in ("bp", "omp"):
        codes = encode_tensor(w, coder=coder, s=4, value_bits=32, dict_ratio=16)
        assert _row_errors(w, codes).max() < 1e-5, coder  # measured ~1e-7 for both
        assert torch.equal(codes.indices, x.ne(0).nonzero()[:, 1].reshape(6, 4)), coder


def test_omp_fits_dense_weights_better_than_basis_pursuit_at_the_same_s():
    """Weights are not sparse in a random dictionary. BP keeps the s largest entries of the L1
    solution (up to k1 non-zeros) and refits; OMP chooses its s atoms for the fit itself, so at
    the same s it leaves much less error: the reason OMP is the default coder.
    Measured on these rows (s = 20, k1 = 64, k2 = 1024): OMP 0.16, BP 0.27, OMP better on every row."""
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(10))
    bp = encode_tensor(w, coder="bp", s=20, value_bits=32, dict_ratio=16)
    omp = encode_tensor(w, coder="omp", s=20, value_bits=32, dict_ratio=16)
    assert bp.indices.shape == omp.indices.shape == (8, 20)
    bp_rows, omp_rows = _row_errors(w, bp), _row_errors(w, omp)
    assert (omp_rows < bp_rows).all()
    total_bp, total_omp = relative_error(w, bp.decode()), relative_error(w, omp.decode())
    assert total_omp < 0.2 and 0.22 < total_bp < 0.35
    assert total_omp < 0.75 * total_bp


def test_decode_codes_is_differentiable():
    codes = encode_tensor(torch.randn(8, 64))
    values = codes.values.clone().requires_grad_(True)
    a = torch.randn(64, codes.spec.k2)
    upstream = torch.randn(8, 64)
    decoded = decode_codes(codes.indices, values, a)
    (decoded * upstream).sum().backward()
    # the decode is X @ A^T with X the sparse codes: row i is sum_j values[i, j] * a[:, indices[i, j]]
    dense = torch.zeros(8, codes.spec.k2).scatter_(1, codes.indices, codes.values)
    torch.testing.assert_close(decoded, dense @ a.t(), rtol=1e-5, atol=1e-5)
    # so d/d values[i, j] of sum(upstream * decoded) is upstream[i] . a[:, indices[i, j]], exactly that
    torch.testing.assert_close(values.grad, (upstream @ a).gather(1, codes.indices), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [torch.randn(3), torch.randn(2, 3, 4), torch.zeros(0, 4), torch.ones(2, 2, dtype=torch.int64),
                                 torch.tensor([[1.0, float("inf")]])])
def test_bad_tensors(bad):
    with pytest.raises(SINRInputError):
        encode_tensor(bad)


def test_bad_options():
    with pytest.raises(SINRConfigError):
        encode_tensor(torch.randn(4, 64), s=100)
    with pytest.raises(SINRConfigError):
        encode_tensor(torch.randn(4, 64), coder="lasso")
    with pytest.raises(SINRConfigError):
        encode_tensor(torch.randn(4, 64), mode="diagonal")


def test_a_registered_coder_plugs_in_everywhere(monkeypatch):
    from torch_sinr import SINRConfig
    from torch_sinr.core import coders
    from torch_sinr.core.tensor_codes import CODERS

    monkeypatch.setattr(coders, "_REGISTRY", dict(coders._REGISTRY))  # registrations end with the test
    calls = []

    def counted(dictionary, signals, n_nonzero):
        calls.append(signals.shape[0])
        return coders.omp(dictionary, signals, n_nonzero=n_nonzero)

    coders.register_coder("counted", counted)
    assert "counted" in CODERS and tuple(CODERS) == ("omp", "bp", "counted")
    SINRConfig(coder="counted").validate()  # config checks against the live registry
    w = torch.randn(5, 64)
    assert torch.equal(encode_tensor(w, coder="counted").indices, encode_tensor(w).indices) and calls == [5]
    with pytest.raises(SINRConfigError, match="already registered"):
        coders.register_coder("omp", counted)
    coders.register_coder("short", lambda a, w, n_nonzero: coders.omp(a, w[:1], n_nonzero=n_nonzero))
    with pytest.raises(SINRConfigError, match="'short' returned codes of shape"):
        encode_tensor(w, coder="short")
