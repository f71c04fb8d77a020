"""benchmarks.core's huge-page section at a small size: both page kinds run the same kernel on
the same problem and give the same outputs, and the section renders."""

from __future__ import annotations

import pytest

from benchmarks import core
from torch_sinr.core.coders import omp_gram


@pytest.mark.skipif(not omp_gram.available(1024, 24, "cpu", True), reason="the gram kernel does not build here")
def test_huge_page_section_compares_the_same_kernel_on_both_page_kinds():
    r = core.bench_huge_pages(seed=1, repeats=1, k1=64, k2=1024, s=24, batch=16)
    assert r["outputs_identical"] is True
    assert set(r["median_s"]) == {"ordinary pages", "huge pages"} and all(v > 0 for v in r["median_s"].values())
    assert r["speedup"] == pytest.approx(r["median_s"]["ordinary pages"] / r["median_s"]["huge pages"])
    assert all(len(ts) == 2 for ts in r["times_s"].values())  # one untimed round, one timed
    text = core.render_huge_pages(r)
    assert "## f. The gram kernel on ordinary and on huge pages" in text and f"{r['speedup']:.2f}x" in text
