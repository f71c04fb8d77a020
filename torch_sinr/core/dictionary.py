"""The seeded Gaussian dictionary ``A`` (k1 x k2) that SINR codes weights against.

``A`` is never stored: every decoder regenerates it from ``(seed, k1, k2)``. A file written
today must therefore decode identically with future torch versions and on any device, so the
generator cannot rely on ``torch.randn`` (whose stream is not a promise). Generator
``"sinr-gauss-v1"`` is defined here, from integer operations and IEEE-754 float64 ``+ - * /``
and ``sqrt`` only, all of which are exact or correctly rounded on every CPU and GPU:

1. Entry (i, j) gets two 32-bit words from a counter-based hash of (seed, i, j)
   (``lowbias32``-style mixing; 32-bit products are split into 16-bit halves so every
   intermediate fits in int64 without overflow).
2. The words form a uniform ``u = (hi26 * 2**27 + lo27 + 0.5) / 2**53`` in (0, 1), exactly.
3. ``u`` is mapped to N(0, 1) by Acklam's rational approximation of the inverse normal CDF
   (relative error < 1.2e-9); its tails need ``log``, which is computed here by ``frexp`` range
   reduction and a fixed atanh series instead of a library ``log`` whose last bit may vary.
4. The float64 result is scaled by ``1/sqrt(k1)`` (atoms of unit expected norm) and rounded
   to float32.

Entry (i, j) does not depend on k2, so a larger dictionary extends a smaller one.
Golden tests (tests/test_dictionary.py) pin the values; changing anything here needs a new
generator name, never an edit of this one.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..errors import SINRConfigError

GENERATOR = "sinr-gauss-v1"
SUPPORTED_GENERATORS = (GENERATOR,)

# Largest dictionary we agree to build (elements). 2**29 float32 = 2 GiB: bigger than any
# INR layer needs, and the bound that keeps a hostile file from asking for terabytes.
MAX_DICTIONARY_ELEMENTS = 2**29

# Default dictionary size: the paper stores 16-bit indices, so its dictionaries have 2**16 atoms.
# Measured on Kodak 3x64 SIRENs (benchmarks/results/defaults.md): k2 = 16 k1 = 1024 loses
# ~11 dB; 2**16 atoms lose under 1 dB. The cap keeps one dictionary at 2**24 entries (64 MiB
# float32) for long (flattened or very wide) vectors, never below the old 16 k1.
DEFAULT_K2 = 2**16
DEFAULT_MAX_ENTRIES = 2**24
LEGACY_DICT_RATIO = 16


def default_k2(k1: int) -> int:
    """Atoms of the default dictionary for vectors of length ``k1``."""
    return max(LEGACY_DICT_RATIO * k1, min(DEFAULT_K2, DEFAULT_MAX_ENTRIES // max(1, k1)))


_MASK32 = 0xFFFFFFFF
# Elements generated per chunk: bounds the int64/float64 temporaries (~10 x 8 bytes each).
_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class DictionarySpec:
    """Everything that defines a dictionary. Two equal specs give bit-identical matrices."""

    seed: int
    k1: int
    k2: int
    generator: str = GENERATOR

    def __post_init__(self) -> None:
        for name in ("seed", "k1", "k2"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SINRConfigError(f"dictionary {name} must be an int, got {value!r}")
        if not 0 <= self.seed <= _MASK32:
            raise SINRConfigError(f"dictionary seed must be in [0, 2**32), got {self.seed}")
        if self.k1 < 1 or self.k2 < 1:
            raise SINRConfigError(f"dictionary shape must be positive, got k1={self.k1}, k2={self.k2}")
        if self.k1 * self.k2 > MAX_DICTIONARY_ELEMENTS:
            raise SINRConfigError(
                f"dictionary {self.k1}x{self.k2} has {self.k1 * self.k2} entries, over the limit "
                f"of {MAX_DICTIONARY_ELEMENTS}; use a smaller k2 or flatten fewer weights"
            )
        if self.generator not in SUPPORTED_GENERATORS:
            raise SINRConfigError(
                f"unknown dictionary generator {self.generator!r}; this version knows {SUPPORTED_GENERATORS}"
            )


# torch.bitwise_*_shift, not the ``>>`` / ``<<`` operators: same integers, but the operators take
# a slow scalar path on CPU (measured 7x slower on int64), and hashing dominates generation.
_shr, _shl = torch.bitwise_right_shift, torch.bitwise_left_shift


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for x in [0, 2**32), without any int64 overflow."""
    lo = x * (constant & 0xFFFF)
    hi = _shl((x * (constant >> 16)).bitwise_and_(0xFFFF), 16)
    return lo.add_(hi).bitwise_and_(_MASK32)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit bijective integer mixer (xorshift-multiply, lowbias32 constants)."""
    x = x ^ _shr(x, 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ _shr(x, 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ _shr(x, 16)
    return x


def _log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive float64 values from exactly-rounded operations only.

    x = m * 2**e with m in [0.5, 1) (frexp is exact); m is moved to [sqrt(.5), sqrt(2)) and
    log(m) = 2 atanh(t), t = (m-1)/(m+1), |t| < 0.172, summed to t**23 (error < 1e-17).
    """
    m, e = torch.frexp(x)
    small = m < 0.70710678118654752
    m = torch.where(small, m * 2.0, m)
    e = e.to(torch.float64) - small.to(torch.float64)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    series = torch.full_like(t, 1.0 / 23.0)
    for k in range(21, 0, -2):
        series = series * t2 + 1.0 / k
    return e * 0.69314718055994531 + 2.0 * t * series


