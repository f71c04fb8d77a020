"""Annealed quantization of latents to integers while training (Stochastic Gumbel Annealing,
Yang et al. 2020, as SHACIRA uses it).

Early in training a latent ``x`` is replaced by a random, differentiable mix of its two integer
neighbours, leaning to the nearer one; as the temperature falls the mix turns into a hard choice,
and from ``hard_from`` on the caller rounds (straight-through), so the model trains on exactly the
integers the file will store. A typical loop::

    for step in range(total):
        t = temperature_at(step, total)
        q = soft_round(latents, t, hard=hard_from(step, total))
        loss = distortion(q) + lam * prior.total_bits(noisy(latents)) / len(latents)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import RelaxedOneHotCategorical

from ...errors import SINRConfigError


def _straight_through(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def soft_round(x: Tensor, temperature: float, *, hard: bool = False) -> Tensor:
    """A differentiable rounding of ``x`` at ``temperature``; same shape and dtype.

    Each element picks between ``floor(x)`` and ``ceil(x)`` with a relaxed one-hot sample
    (``RelaxedOneHotCategorical(temperature, logits)``, reparameterized so gradients reach ``x``)
    over the logits ``-tanh(d) / temperature``, ``d`` the distance to that neighbour: the nearer
    neighbour is likelier, and more so as the temperature falls. The result is the sample's
    expectation ``floor * p_floor + ceil * p_ceil``, in [floor(x), ceil(x)]. ``hard=True`` or
    ``temperature <= 0``: straight-through rounding. Randomness comes from torch's global RNG.
    """
    if hard or temperature <= 0:
        return _straight_through(x)
    if not math.isfinite(temperature):
        raise SINRConfigError(f"temperature must be finite, got {temperature!r}")
    down, up = torch.floor(x), torch.ceil(x)  # no gradient: it flows through the probabilities
    logits = torch.stack([-torch.tanh(x - down), -torch.tanh(up - x)], dim=-1) / temperature
    t = torch.as_tensor(temperature, dtype=x.dtype, device=x.device)
    sample = RelaxedOneHotCategorical(t, logits=logits, validate_args=False).rsample()
    # floor * p_floor + ceil * p_ceil with p_floor = 1 - p_ceil, written so an integer stays exact
    return down + (up - down) * sample[..., 1]


def soft_round_with_slope(x: Tensor, temperature: float, *, hard: bool = False) -> tuple[Tensor, Tensor | None]:
    """``soft_round(x, temperature, hard=hard)`` and its derivative ``d value / d x``, elementwise,
    without autograd: for a fused backward that scales the incoming gradient by the slope.

    Draws the same random numbers from torch's global RNG as ``soft_round`` (one
    ``torch.rand(*x.shape, 2)``) and computes the same function in closed form: the relaxed
    one-hot sample over two categories is ``p_ceil = sigmoid(s_ceil - s_floor)`` with scores
    ``s = (logits + gumbels) / temperature`` (torch's ``ExpRelaxedCategorical.rsample``), so the
    values equal ``soft_round``'s up to float rounding (~1e-7 relative in float32: the softmax
    and log-sum-exp are replaced by one sigmoid). The slope is
    ``(ceil - floor) * p (1 - p) * (sech^2(x - floor) + sech^2(ceil - x)) / temperature^2``.
    ``hard``: the values are ``round(x)`` (what the straight-through ``x + (round(x) - x)``
    evaluates to, exactly) and the slope is None (1 everywhere).
    """
    if hard or temperature <= 0:
        return torch.round(x), None
    if not math.isfinite(temperature):
        raise SINRConfigError(f"temperature must be finite, got {temperature!r}")
    with torch.no_grad():
        down, up = torch.floor(x), torch.ceil(x)
        t_down, t_up = torch.tanh(x - down), torch.tanh(up - x)
        eps = torch.finfo(x.dtype).eps
        uniforms = torch.rand(*x.shape, 2, dtype=x.dtype, device=x.device).clamp_(eps, 1 - eps)
        gumbels = uniforms.log_().neg_().log_().neg_()
        # logits are -tanh(distance) / temperature: s_ceil - s_floor = ((t_down - t_up) / T + g_ceil - g_floor) / T
        diff = (t_down - t_up).div_(temperature).add_(gumbels[..., 1]).sub_(gumbels[..., 0]).div_(temperature)
        p_ceil = diff.sigmoid_()
        span = up - down
        value = torch.addcmul(down, span, p_ceil)
        # d s / d x = (sech^2(x - floor) + sech^2(ceil - x)) / T^2, sech^2 = 1 - tanh^2
        sech2 = (2.0 - t_down.square_()).sub_(t_up.square_())
        slope = span.mul_(p_ceil).mul_(1.0 - p_ceil).mul_(sech2).div_(temperature * temperature)
    return value, slope


def _check_schedule(step: int, total: int, anneal_fraction: float) -> None:
    if not (isinstance(total, int) and total >= 1):
        raise SINRConfigError(f"total must be an int >= 1, got {total!r}")
    if not (isinstance(step, int) and step >= 0):
        raise SINRConfigError(f"step must be an int >= 0, got {step!r}")
    if not 0 < anneal_fraction <= 1:
        raise SINRConfigError(f"anneal_fraction must be in (0, 1], got {anneal_fraction!r}")


def temperature_at(step: int, total: int, *, start: float = 1.0, end: float = 0.1,
                   anneal_fraction: float = 0.9) -> float:
    """The annealing temperature at ``step`` of ``total``: exponential decay from ``start`` (step
    0) to ``end`` (step ``anneal_fraction * total``), then ``end``. From there on the caller
    rounds hard instead (``hard_from``), as SHACIRA does after 90% of training."""
    _check_schedule(step, total, anneal_fraction)
    if not (0 < end <= start and math.isfinite(start)):
        raise SINRConfigError(f"temperatures must satisfy 0 < end <= start, got start={start!r}, end={end!r}")
    progress = min(1.0, step / (anneal_fraction * total))
    return float(start * (end / start) ** progress)


def hard_from(step: int, total: int, anneal_fraction: float = 0.9) -> bool:
    """Whether ``step`` of ``total`` rounds hard (straight-through): once annealing is over,
    from ``anneal_fraction * total`` on."""
    _check_schedule(step, total, anneal_fraction)
    return step >= anneal_fraction * total
