"""The dictionary generator defines what every file means: these values must never change."""

import hashlib

import pytest
import torch
from scipy import stats

from torch_sinr import SINRConfigError
from torch_sinr.core.dictionary import (MAX_DICTIONARY_ELEMENTS, DictionarySpec, _inverse_normal_cdf, _log,
                                   clear_dictionary_cache, generate_dictionary, get_dictionary)

GOLDEN = [
    # (seed, k1, k2), sha256 of the float32 bytes, A[0,0], A[0,1], A[1,0], A[k1-1,k2-1]
    ((0, 64, 1024), "acc26384362f501920051e4f4bbf53f65a1154d163f0cce11a3aefbd0a5372d6",
     (0.16956058144569397, 0.04517585039138794, 0.13436712324619293, -0.18722979724407196)),
    ((12345, 7, 33), "7acc39ff9cf8cf70ec4707cddd2fb1017d4764ee526f10e133c059b3374c98d2",
     (0.13851071894168854, 0.0049942838959395885, 0.2843601107597351, -0.12549464404582977)),
    ((2**32 - 1, 256, 4096), "5988db4b9e47a41c2903f2af9a720f4b63a8a64eff546b7ad9735cfb18fd9280",
     (0.04467497393488884, -0.06479126960039139, 0.08011648058891296, 0.00436480762436986)),
]


@pytest.mark.parametrize("shape, digest, corners", GOLDEN)
def test_golden_values(shape, digest, corners):
    spec = DictionarySpec(*shape)
    a = generate_dictionary(spec)
    assert a.dtype == torch.float32 and a.shape == (spec.k1, spec.k2)
    got = [float(a[0, 0]), float(a[0, 1]), float(a[1, 0]), float(a[-1, -1])]
    assert got == list(corners)
    assert hashlib.sha256(a.numpy().tobytes()).hexdigest() == digest


def test_chunking_does_not_change_values(monkeypatch):
    import torch_sinr.core.dictionary as d

    spec = DictionarySpec(3, 40, 300)
    whole = generate_dictionary(spec)
    monkeypatch.setattr(d, "_CHUNK_ELEMENTS", 700)  # forces 3-row chunks
    assert torch.equal(generate_dictionary(spec), whole)


def test_larger_dictionary_extends_smaller():
    small = generate_dictionary(DictionarySpec(5, 16, 100))
    large = generate_dictionary(DictionarySpec(5, 16, 300))
    assert torch.equal(large[:, :100], small)


def test_seeds_differ_and_statistics_are_gaussian():
    a = generate_dictionary(DictionarySpec(0, 128, 2048)).double() * 128**0.5
    b = generate_dictionary(DictionarySpec(1, 128, 2048)).double() * 128**0.5
    assert not torch.equal(a, b)
    sample = a.flatten()[:100_000].numpy()
    assert abs(sample.mean()) < 0.02 and abs(sample.std() - 1) < 0.02
    assert stats.kstest(sample, "norm").pvalue > 1e-3
    # neighbouring entries are uncorrelated, along rows and columns
    assert abs(torch.corrcoef(torch.stack([a[:, :-1].flatten(), a[:, 1:].flatten()]))[0, 1]) < 0.01
    assert abs(torch.corrcoef(torch.stack([a[:-1].flatten(), a[1:].flatten()]))[0, 1]) < 0.01


def test_exact_ops_helpers_are_accurate():
    x = torch.rand(10_000, dtype=torch.float64) * 0.999 + 1e-300
    assert torch.allclose(_log(x), torch.log(x), rtol=0, atol=1e-14)
    u = torch.rand(10_000, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    reference = torch.special.ndtri(u)
    assert ((_inverse_normal_cdf(u) - reference).abs() / reference.abs().clamp(min=1e-3)).max() < 2e-9


def test_cache_returns_same_tensor_and_clears():
    spec = DictionarySpec(9, 8, 64)
    assert get_dictionary(spec) is get_dictionary(spec)
    first = get_dictionary(spec)
    clear_dictionary_cache()
    assert get_dictionary(spec) is not first and torch.equal(get_dictionary(spec), first)


@pytest.mark.parametrize("kwargs", [dict(seed=-1, k1=4, k2=8), dict(seed=2**32, k1=4, k2=8), dict(seed=0, k1=0, k2=8),
                                    dict(seed=0, k1=4, k2=True), dict(seed=0, k1=2**15, k2=MAX_DICTIONARY_ELEMENTS),
                                    dict(seed=0, k1=4, k2=8, generator="torch.randn")])
def test_bad_specs_are_refused(kwargs):
    with pytest.raises(SINRConfigError):
        DictionarySpec(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generates_identical_values():
    spec = DictionarySpec(0, 64, 1024)
    assert torch.equal(generate_dictionary(spec, "cuda").cpu(), generate_dictionary(spec))


def test_atoms_are_the_cached_contiguous_transpose():
    from torch_sinr.core.dictionary import get_atoms

    spec = DictionarySpec(4, 16, 128)
    atoms = get_atoms(spec)
    assert atoms.is_contiguous() and torch.equal(atoms, get_dictionary(spec).t())
    assert get_atoms(spec) is atoms