# Acklam's inverse normal CDF coefficients (public algorithm, P. J. Acklam 2003).
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)
_P_LOW = 0.02425


def _horner(x: torch.Tensor, coefficients: tuple[float, ...], leading_one: bool = False) -> torch.Tensor:
    # In place, one multiply then one add per term: the same IEEE operations as acc * x + c
    # (eager torch never fuses them into an FMA), without a temporary per term.
    acc = torch.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        acc.mul_(x).add_(c)
    if leading_one:
        acc.mul_(x).add_(1.0)
    return acc


def _inverse_normal_cdf(u: torch.Tensor) -> torch.Tensor:
    """Acklam's approximation of Phi^-1(u) for u in (0, 1), float64.

    The tail formula (a log and a square root) is evaluated only where it is used, the 4.85% of
    entries outside [p_low, 1 - p_low]: every entry still goes through exactly the operations it
    always did, so the values are bit-identical, at a fraction of the cost."""
    q = u - 0.5
    r = q * q
    out = _horner(r, _A).mul_(q).div_(_horner(r, _B, leading_one=True))
    in_tail = ((u < _P_LOW) | (u > 1.0 - _P_LOW)).nonzero(as_tuple=True)
    ut = u[in_tail]
    lower = ut < 0.5
    tail_p = torch.where(lower, ut, 1.0 - ut)  # 1 - u is exact for u >= 0.5 (Sterbenz)
    tail_p = torch.clamp(tail_p, min=2.0**-60)
    t = torch.sqrt(-2.0 * _log(tail_p))
    tail = _horner(t, _C) / _horner(t, _D, leading_one=True)
    out[in_tail] = torch.where(lower, tail, -tail)
    return out


def _generate_rows(spec: DictionarySpec, row_start: int, row_stop: int, device: torch.device,
                   cols: torch.Tensor | None = None) -> torch.Tensor:
    """Rows row_start..row_stop of A, at all columns or at the given ones (the same values)."""
    rows = torch.arange(row_start, row_stop, device=device, dtype=torch.int64)
    if cols is None:
        cols = torch.arange(spec.k2, device=device, dtype=torch.int64)
    key = _hash32(torch.tensor(spec.seed ^ 0x9E3779B9, device=device, dtype=torch.int64))
    row_key = _hash32(key ^ _hash32(rows ^ 0x85EBCA6B))  # (R,)
    word_a = _hash32(row_key[:, None] ^ cols[None, :])
    word_b = _hash32(word_a ^ 0x68E31DA4)
    # 26 + 27 = 53 random bits; every step below is exact in float64.
    integer = _shr(word_a, 6).to(torch.float64) * 134217728.0 + _shr(word_b, 5).to(torch.float64)
    u = (integer + 0.5) * (2.0**-53)
    gauss = _inverse_normal_cdf(u)
    return (gauss * (1.0 / math.sqrt(spec.k1))).to(torch.float32)


