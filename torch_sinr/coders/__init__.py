"""Sparse coders: find x with few non-zeros such that w ≈ A x."""

from .basis_pursuit import basis_pursuit
from .omp import SparseCode, omp

__all__ = ["SparseCode", "basis_pursuit", "omp"]
