"""Huge-page tensors for the Gram matrix: aligned, alive as long as a view is, backed by huge pages
where the system gives them, and changing no number of the prepared dictionary."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from torch_sinr.core.coders import huge_pages
from torch_sinr.core.coders.omp_batch import PreparedDictionary
from torch_sinr.core.dictionary import DictionarySpec, generate_dictionary

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_large_tensor_is_aligned_contiguous_and_outlives_its_name():
    t = huge_pages.empty((1024, 1024), torch.float64)
    assert t.shape == (1024, 1024) and t.dtype == torch.float64 and t.is_contiguous()
    assert t.data_ptr() % huge_pages.HUGE_PAGE == 0
    t.fill_(3.0)
    view = t[5:]
    del t
    gc.collect()
    torch.randn(2000, 2000)  # allocations that would reuse freed memory
    assert view.sum().item() == 1019 * 1024 * 3.0


def test_small_tensor_is_an_ordinary_one():
    t = huge_pages.empty((3, 4), torch.float32)
    assert t.shape == (3, 4) and t.dtype == torch.float32


def _huge_kib_at(address: int) -> int | None:
    """AnonHugePages of the mapping holding ``address`` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return None


@pytest.mark.skipif(not THP.is_file() or "[never]" in (THP.read_text() if THP.is_file() else ""),
                    reason="transparent huge pages are off or absent on this system")
def test_memory_is_on_huge_pages_where_the_system_gives_them():
    t = huge_pages.empty((8 * 2**20 // 8,), torch.float64)  # 8 MiB
    t.fill_(1.0)  # touched: the pages exist
    kib = _huge_kib_at(t.data_ptr())
    assert kib is not None and kib >= 4 * 1024  # at least half of it (fragmentation may deny a page)


def test_prepared_dictionary_numbers_are_unchanged():
    a = generate_dictionary(DictionarySpec(seed=3, k1=64, k2=1024)).to(torch.float64)
    prep = PreparedDictionary(a, torch.device("cpu"), torch.float32)
    expected = prep.atoms_t @ prep.atoms_t.t()
    assert torch.equal(prep.gram, expected)
    assert torch.equal(prep.gram32(), expected.to(torch.float32))
    assert prep.gram.data_ptr() % huge_pages.HUGE_PAGE == 0  # 8 MiB: on its own mapping
