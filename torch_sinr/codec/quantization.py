"""Uniform scalar quantization of the non-zero code values, one range per tensor.

Levels are ``lo + q * (hi - lo) / (2**bits - 1)``, q in [0, 2**bits). Dequantization is done
in float64 then rounded to float32, IEEE operations only, so the in-memory model and every
future decoder get bit-identical values from the same integers. ``bits=32`` keeps raw float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import SINRConfigError

SUPPORTED_BITS = tuple(range(2, 17)) + (32,)


@dataclass(frozen=True)
class UniformQuantizer:
    bits: int
    lo: float = 0.0  # float32-representable
    hi: float = 0.0

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise SINRConfigError(f"value_bits must be in 2..16 or 32, got {self.bits}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.hi < self.lo:
            raise SINRConfigError(f"quantizer range must be finite with lo <= hi, got [{self.lo}, {self.hi}]")

    @classmethod
    def fit(cls, values: torch.Tensor, bits: int) -> "UniformQuantizer":
        if bits == 32 or values.numel() == 0:
            return cls(bits)
        v = values.detach().to(torch.float32)
        return cls(bits, float(v.min()), float(v.max()))

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def step(self) -> float:
        return (self.hi - self.lo) / (self.levels - 1)

    def quantize(self, values: torch.Tensor) -> torch.Tensor:
        """Integer codes (int64) of float values; values outside [lo, hi] are clamped."""
        if self.bits == 32:
            return values.detach().to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        if self.step == 0.0:
            return torch.zeros(values.shape, dtype=torch.int64, device=values.device)
        q = torch.round((values.detach().double() - self.lo) / self.step)
        return q.clamp_(0, self.levels - 1).to(torch.int64)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        if self.bits == 32:
            as_int32 = torch.where(codes >= 2**31, codes - 2**32, codes).to(torch.int32)
            return as_int32.view(torch.float32)
        return (codes.double() * self.step + self.lo).to(torch.float32)

    def round_trip(self, values: torch.Tensor) -> torch.Tensor:
        return self.dequantize(self.quantize(values))
