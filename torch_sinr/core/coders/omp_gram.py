"""OMP in correlation space on the CPU: a C++ kernel that computes A^T r from the Gram matrix.

Both torch paths (``omp_batch``, ``omp_screen``) score every atom every step with a product of the
residuals and the dictionary: B x k1 x k2 multiply-adds a step, a float32 GEMM bound on a CPU
without a matrix unit (benchmarks.core measures it). Here each signal's correlations are
``alpha = A^T w - G[:, I] beta`` (I the support, beta its least-squares coefficients), k2 x t
multiply-adds a step (t: the support so far), with the Gram matrix G = A^T A computed once per
dictionary (``PreparedDictionary.gram``, and its float32 copy ``gram32()``). The bulk runs in
float32 with a rigorous bound on its error, and every atom that can be the float64 argmax is
rescored in float64, so the decisions are float64's exactly; scikit-learn's selection and stopping
rules (``torch_sinr/native/omp_gram.cpp`` documents the recurrences and the bound).

Available where the kernel builds (``torch_sinr.native``), on CPU tensors, when the Gram matrix is
prepared (8 k2^2 <= ``GRAM_MAX_BYTES``) and a signal's triangular factor fits ``FACTOR_MAX_BYTES``.
``available`` says whether, and ``why_unavailable`` why not.
"""

from __future__ import annotations

import ctypes

import torch
from torch.profiler import record_function

from ...errors import SINRInputError
from ... import native
from .omp_batch import CHUNK_BYTES, PreparedDictionary

# One signal's triangular factor, held by columns and by rows (2 x limit x limit float64) per
# thread: past this (limit > 2048) the batch path's memory bound is the safer one.
FACTOR_MAX_BYTES = 64 * 2**20

_ARGS = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 9


def _kernel():
    lib = native.load("omp_gram")
    if lib is not None and not getattr(lib, "_sinr_typed", False):
        lib.sinr_omp_gram.argtypes = _ARGS
        lib.sinr_omp_gram.restype = ctypes.c_int
        lib._sinr_typed = True
    return lib


def why_unavailable(k2: int, limit: int, device: torch.device, has_gram: bool) -> str | None:
    """Why the kernel cannot run this problem (None: it can)."""
    if torch.device(device).type != "cpu":
        return f"the kernel runs on the CPU, the signals are on {device}"
    if not has_gram:
        return f"no Gram matrix for k2 = {k2} (8 k2^2 bytes over the prepared dictionary's bound)"
    if 16 * limit * limit > FACTOR_MAX_BYTES:
        return f"a signal's triangular factor (16 limit^2 = {16 * limit * limit} bytes) exceeds {FACTOR_MAX_BYTES}"
    if _kernel() is None:
        return f"the C++ kernel is not built here: {native.why_not('omp_gram')}"
    return None


def available(k2: int, limit: int, device: torch.device, gram_fits: bool) -> bool:
    return why_unavailable(k2, limit, device, gram_fits) is None


def gram_omp(prep: PreparedDictionary, w: torch.Tensor, limit: int, tol2: torch.Tensor, track_residual: bool,
             progress=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """OMP on the rows of ``w`` (float64, CPU) with the prepared dictionary's Gram matrix; the same
    returns as ``omp_batch.batch_omp``. Call only where ``why_unavailable`` is None."""
    why = why_unavailable(prep.k2, limit, w.device, prep.gram is not None)
    if why is not None:
        raise SINRInputError(f"omp method 'gram' cannot run here: {why}")
    lib = _kernel()
    batch, k2 = w.shape[0], prep.k2
    support = torch.zeros(batch, limit, dtype=torch.int64)
    coef = torch.zeros(batch, limit, dtype=torch.float64)
    counts = torch.zeros(batch, dtype=torch.int64)
    residual2 = torch.zeros(batch, limit, dtype=torch.float64)
    gram = prep.gram.contiguous()
    gram32 = prep.gram32()
    tol2 = tol2.to(torch.float64).contiguous()
    # Rows whose correlations A^T w are held at once: about twenty calls, so a bar moves, whether
    # or not one is shown. The chunk must not depend on the bar: the BLAS product's last bits
    # depend on how the rows are split, and the codes must not depend on a progress bar.
    chunk = min(max(1, CHUNK_BYTES // (8 * k2)), max(64, -(-batch // 20)))
    for start in range(0, batch, chunk):
        stop = min(batch, start + chunk)
        rows = w[start:stop]
        with record_function("sinr_omp.gram"):  # the phase benchmarks.core's profile names
            alpha0 = (rows @ prep.atoms_t.t()).contiguous()  # A^T w, one float64 GEMM
            norm2 = (rows * rows).sum(1).contiguous()
            status = lib.sinr_omp_gram(stop - start, k2, limit, gram.data_ptr(), gram32.data_ptr(), alpha0.data_ptr(),
                                       norm2.data_ptr(), tol2[start:stop].data_ptr(), support[start:stop].data_ptr(),
                                       coef[start:stop].data_ptr(), counts[start:stop].data_ptr(),
                                       residual2[start:stop].data_ptr())
        if status == 2:
            raise MemoryError(f"omp_gram: the kernel could not allocate a thread's scratch "
                              f"(about {9 * k2 + 16 * limit * limit} bytes)")
        if status != 0:  # the arguments checked above make this unreachable; never return half-written codes
            raise SINRInputError(f"omp_gram: the kernel refused its arguments (status {status})")
        if progress is not None:
            progress.update((stop - start) * limit)
    history = residual2.sum(0) if track_residual else None
    return support, coef, counts, history
