"""Orthogonal Matching Pursuit for every row of a layer at once, CPU or CUDA.

Why not scikit-learn's ``orthogonal_mp``: it solves one signal at a time in a Python loop and
runs on the CPU only. Here all B signals advance together. Three exact implementations share one
contract (same supports as scikit-learn, decided in float64; coefficients in float64):

- ``"gram"`` (``omp_gram``, CPU): a C++ kernel that updates each signal's correlations from the
  Gram matrix, k2 x t multiply-adds a step instead of k2 x k1; where the kernel builds and the
  Gram matrix fits.
- ``"batch"`` (``omp_batch``): certified bfloat16/float32 screening, Gram-based Cholesky updates
  and CSR residuals; per-step work besides the screening GEMM grows with the support size.
- ``"screen"`` (``omp_screen``): float32 screening with an orthonormal basis of the support; the
  original path, kept as a reference and for the sizes where it is not slower.

``method="auto"`` picks ``"gram"`` where it can run, else by problem size (``choose_method``);
``benchmarks/core.py`` measures all three.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from ...errors import SINRInputError
from . import omp_gram
from .omp_batch import GRAM_MAX_BYTES, PreparedDictionary, batch_omp
from .omp_screen import screening_omp
from .screening import screen_dtype

METHODS = ("auto", "gram", "batch", "screen")
# Progress bars for problems of at least this many screened multiply-adds (B k1 k2 s): about a
# second on a 2-core CPU.
_PROGRESS_WORK = 2e11
# What ``progress=None`` means inside ``omp_progress(...)``: callers with their own progress
# switch (compress_model(progress=False)) silence the coder without passing it through the
# coder registry's call signature.
_PROGRESS_DEFAULT: ContextVar[bool | None] = ContextVar("omp_progress", default=None)


@contextmanager
def omp_progress(enabled: bool | None):
    """Within the block, ``omp(progress=None)`` shows a progress bar if ``enabled`` (None: by size)."""
    token = _PROGRESS_DEFAULT.set(enabled)
    try:
        yield
    finally:
        _PROGRESS_DEFAULT.reset(token)


@dataclass
class SparseCode:
    """Sparse codes of B signals: row b is ``sum_j values[b, j] * A[:, indices[b, j]]``.

    Entries past ``counts[b]`` are padding (index 0, value 0); with a fixed number of non-zeros
    every count equals ``indices.shape[1]``.
    """

    indices: torch.Tensor  # (B, s) int64
    values: torch.Tensor  # (B, s) float64
    counts: torch.Tensor  # (B,) int64
    # With track_residual: total squared residual over all rows after each step (s,).
    residual_history: torch.Tensor | None = None

    def to_dense(self, k2: int) -> torch.Tensor:
        """The (B, k2) coefficient matrix."""
        out = torch.zeros(self.indices.shape[0], k2, dtype=self.values.dtype, device=self.values.device)
        return out.scatter_add_(1, self.indices, self.values)


def _check_inputs(dictionary: torch.Tensor, signals: torch.Tensor) -> None:
    if dictionary.ndim != 2 or signals.ndim != 2:
        raise SINRInputError(
            f"omp needs a 2-D dictionary (k1, k2) and 2-D signals (B, k1); got shapes "
            f"{tuple(dictionary.shape)} and {tuple(signals.shape)}"
        )
    if dictionary.shape[0] != signals.shape[1]:
        raise SINRInputError(
            f"signal length {signals.shape[1]} does not match dictionary rows {dictionary.shape[0]}"
        )
    for name, t in (("dictionary", dictionary), ("signals", signals)):
        if not t.is_floating_point():
            raise SINRInputError(f"omp {name} must be floating point, got {t.dtype}")
        if not torch.isfinite(t).all():
            raise SINRInputError(f"omp {name} contains NaN or Inf")


# Below this many screened (row, atom, step) triples the screening path is faster: its steps run
# fewer torch operations. Measured by benchmarks/core.py (section e, "crossover"); on 2 cores both
# took 64-66 ms at 256 x 64 -> 1024, s = 29 (7.6e6), and batch OMP won every larger size measured.
BATCH_MIN_WORK = 2**23


def choose_method(batch: int, k1: int, k2: int, limit: int) -> str:
    """The faster exact torch path for a problem of this size (see ``BATCH_MIN_WORK``)."""
    return "batch" if batch * k2 * limit >= BATCH_MIN_WORK else "screen"


def auto_method(batch: int, k1: int, k2: int, limit: int, device: torch.device) -> str:
    """What ``method="auto"`` runs: the C++ correlation-space kernel where it can run (faster than
    both torch paths at every size benchmarks.core measures), else the faster torch path."""
    if omp_gram.available(k2, limit, device, 8 * k2 * k2 <= GRAM_MAX_BYTES):
        return "gram"
    return choose_method(batch, k1, k2, limit)


_PREPARED: dict[tuple, tuple[int, PreparedDictionary]] = {}


def prepared(dictionary: torch.Tensor, device: torch.device) -> PreparedDictionary:
    """Batch OMP's per-dictionary tensors (Gram, screening copy), cached while the dictionary
    tensor lives and is unmodified (its in-place version counter is part of the check)."""
    dtype = screen_dtype(device)
    key = (id(dictionary), str(device), dtype)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] == dictionary._version:
        return hit[1]
    prep = PreparedDictionary(dictionary, device, dtype)
    if hit is None:
        weakref.finalize(dictionary, _PREPARED.pop, key, None)
    _PREPARED[key] = (dictionary._version, prep)
    return prep


def omp(
    dictionary: torch.Tensor,
    signals: torch.Tensor,
    n_nonzero: int | None = None,
    max_residual: float | torch.Tensor | None = None,
    track_residual: bool = False,
    method: str = "auto",
    progress: bool | None = None,
) -> SparseCode:
    """Orthogonal Matching Pursuit for every row of ``signals`` (B, k1) against ``dictionary`` (k1, k2).

    Stops a row after ``n_nonzero`` atoms, or as soon as its residual L2 norm is at most
    ``max_residual`` (a float or a (B,) tensor), whichever comes first; at least one must be
    given. Matches ``sklearn.linear_model.orthogonal_mp`` (whose ``tol`` is ``max_residual**2``).
    Runs on the signals' device; returns float64 values. ``track_residual`` records the total
    squared residual after every step (the error of every shorter code, as OMP is greedy).
    ``method``: "auto", "gram", "batch" or "screen" (see the module docstring); ``progress``: a progress
    bar (None: only for problems that take seconds).
    """
    _check_inputs(dictionary, signals)
    if method not in METHODS:
        raise SINRInputError(f"omp method must be one of {METHODS}, got {method!r}")
    k1, k2 = dictionary.shape
    batch = signals.shape[0]
    if n_nonzero is None and max_residual is None:
        raise SINRInputError("omp needs n_nonzero, max_residual, or both")
    limit = min(k1, k2) if n_nonzero is None else int(n_nonzero)
    if not 1 <= limit <= min(k1, k2):
        raise SINRInputError(f"n_nonzero must be in [1, min(k1, k2)={min(k1, k2)}], got {n_nonzero}")

    device = signals.device
    w = signals.to(torch.float64)
    if max_residual is None:
        tol2 = torch.full((batch,), -1.0, dtype=torch.float64, device=device)
    else:
        tol = torch.as_tensor(max_residual, dtype=torch.float64, device=device).expand(batch)
        tol2 = tol * tol
    if method == "auto":
        method = auto_method(batch, k1, k2, limit, device)
    if method == "screen":
        support, coef, counts, history = screening_omp(dictionary, w, limit, tol2, track_residual)
    else:
        bar = None
        if progress is None:
            progress = _PROGRESS_DEFAULT.get()
        if progress or (progress is None and batch * k1 * k2 * limit >= _PROGRESS_WORK):
            from tqdm.auto import tqdm

            bar = tqdm(total=batch * limit, desc=f"OMP {batch} x {k1} -> {k2} atoms", unit="row-step",
                       unit_scale=True, leave=False)
        try:
            run = omp_gram.gram_omp if method == "gram" else batch_omp
            support, coef, counts, history = run(prepared(dictionary, device), w, limit, tol2, track_residual, bar)
        finally:
            if bar is not None:
                bar.close()
    return SparseCode(indices=support, values=coef, counts=counts, residual_history=history)
