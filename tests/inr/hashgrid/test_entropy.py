"""The learned factorized entropy model: a valid CDF for any parameters, a probability mass that
sums to one over the integers, and, once fitted, a rate estimate that matches what the file's
range coder writes and the empirical entropy."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from torch_sinr import SINRError
from torch_sinr.format.codec.rangecoder import RangeEncoder, best_model
from torch_sinr.inr.hashgrid.entropy import MAX_BITS, FactorizedPrior, noisy

pytestmark = pytest.mark.usefixtures("single_thread")


def discrete_laplace(n: int, decay: float, seed: int) -> torch.Tensor:
    """n integers with P(k) proportional to decay**|k| (a difference of two geometric variables)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(2, n, generator=g, dtype=torch.float64)
    geometric = torch.floor(torch.log1p(-u) / math.log(decay))
    return (geometric[0] - geometric[1]).float()


def randomized(prior: FactorizedPrior, seed: int) -> FactorizedPrior:
    """Parameters far from their initialisation, gates included (some near tanh = -1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 2.0)
        for gate in prior.gates:
            gate[..., 0, :] = -20.0  # tanh = -1 in float32: the clamp keeps the slope positive
    return prior


@pytest.mark.parametrize("hidden", [(3, 3, 3), (), (5,)])
def test_cdf_is_monotone_and_in_the_unit_interval(hidden):
    torch.manual_seed(0)
    prior = randomized(FactorizedPrior(channels=3, hidden=hidden), seed=len(hidden))
    x = torch.linspace(-60, 60, 4001).unsqueeze(1).repeat(1, 3)
    with torch.no_grad():
        c = prior.cdf(x)
        logits = prior.logits(x)
    assert c.shape == (4001, 3)
    assert (c >= 0).all() and (c <= 1).all()
    assert (c[2000] > 0).all() and (c[2000] < 1).all()
    assert (torch.diff(logits, dim=0) >= 0).all()  # monotone before the sigmoid's rounding too
    assert (torch.diff(c, dim=0) >= 0).all()


def test_one_layer_is_a_logistic_cdf():
    prior = FactorizedPrior(channels=2, hidden=())
    x = torch.randn(50, 2) * 5
    slope = torch.nn.functional.softplus(prior.matrices[0]).reshape(2)
    bias = prior.biases[0].reshape(2)
    torch.testing.assert_close(prior.cdf(x), torch.sigmoid(x * slope + bias))
    assert len(prior.gates) == 0


@pytest.mark.parametrize("hidden", [(3, 3, 3), ()])
def test_probabilities_sum_to_one_over_the_integers(hidden):
    torch.manual_seed(1)
    prior = randomized(FactorizedPrior(channels=2, hidden=hidden, init_scale=4.0), seed=3)
    q = torch.arange(-3000, 3001, dtype=torch.float32).unsqueeze(1).repeat(1, 2)
    with torch.no_grad():
        p = prior.probability(q)
        bits = prior.bits(q)
    assert ((p.sum(0) - 1).abs() < 1e-3).all(), p.sum(0)
    assert (bits >= 0).all() and (bits <= MAX_BITS).all() and torch.isfinite(bits).all()
    # in the upper tail both CDFs are within float32's rounding of 1.0: the survival side keeps the
    # probability accurate there (checked against float64), as far as the floor
    exact = copy.deepcopy(prior).double()
    with torch.no_grad():
        reference = exact.bits(q.double())
    tail = (reference > 8) & (reference < 29) & (q > 0)
    assert tail.sum() > 10
    assert ((bits.double() - reference)[tail].abs() < 0.01).all()


def _bits_with(prior: FactorizedPrior, names: list[str], latents: torch.Tensor, values) -> torch.Tensor:
    """``prior.bits(latents)`` with its parameters replaced by ``values`` (for gradcheck)."""
    saved = dict(prior.named_parameters())
    try:
        for name, value in zip(names, values):
            module, _, leaf = name.rpartition(".")
            prior.get_submodule(module)._parameters[leaf] = value
        return prior.bits(latents)
    finally:
        for name in names:
            module, _, leaf = name.rpartition(".")
            prior.get_submodule(module)._parameters[leaf] = saved[name]


def test_bits_are_differentiable_and_checked():
    torch.manual_seed(2)
    prior = FactorizedPrior(channels=2)
    q = noisy(torch.round(torch.randn(100, 2) * 3)).requires_grad_()
    total = prior.total_bits(q)
    total.backward()
    assert total.ndim == 0 and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prior.parameters())
    # and they are the derivatives of the bits: float64 finite differences, in the latents and in
    # every parameter (a detached CDF side, or a gradient through one CDF only, stays finite and
    # non-zero but is caught here), with the float32 gradients within float32 noise of them
    exact = copy.deepcopy(prior).double()
    q64 = q.detach().double().requires_grad_()
    params = tuple(p.detach().clone().requires_grad_() for p in exact.parameters())
    names = [name for name, _ in exact.named_parameters()]

    assert torch.autograd.gradcheck(lambda latents, *values: _bits_with(exact, names, latents, values),
                                    (q64[:20], *params))
    reference = torch.autograd.grad(_bits_with(exact, names, q64, params).sum(), (q64, *params))
    torch.testing.assert_close(q.grad.double(), reference[0], rtol=1e-3, atol=1e-4)
    for p, ref in zip(prior.parameters(), reference[1:]):
        torch.testing.assert_close(p.grad.double(), ref, rtol=1e-3, atol=1e-3)
    with pytest.raises(SINRError, match="shape"):
        prior.bits(torch.zeros(10, 3))
    with pytest.raises(SINRError):
        FactorizedPrior(channels=0)


def test_noise_is_uniform_in_half_a_step():
    torch.manual_seed(3)
    x = torch.zeros(20000, 1)
    y = noisy(x)
    assert (y >= -0.5).all() and (y <= 0.5).all()
    assert abs(float(y.mean())) < 0.01 and abs(float(y.var()) - 1 / 12) < 0.003
    torch.manual_seed(3)
    assert torch.equal(noisy(x), y)  # seeded by torch's global RNG


def test_fitted_model_predicts_the_range_coders_bytes_and_the_entropy():
    samples = discrete_laplace(20000, 0.7, seed=0).unsqueeze(1)
    torch.manual_seed(0)
    prior = FactorizedPrior(channels=1)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-2)
    for _ in range(250):
        loss = prior.bits(noisy(samples)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        estimated = float(prior.total_bits(samples)) / 8
    # what torch_sinr's range coder writes for them (the integers kind's coding): data and model
    symbols = samples.long().numpy().ravel()
    symbols = symbols - symbols.min()
    model, model_and_data = best_model(symbols)
    encoder = RangeEncoder()
    encoder.encode(symbols, model)
    coded = len(encoder.finish()) + (model_and_data - model.ideal_bits(symbols) / 8)  # + the stored model's bytes
    _, counts = np.unique(symbols, return_counts=True)
    entropy = float(-(counts * np.log2(counts / counts.sum())).sum()) / 8
    assert abs(estimated - coded) <= 0.05 * coded, (estimated, coded)
    assert abs(estimated - entropy) <= 0.03 * entropy, (estimated, entropy)
