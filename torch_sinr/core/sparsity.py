"""How many non-zeros s each weight vector gets.

The rule behind ``auto``: for roughly Gaussian weights (the paper's observation about trained
INRs) the relative error of an s-term OMP code against a Gaussian k1 x k2 dictionary depends
mainly on s/k1 and k2/k1 (``python -m benchmarks.sparsity_rule`` measures it): across k1 = 32..256
the curves nearly coincide at large errors, and at small errors larger k1 does somewhat better
(up to 2x lower error at s/k1 = 0.45). So the s that reaches a given error grows about linearly
with the fan-in (slightly slower), which is what the paper's Fig. S2(g) regression shows. We set s = ceil(ratio * k1) and cap it at 2s < k1, the paper's bound past which
values + indices outnumber the weights they replace. The default ratio 0.45 is the upper end of
that range: the paper finds quality keeps improving until 2s ~ k1 (s > 350 for a 1024-long
flattened tiny layer, a ratio of 0.34+).
"""

from __future__ import annotations

import math

import torch

from ..errors import SINRConfigError
from .coders.omp import omp

# The largest s the method allows (2s < k1): with a 2**16-atom dictionary this is what keeps the
# default within 1 dB on Kodak SIRENs (0.45 k1 lost 0.84 dB, the maximum 0.35 dB, for 5% more bytes).
DEFAULT_S_RATIO = 0.5


def max_sparsity(k1: int) -> int:
    """Largest s with 2s < k1 (at least 1)."""
    return max(1, (k1 - 1) // 2)


def auto_sparsity(k1: int, ratio: float = DEFAULT_S_RATIO) -> int:
    if not 0.0 < ratio <= 1.0:
        raise SINRConfigError(f"s_ratio must be in (0, 1], got {ratio}")
    return max(1, min(math.ceil(ratio * k1), max_sparsity(k1)))


def sparsity_for_error(dictionary: torch.Tensor, vectors: torch.Tensor, target: float) -> int:
    """Smallest s (2s < k1) whose OMP codes reach relative Frobenius error <= ``target``.

    OMP is greedy, so the codes for s are a prefix of the run to s_max: one run gives the
    error of every s at once.
    """
    if not 0.0 < target < 1.0:
        raise SINRConfigError(f"target_error must be in (0, 1), got {target}")
    k1 = vectors.shape[1]
    s_max = max_sparsity(k1)
    code = omp(dictionary, vectors, n_nonzero=s_max, track_residual=True)
    total = float((vectors.double() ** 2).sum())
    if total == 0.0:
        return 1
    errors = (code.residual_history / total).sqrt()
    reached = (errors <= target).nonzero()
    if reached.numel() == 0:
        raise SINRConfigError(
            f"target_error {target} is out of reach with 2s < k1={k1}: the best relative error is "
            f"{float(errors[-1]):.4f} at s={s_max}; raise k2 (dict_ratio) or relax the target"
        )
    return int(reached[0, 0]) + 1
