"""CPU tensors on transparent huge pages, for the large matrices OMP reads at random rows.

The correlation-space kernel (``omp_gram``) reads a few dozen rows of the Gram matrix a step,
and its float64 rescoring reads one entry from each of them: with 4 KiB pages nearly every such
read misses the TLB (a 4096-atom Gram matrix is 128 MiB, the TLB covers about 12 MiB), and the
page walks cost more than the reads. On 2 MiB pages the same reads walk 512 times fewer pages.
``benchmarks.core`` runs the kernel on both side by side (same outputs bit for bit).

torch's CPU allocator asks for huge pages only when the process sets ``THP_MEM_ALLOC_ENABLE``
before torch allocates, which a library cannot do for its user; and Linux gives them to
anonymous memory only when it is advised (``/sys/kernel/mm/transparent_hugepage/enabled`` is
``madvise`` on most distributions). So these tensors live in their own anonymous mapping,
aligned to 2 MiB and advised ``MADV_HUGEPAGE``. Where that is not possible (another OS, a kernel
without the advice, a small tensor) ``empty`` is ``torch.empty``: only speed depends on it.
"""

from __future__ import annotations

import ctypes
import math
import mmap

import torch

__all__ = ["empty", "HUGE_PAGE"]

HUGE_PAGE = 2 * 2**20


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor, on huge pages where the system allows it."""
    count = math.prod(shape)
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_PAGE or advice is None:
        return torch.empty(shape, dtype=dtype)
    try:
        mapping = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return torch.empty(shape, dtype=dtype)
    view = ctypes.c_char.from_buffer(mapping)
    address = ctypes.addressof(view)
    del view  # an exported buffer would keep the mapping from ever closing
    offset = -address % HUGE_PAGE  # huge pages back 2 MiB-aligned ranges only
    try:
        mapping.madvise(advice, offset, nbytes)
    except (OSError, ValueError):
        pass  # no advice taken: ordinary pages, the same numbers
    # frombuffer keeps ``mapping`` alive for as long as the tensor (or a view of it) lives
    return torch.frombuffer(mapping, dtype=dtype, count=count, offset=offset).view(shape)
