"""Sparse coders: find x with few non-zeros such that w ≈ A x.

Coders are looked up by name in a registry, so a new one plugs in without touching the code
that calls it: ``register_coder("mine", fn)`` makes ``SINRConfig(coder="mine")`` and
``encode_tensors(..., coder="mine")`` use ``fn``. A coder is called as
``fn(dictionary, signals, n_nonzero=s)`` with a (k1, k2) dictionary and (B, k1) float64 signals
on one device, and returns a :class:`SparseCode` with at most s entries per row (rows with
fewer are padded by the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ...errors import SINRConfigError
from .basis_pursuit import basis_pursuit
from .omp import SparseCode, omp

Coder = Callable[..., SparseCode]
_REGISTRY: dict[str, Coder] = {}


def register_coder(name: str, fn: Coder, *, replace: bool = False) -> None:
    """Make ``fn`` available as ``coder=name``. Refuses to replace a coder unless ``replace``."""
    if not isinstance(name, str) or not name:
        raise SINRConfigError(f"a coder name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"coder {name!r} must be callable, got {type(fn).__name__}")
    if name in _REGISTRY and not replace:
        raise SINRConfigError(f"coder {name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = fn


def get_coder(name: str) -> Coder:
    """The coder registered as ``name``; ``KeyError`` if there is none."""
    return _REGISTRY[name]


class _CoderNames(Sequence):
    """The registered names, read live: a coder registered later is valid everywhere at once
    (``SINRConfig.validate`` checks ``coder in CODERS``). Prints like a tuple in messages."""

    def __getitem__(self, index):
        return tuple(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __contains__(self, name) -> bool:
        return name in _REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


CODER_NAMES: Sequence[str] = _CoderNames()

register_coder("omp", omp)  # the fast default: batched, CPU or CUDA
register_coder("bp", basis_pursuit)  # L1 by linear programming (scipy, loaded on first use)

__all__ = ["CODER_NAMES", "SparseCode", "basis_pursuit", "get_coder", "omp", "register_coder"]
