"""Tiny models shared by several test files."""

import torch
from torch import nn


class _LinkedMLP(nn.Module):
    """inp -> a -> b -> out, where ``b`` is linked to ``a`` by the subclass."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(2, 64)
        self.a = nn.Linear(64, 64)
        self.b = self._link(self.a)
        self.out = nn.Linear(64, 3)

    def _link(self, a: nn.Linear) -> nn.Linear:
        raise NotImplementedError

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(torch.tanh(self.b(torch.tanh(self.a(h)))))


class TiedMLP(_LinkedMLP):
    """``b`` shares ``a``'s weight Parameter but has its own bias."""

    def _link(self, a: nn.Linear) -> nn.Linear:
        b = nn.Linear(64, 64)
        b.weight = a.weight
        return b


class SharedMLP(_LinkedMLP):
    """The same nn.Linear module object registered under two names (``a`` and ``b``)."""

    def _link(self, a: nn.Linear) -> nn.Linear:
        return a


def fast_config(**options):
    """Settings for tests of mechanics (walking the model, targeting, files, reports): a 16x
    dictionary and s = 0.45 k1, the defaults before the data-free defaults moved to the paper's
    2**16 atoms and s = max, which cost ~20x more to code; tests/core/test_tensor_codes.py
    (test_row_and_flat_modes, ROW_ERROR_BOUND) covers those."""
    from torch_sinr import SINRConfig

    return SINRConfig(**{"dict_ratio": 16, "s_ratio": 0.45, **options})
