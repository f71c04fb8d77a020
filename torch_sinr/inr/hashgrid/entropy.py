"""A learned factorized entropy model for integer latents (Ballé et al. 2018, "Variational image
compression with a scale hyperprior", appendix 6.1; SHACIRA's ``BitEstimator``).

Each channel has its own cumulative distribution function ``c``, a small network that is
monotone in its input by construction: every layer maps ``x -> softplus(H) x + b`` (positive
weights) and then ``x -> x + tanh(a) * tanh(x)``, whose slope ``1 + tanh(a) sech(x)**2`` stays
positive because ``tanh(a) > -1``; a sigmoid ends it. An integer ``q`` then has probability
``c(q + 1/2) - c(q - 1/2)`` and costs ``-log2`` of that in bits. During training the latents
get uniform noise (``noisy``) instead of rounding, so the rate is differentiable and the model
fits the density the rounded latents will have.

The model is a training-time *estimate*: the file codes the rounded latents with a stored
histogram (format kind ``integers``), which the tests compare it with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import SINRConfigError, SINRInputError

# Probability floor and bit cap: a latent far in a tail costs at most ~30 bits instead of inf
# (and its gradient stays finite); SHACIRA clamps the bits to [0, 50] the same way.
MIN_PROBABILITY = 1e-9
MAX_BITS = 50.0
# tanh(a) in (-1, 1) mathematically, but float tanh reaches -1.0 for a < -9: keep the slope > 0.
_MIN_GATE = -1.0 + 1e-6


def noisy(latents: Tensor) -> Tensor:
    """``latents`` plus uniform noise in [-1/2, 1/2) (torch's global RNG): the training-time
    stand-in for rounding, under which the rate stays differentiable."""
    return latents + torch.empty_like(latents).uniform_(-0.5, 0.5)


class FactorizedPrior(nn.Module):
    """A per-channel learned CDF over the real line; ``bits`` prices integer latents with it.

    ``channels`` independent models (one per latent dimension); ``hidden`` the widths of the
    hidden layers (Ballé's and CompressAI's default (3, 3, 3)); ``hidden=()`` leaves one layer,
    a logistic CDF ``sigmoid(softplus(h) x + b)``, SHACIRA's one-layer model. ``init_scale``
    is the initial width of the distribution (in latent units), as in CompressAI.
    """

    def __init__(self, channels: int = 1, hidden: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not (isinstance(channels, int) and channels >= 1):
            raise SINRConfigError(f"channels must be an int >= 1, got {channels!r}")
        if not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise SINRConfigError(f"hidden must be a tuple of ints >= 1, got {hidden!r}")
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise SINRConfigError(f"init_scale must be a positive number, got {init_scale!r}")
        self.channels, self.hidden, self.init_scale = channels, hidden, float(init_scale)
        widths = (1, *hidden, 1)
        # Initialised as CompressAI does: the composed slopes multiply to about 1/init_scale, so the
        # initial CDF rises over roughly +-init_scale.
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices, self.biases, self.gates = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for k in range(len(widths) - 1):
            fan_in, fan_out = widths[k], widths[k + 1]
            init = math.log(math.expm1(1.0 / scale / fan_out))  # softplus(init) = 1 / (scale * fan_out)
            self.matrices.append(nn.Parameter(torch.full((channels, fan_out, fan_in), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, fan_out, 1).uniform_(-0.5, 0.5)))
            if k < len(widths) - 2:  # the last layer feeds the sigmoid directly
                self.gates.append(nn.Parameter(torch.zeros(channels, fan_out, 1)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, init_scale={self.init_scale}"

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise SINRInputError(f"expected latents of shape (N, {self.channels}), got {tuple(x.shape)}")

    def logits(self, x: Tensor) -> Tensor:
        """The CDF before its sigmoid, ``(N, channels)``; monotone non-decreasing in ``x``."""
        self._check(x)
        h = x.t().unsqueeze(1).to(self.biases[0].dtype)  # (channels, 1, N): each channel its own network
        last = len(self.matrices) - 1
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            h = torch.matmul(F.softplus(matrix), h) + bias
            if k < last:
                h = h + torch.tanh(self.gates[k]).clamp_min(_MIN_GATE) * torch.tanh(h)
        return h.squeeze(1).t()

    def cdf(self, x: Tensor) -> Tensor:
        """``P(X <= x)`` per channel, in (0, 1) (float rounding may reach the ends far in a tail)."""
        return torch.sigmoid(self.logits(x))

    def probability(self, q: Tensor) -> Tensor:
        """``cdf(q + 1/2) - cdf(q - 1/2)``, floored at ``MIN_PROBABILITY``.

        In the upper tail both CDFs round to 1.0 in float and their difference to 0; there the
        difference of the survival functions ``sigmoid(-logit)`` is the same number, computed
        where it is representable. The side is chosen by the sign of the two logits' sum."""
        lower, upper = self.logits(q - 0.5), self.logits(q + 0.5)
        sign = -torch.sign(lower + upper).detach()
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(MIN_PROBABILITY)

    def bits(self, q: Tensor) -> Tensor:
        """Per element ``-log2 P(q)`` in [0, ``MAX_BITS``]; ``q`` integers (or integers plus
        ``noisy``'s noise while training). Differentiable in ``q`` and in the model."""
        return (-torch.log2(self.probability(q))).clamp(0.0, MAX_BITS)

    def total_bits(self, q: Tensor) -> Tensor:
        """The summed ``bits`` of all of ``q``: the rate term of a training loss."""
        return self.bits(q).sum()
