"""benchmarks.latent_contexts: the code lengths it reports are the adaptive coder's, and each
context sees what a decoder would have (on tiny grids whose structure is known)."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import latent_contexts as lc
from torch_sinr.inr.hashgrid.encoding import HashGrid, HashGridConfig


def _sequential_kt_bits(symbols: list[int], contexts: list[int], alphabet: int) -> float:
    """The adaptive coder itself: each symbol costs -log2 of its count + 1/2 over the total + K/2."""
    counts: dict[int, list[float]] = {}
    bits = 0.0
    for s, c in zip(symbols, contexts):
        table = counts.setdefault(c, [0.0] * alphabet)
        bits -= math.log2((table[s] + 0.5) / (sum(table) + alphabet / 2))
        table[s] += 1
    return bits


def test_kt_bits_is_the_sequential_adaptive_code_length():
    g = torch.Generator().manual_seed(0)
    symbols = torch.randint(-2, 3, (300,), generator=g)
    contexts = torch.randint(0, 3, (300,), generator=g)
    alphabet = int(symbols.max() - symbols.min()) + 1
    shifted = (symbols - symbols.min()).tolist()
    assert lc.kt_bits(symbols) == pytest.approx(_sequential_kt_bits(shifted, [0] * 300, alphabet), rel=1e-9)
    assert lc.kt_bits(symbols, contexts) == pytest.approx(
        _sequential_kt_bits(shifted, contexts.tolist(), alphabet), rel=1e-9)
    # a constant stream costs little and a context that names the symbol costs less than none
    assert lc.kt_bits(torch.zeros(1000, dtype=torch.long)) < 10
    assert lc.kt_bits(symbols, symbols) < lc.kt_bits(symbols) / 3


def _grid(levels: int, log2_table: int, max_res: int) -> HashGrid:
    return HashGrid(HashGridConfig(dims=2, levels=levels, log2_table=log2_table, latent_dim=1, min_res=4,
                                   max_res=max_res))


def test_a_level_predicted_by_the_coarser_one_is_nearly_free_with_the_coarse_context():
    torch.manual_seed(0)
    grid = HashGrid(HashGridConfig(dims=2, levels=2, log2_table=12, latent_dim=1, min_res=16, max_res=32))
    reader = lc.LevelReader(grid)
    assert reader.dense == [True, True]
    r0, r1 = reader.res
    with torch.no_grad():
        grid.latents[:r0 * r0, 0] = torch.randint(-3, 4, (r0 * r0,)).float()
        # level 1 is the coarse level interpolated at its vertices, rounded: the context names each entry
        ys, xs = (t.reshape(-1) for t in torch.meshgrid(torch.arange(r1), torch.arange(r1), indexing="ij"))
        predicted = lc.LevelReader(grid).interpolate(0, xs.double() / (r1 - 1), ys.double() / (r1 - 1))
        grid.latents[r0 * r0 + xs + ys * r1, 0] = torch.round(predicted).float()
    bits = lc.level_bits(lc.LevelReader(grid), 1)
    assert bits["coarse"] < 0.2 * bits["order0"]
    assert bits["raster"] is not None and bits["checkerboard"] is not None


def test_hashed_levels_average_the_coarse_context_over_the_vertices_sharing_a_row():
    grid = _grid(2, 6, 16)  # level 1 has 17 x 17 = 289 vertices in 64 rows: hashed
    reader = lc.LevelReader(grid)
    assert reader.dense == [True, False]
    with torch.no_grad():
        grid.latents[:reader.sizes[0], 0] = 2.0  # a constant coarse level interpolates to 2 everywhere
    context = lc.LevelReader(grid).coarse(1, 1)
    assert context.shape == (64,)
    # every row some vertex hashes to holds the mean of 2s; a row none hashes to, 0
    assert torch.all((context == 2.0) | (context == 0.0)) and int((context == 2.0).sum()) > 32
    assert lc.level_bits(lc.LevelReader(grid), 1)["raster"] is None  # no raster order on a hashed level


def test_measure_reports_totals_and_savings_against_order_zero():
    torch.manual_seed(1)
    grid = _grid(3, 8, 24)
    with torch.no_grad():
        grid.latents.copy_(torch.randint(-2, 3, grid.latents.shape).float())
    m = lc.measure(grid)
    assert len(m["levels"]) == 3
    assert m["total"]["order0"] == pytest.approx(sum(l["bytes"]["order0"] for l in m["levels"]))
    assert m["saving"]["order0"] == 0.0
    assert m["saving_best_per_level"] >= max(m["saving"].values()) - 1e-12
    with pytest.raises(Exception, match="2-D grids with one latent"):
        lc.LevelReader(HashGrid(HashGridConfig(dims=3, levels=2, log2_table=8, latent_dim=1, min_res=4, max_res=8)))


def test_the_reader_interpolates_as_the_grid_does_on_dense_and_hashed_levels():
    torch.manual_seed(2)
    grid = _grid(3, 8, 24)  # 5, 10 and 25 vertices per axis: two dense levels, one hashed
    with torch.no_grad():
        grid.latents.copy_(torch.randint(-4, 5, grid.latents.shape).float())
    reader = lc.LevelReader(grid)
    assert reader.dense == [True, True, False]
    coords = torch.rand(500, 2, dtype=torch.float64)
    features = grid.interpolate(coords, grid.latents.detach())  # (levels, N, 1)
    for level in range(3):
        mine = reader.interpolate(level, coords[:, 0], coords[:, 1])
        assert torch.allclose(mine, features[level, :, 0].double(), atol=1e-5), level  # the grid sums in float32
