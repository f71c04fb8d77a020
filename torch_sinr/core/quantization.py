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


def _float32(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float32))


@dataclass(frozen=True)
class StepQuantizer:
    """A uniform quantizer through zero with its own step per group of rows (dim 0).

    The rows of a tensor are split into contiguous groups (``rows[g]`` rows each: e.g. the levels
    of a hash table); group ``g``'s values are ``q * steps[g]`` with integer ``q``, computed in
    float64 and rounded once to float32, so memory and every decoder agree bit for bit. Zero is
    always on the grid: entries a renderer never reads can be zeroed and cost almost nothing.
    Steps are float32 numbers > 0 (they are stored as float32).
    """

    rows: tuple[int, ...]
    steps: tuple[float, ...]

    def __post_init__(self) -> None:
        rows, steps = tuple(self.rows), tuple(self.steps)
        if not rows or len(rows) != len(steps):
            raise SINRConfigError(f"StepQuantizer needs one step per group of rows, got {len(rows)} groups and "
                                  f"{len(steps)} steps")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rows):
            raise SINRConfigError(f"StepQuantizer rows must be positive ints, got {rows}")
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0 \
                    or _float32(step) != step:
                raise SINRConfigError(f"StepQuantizer steps must be finite float32 numbers > 0, got {step!r}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "steps", tuple(float(s) for s in steps))

    @classmethod
    def per_group(cls, rows: list[int] | tuple[int, ...], steps: list[float] | tuple[float, ...]) -> "StepQuantizer":
        """From any positive steps: each is rounded to float32 first."""
        return cls(tuple(int(r) for r in rows), tuple(_float32(float(s)) for s in steps))

    def _check(self, tensor: torch.Tensor) -> None:
        if tensor.dim() == 0 or tensor.shape[0] != sum(self.rows):
            raise SINRConfigError(f"StepQuantizer for {sum(self.rows)} rows in {len(self.rows)} groups cannot "
                                  f"store a tensor of shape {tuple(tensor.shape)}")

    def _row_steps(self, tensor: torch.Tensor) -> torch.Tensor:
        steps = torch.tensor(self.steps, dtype=torch.float64, device=tensor.device)
        per_row = torch.repeat_interleave(steps, torch.tensor(self.rows, device=tensor.device))
        return per_row.view(-1, *([1] * (tensor.dim() - 1)))

    def quantize(self, tensor: torch.Tensor) -> torch.Tensor:
        """The integers ``q`` (int64, the tensor's shape)."""
        self._check(tensor)
        return torch.round(tensor.detach().double() / self._row_steps(tensor)).to(torch.int64)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``q * step`` of each row's group, as float32."""
        self._check(codes)
        return (codes.double() * self._row_steps(codes)).to(torch.float32)

    def round_trip(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.dequantize(self.quantize(tensor))
