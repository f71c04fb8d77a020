"""Coding arbitrary 2-D tensors (not only layers) and decoding them back."""

import pytest
import torch

from torch_sinr import SINRConfigError, SINRInputError, encode_tensor, encode_tensors
from torch_sinr.tensor_codes import decode_codes, relative_error


def test_row_and_flat_modes():
    w = torch.randn(64, 64)
    row = encode_tensor(w)
    assert row.spec.mode == "row" and row.spec.k1 == 64 and row.spec.s == 29 and row.spec.k2 == 1024
    assert relative_error(w, row.decode()) < 0.08
    tiny = encode_tensor(torch.randn(8, 30))
    assert tiny.spec.mode == "flat" and tiny.spec.k1 == 240 and tiny.indices.shape == (1, tiny.spec.s)


def test_auto_mode_flattens_only_layers_small_on_both_sides():
    # A wide layer with a short fan-in (ReLU+PE's 42 -> 300) is coded row by row: flattened, it
    # would need a 12,600 x 201,600 dictionary.
    wide = encode_tensor(torch.randn(300, 42))
    assert wide.spec.mode == "row" and wide.spec.k1 == 42 and wide.indices.shape[0] == 300
    assert encode_tensor(torch.randn(3, 49)).spec.mode == "flat"
    assert encode_tensor(torch.randn(50, 30)).spec.mode == "row"


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


def test_basis_pursuit_coder_is_worse_or_equal_fit_than_its_lp_at_same_s():
    w = torch.randn(4, 64)
    bp = encode_tensor(w, coder="bp", s=20, value_bits=32)
    omp = encode_tensor(w, coder="omp", s=20, value_bits=32)
    assert bp.indices.shape == omp.indices.shape == (4, 20)
    assert relative_error(w, bp.decode()) < 1.0 and relative_error(w, omp.decode()) < 1.0


def test_decode_codes_is_differentiable():
    codes = encode_tensor(torch.randn(8, 64))
    values = codes.values.clone().requires_grad_(True)
    a = torch.randn(64, codes.spec.k2)
    decode_codes(codes.indices, values, a).sum().backward()
    assert values.grad is not None and values.grad.abs().sum() > 0


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