def generate_dictionary(spec: DictionarySpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """Build the float32 (k1, k2) dictionary for ``spec`` on ``device``, in row chunks."""
    device = torch.device(device)
    out = torch.empty(spec.k1, spec.k2, dtype=torch.float32, device=device)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // spec.k2)
    for start in range(0, spec.k1, rows_per_chunk):
        stop = min(spec.k1, start + rows_per_chunk)
        out[start:stop] = _generate_rows(spec, start, stop, device)
    return out


def generate_columns(spec: DictionarySpec, cols: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Columns ``cols`` of the dictionary as a float32 (k1, len(cols)) matrix, bit-identical to
    ``generate_dictionary(spec)[:, cols]``: entry (i, j) depends on (seed, i, j) only.

    Decoding needs only the atoms a code uses, so its cost is bounded by the number of codes,
    not by k2: a file cannot make its reader build a huge dictionary.
    """
    device = torch.device(device)
    cols = cols.to(device=device, dtype=torch.int64).reshape(-1)
    if cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= spec.k2):
        raise SINRConfigError(f"dictionary columns out of range [0, {spec.k2})")
    out = torch.empty(spec.k1, cols.numel(), dtype=torch.float32, device=device)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, cols.numel()))
    for start in range(0, spec.k1, rows_per_chunk):
        stop = min(spec.k1, start + rows_per_chunk)
        out[start:stop] = _generate_rows(spec, start, stop, device, cols)
    return out


def used_atoms(spec: DictionarySpec, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The atoms ``indices`` refer to, as contiguous rows (u, k1), and the indices renumbered into
    them. Taken from a cached full dictionary when there is one, else generated column by column."""
    device = indices.device
    unique, remapped = torch.unique(indices, sorted=True, return_inverse=True)
    cached = _CACHE.peek(spec, device, transposed=True)
    if cached is not None:
        atoms = cached.index_select(0, unique)
    elif (full := _CACHE.peek(spec, device)) is not None:  # the encoder's copy, e.g. right after coding
        atoms = full.index_select(1, unique).t().contiguous()
    else:
        atoms = generate_columns(spec, unique, device).t().contiguous()
    return atoms, remapped.reshape(indices.shape)


class _DictionaryCache:
    """A small LRU of generated dictionaries, keyed by (spec, device).

    Layers with the same spec share one tensor. Bounded by total bytes so a long-running
    process that compresses many different layers does not grow without limit.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: DictionarySpec, device: torch.device | str, transposed: bool = False) -> torch.Tensor:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (spec, str(device), transposed)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        if transposed:
            matrix = self.get(spec, device).t().contiguous()
        else:
            matrix = generate_dictionary(spec, device)
        with self._lock:
            self._items[key] = matrix
            while len(self._items) > 1 and self._nbytes() > self.max_bytes:
                self._items.popitem(last=False)
        return matrix

    def peek(self, spec: DictionarySpec, device: torch.device | str, transposed: bool = False) -> torch.Tensor | None:
        """The cached matrix, or None (never generates)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        with self._lock:
            return self._items.get((spec, str(device), transposed))

    def _nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = _DictionaryCache()


def get_dictionary(spec: DictionarySpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """The cached dictionary for ``spec`` on ``device`` (generated on first use). Read-only."""
    return _CACHE.get(spec, device)


def get_atoms(spec: DictionarySpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """The dictionary's atoms as rows: a cached contiguous (k2, k1) copy of A^T.

    Decoding gathers s atoms per vector; through a transposed *view* sparse matmul copies the
    whole dictionary on every call (800x slower for a 1024 x 16384 dictionary).
    """
    return _CACHE.get(spec, device, transposed=True)


def clear_dictionary_cache() -> None:
    _CACHE.clear()
