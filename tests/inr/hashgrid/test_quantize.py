"""Annealed quantization: soft rounding stays between the integer neighbours and passes gradients,
turns into rounding as the temperature falls; hard rounding is straight-through; the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from torch_sinr import SINRError
from torch_sinr.inr.hashgrid.quantize import hard_from, soft_round, soft_round_with_slope, temperature_at

pytestmark = pytest.mark.usefixtures("single_thread")


def _latents(n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 5).requires_grad_()


def _reference_soft_round(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """The relaxed one-hot sample written out: Gumbel noise from torch.rand (as torch's
    RelaxedOneHotCategorical draws it), softmax at ``temperature``, the expectation floor/ceil."""
    down, up = torch.floor(x.detach()), torch.ceil(x.detach())
    logits = torch.stack([-torch.tanh(x - down), -torch.tanh(up - x)], dim=-1) / temperature
    eps = torch.finfo(x.dtype).eps
    uniforms = torch.rand(logits.shape, dtype=x.dtype).clamp(eps, 1 - eps)
    gumbels = -torch.log(-torch.log(uniforms))
    p_ceil = torch.softmax((logits + gumbels) / temperature, dim=-1)[..., 1]
    return down + (up - down) * p_ceil


@pytest.mark.parametrize("temperature", [1.0, 0.3, 0.05])
def test_soft_round_lies_between_the_neighbours_with_gradients(temperature):
    torch.manual_seed(0)
    x = _latents()
    y = soft_round(x, temperature)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y >= torch.floor(x) - 1e-5).all() and (y <= torch.ceil(x) + 1e-5).all()
    weights = torch.randn(x.shape)
    (y * weights).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # exactly the documented relaxation (an identity, or logits leaning the wrong way, also lie between
    # the neighbours): a Gumbel-softmax sample over the logits -tanh(distance) / temperature, drawn
    # from the same global RNG draws, and the same gradient
    expected_x = x.detach().clone().requires_grad_()
    torch.manual_seed(0)
    expected = _reference_soft_round(expected_x, temperature)
    torch.manual_seed(0)
    again = x.detach().clone().requires_grad_()
    y = soft_round(again, temperature)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)
    (y * weights).sum().backward()
    (expected * weights).sum().backward()
    # float32 softmax near saturation: measured up to 8.7e-4 apart at temperature 0.05 (6 of 4000)
    torch.testing.assert_close(again.grad, expected_x.grad, rtol=1e-3, atol=2e-3)
    if temperature >= 0.3:  # colder, the relaxed sample saturates and most gradients vanish (as in SGA)
        assert (x.grad != 0).float().mean() > 0.5


def test_soft_round_approaches_rounding_as_the_temperature_falls():
    torch.manual_seed(1)
    x = _latents().detach()
    gaps = {t: float((soft_round(x, t) - torch.round(x)).abs().mean()) for t in (1.0, 0.3, 0.02)}
    assert gaps[0.02] < 0.05 < gaps[1.0]
    assert gaps[0.02] < gaps[0.3] < gaps[1.0]
    # at a high temperature the expectation is a blend: neither rounding nor the identity
    assert float((soft_round(x, 1.0) - x).abs().mean()) > 0.01


def test_soft_round_keeps_integers_and_uses_the_global_rng():
    ints = torch.arange(-5.0, 6.0)
    assert torch.equal(soft_round(ints, 0.5), ints)
    x = _latents(100).detach()
    torch.manual_seed(7)
    a = soft_round(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(soft_round(x, 0.5), a)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.5, "hard": True}, {"temperature": 0.0}, {"temperature": -1.0}])
def test_hard_rounding_is_straight_through(kwargs):
    x = _latents(500)
    y = soft_round(x, **kwargs)
    assert torch.equal(y, torch.round(x.detach()))
    weights = torch.randn(x.shape)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)  # identity gradient


def test_temperature_schedule():
    assert temperature_at(0, 1000) == 1.0
    assert math.isclose(temperature_at(900, 1000), 0.1)
    assert math.isclose(temperature_at(1000, 1000), 0.1) and math.isclose(temperature_at(5000, 1000), 0.1)
    assert math.isclose(temperature_at(450, 1000), math.sqrt(0.1))  # exponential: the geometric mean halfway
    values = [temperature_at(s, 1000, start=2.0, end=0.5, anneal_fraction=0.5) for s in range(0, 1001, 50)]
    assert values[0] == 2.0 and math.isclose(values[10], 0.5) and values == sorted(values, reverse=True)
    assert not hard_from(899, 1000) and hard_from(900, 1000) and hard_from(999, 1000)
    assert not hard_from(49, 100, anneal_fraction=0.5) and hard_from(50, 100, anneal_fraction=0.5)
    for bad in ({"total": 0}, {"anneal_fraction": 0.0}, {"anneal_fraction": 1.5}, {"start": 0.1, "end": 1.0},
                {"end": 0.0}):
        args = {"step": 1, "total": 10, **bad}
        with pytest.raises(SINRError):
            temperature_at(args.pop("step"), args.pop("total"), **args)
    with pytest.raises(SINRError):
        soft_round(torch.zeros(3), float("inf"))


@pytest.mark.parametrize("temperature", [1.0, 0.3, 0.1])
def test_soft_round_with_slope_is_soft_round_and_its_derivative(temperature):
    x = _latents()
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    y = soft_round(x, temperature)
    (y * weights).sum().backward()
    torch.manual_seed(7)  # the same draws from the global RNG
    value, slope = soft_round_with_slope(x.detach(), temperature)
    assert value.grad_fn is None and slope.shape == x.shape
    # closed form (one sigmoid) against softmax / log-sum-exp: float32 rounding apart
    assert float((value - y.detach()).abs().max()) <= 4e-6 * float(x.detach().abs().max())
    gradient = x.grad
    assert float((slope * weights - gradient).abs().max()) <= 1e-5 * float(gradient.abs().max())
    # integers stay exactly themselves with slope 0, as soft_round keeps them
    integers = torch.arange(-3.0, 4.0)
    v, s = soft_round_with_slope(integers, temperature)
    assert torch.equal(v, integers) and torch.equal(s, torch.zeros_like(integers))


def test_hard_soft_round_with_slope_is_the_straight_through_value():
    x = _latents().detach()
    value, slope = soft_round_with_slope(x, 0.5, hard=True)
    assert slope is None
    assert torch.equal(value, soft_round(x, 0.5, hard=True))
