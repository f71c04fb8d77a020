"""The torch ray marching and packed scans of ``cpu_marching`` against a per-ray Python loop that
follows nerfacc's kernel step by step (cuda/csrc/grid.cu, ``traverse_grids_kernel``), with
nerfacc's own pure-torch pieces (``grid._ray_aabb_intersect``, ``grid._query``) where they exist."""

from __future__ import annotations

import pytest

pytest.importorskip("nerfacc", reason="nerfacc is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402
from nerfacc.grid import _enlarge_aabb, _query, _ray_aabb_intersect  # noqa: E402

from torch_sinr import SINRConfigError, SINRInputError  # noqa: E402
from torch_sinr_nerfstudio.cpu_marching import (  # noqa: E402
    exclusive_prod,
    exclusive_sum,
    march_grid,
    nerfacc_on_cpu,
    pack_info,
    ray_aabb_intersect,
    traverse_grids,
)

BASE = torch.tensor([-1.0, -0.5, -1.5, 1.0, 1.5, 0.5])  # not a cube, not centred


def grids(levels: int, resolution=(6, 5, 7), occupied: float = 0.4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    binaries = torch.rand(levels, *resolution, generator=generator) < occupied
    aabbs = torch.stack([_enlarge_aabb(BASE, 2**i) for i in range(levels)])
    return binaries, aabbs


def rays(count: int, seed: int = 1):
    """Rays from outside every grid, from inside the coarse levels, and one along an axis."""
    generator = torch.Generator().manual_seed(seed)
    origins = (torch.rand(count, 3, generator=generator) * 2 - 1) * torch.tensor([5.0, 4.0, 6.0])
    targets = (torch.rand(count, 3, generator=generator) * 2 - 1) * 0.8
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    directions[0] = torch.tensor([0.0, 0.0, 1.0])  # zero components: infinite slabs
    origins[0] = torch.tensor([0.1, 0.2, -9.0])
    return origins, directions


def reference_march(o, d, binaries, aabbs, near, far, step_size, cone_angle):
    """One ray, one lattice step at a time, as the kernel's t_last loop; occupancy through
    nerfacc's own ``_query`` (mip level from the point's position), the range through nerfacc's
    ``_ray_aabb_intersect`` of the outermost box."""
    t_min, t_max, hit = _ray_aabb_intersect(o[None], d[None], aabbs[-1:])
    if not hit[0, 0]:
        return []
    lower, upper = max(float(t_min[0, 0]), float(near)), min(float(t_max[0, 0]), float(far))
    step, cone = torch.tensor(step_size), torch.tensor(cone_angle)
    t, samples = near.clone(), []
    while True:
        dt = torch.clamp(t * cone, step, torch.tensor(1e10)) if cone_angle else step
        mid = t + dt * 0.5
        if mid >= upper:
            return samples
        if mid >= lower:
            occupied, _ = _query((o + d * mid)[None], binaries.float(), aabbs[0])
            if occupied[0]:
                samples.append((float(t), float(t + dt)))
        t = t + dt


@pytest.mark.parametrize("levels, cone_angle", [(1, 0.0), (3, 0.0), (3, 0.02)])
def test_march_matches_the_kernels_rules_ray_by_ray(levels, cone_angle):
    binaries, aabbs = grids(levels)
    origins, directions = rays(40)
    generator = torch.Generator().manual_seed(2)
    near = torch.rand(40, generator=generator) * 0.5  # stratified-like, per ray
    far = torch.full((40,), 1e3)
    far[:5] = 4.0  # some rays stop inside the grids
    step = 0.05
    ray_indices, t_starts, t_ends, t_mids = march_grid(origins, directions, binaries, aabbs, near, far, step,
                                                      cone_angle)
    assert ray_indices.dtype == torch.long and t_starts.dtype == torch.float32
    total = 0
    for ray in range(40):
        mine = [(a, b) for a, b in zip(t_starts[ray_indices == ray].tolist(), t_ends[ray_indices == ray].tolist())]
        expected = reference_march(origins[ray], directions[ray], binaries, aabbs, near[ray], far[ray], step,
                                   cone_angle)
        assert mine == expected, f"ray {ray}"
        total += len(mine)
    assert total > 200  # the rays do cross occupied cells
    assert torch.equal(t_mids, (t_starts + t_ends) * 0.5)
    assert torch.all(ray_indices[1:] >= ray_indices[:-1])  # packed ray by ray


def test_empty_and_full_grids():
    binaries, aabbs = grids(2)
    origins, directions = rays(8)
    near, far = torch.zeros(8), torch.full((8,), 100.0)
    none = march_grid(origins, directions, torch.zeros_like(binaries), aabbs, near, far, 0.1, 0.0)
    assert all(len(t) == 0 for t in none)
    full = march_grid(origins, directions, torch.ones_like(binaries), aabbs, near, far, 0.1, 0.0)
    t_min, t_max, hit = ray_aabb_intersect(origins, directions, aabbs[-1:])
    for ray in range(8):  # every lattice midpoint inside the outer box is a sample, back to back
        starts, ends = full[1][full[0] == ray], full[2][full[0] == ray]
        mids = (starts + ends) / 2
        if hit[ray, 0]:
            assert torch.equal(starts[1:], ends[:-1])
            assert mids[0] >= t_min[ray, 0] and mids[-1] < t_max[ray, 0] and mids[-1] + 0.1 >= t_max[ray, 0]
    with pytest.raises(SINRConfigError, match="positive step size"):
        march_grid(origins, directions, binaries, aabbs, near, far, 0.0, 0.0)


def test_intersection_matches_nerfaccs_torch_version():
    _, aabbs = grids(3)
    origins, directions = rays(64)
    mine = ray_aabb_intersect(origins, directions, aabbs)
    theirs = _ray_aabb_intersect(origins, directions, aabbs)
    assert torch.equal(mine[2], theirs[2])
    assert torch.allclose(mine[0][mine[2]], theirs[0][theirs[2]]) and torch.allclose(mine[1][mine[2]],
                                                                                       theirs[1][theirs[2]])


def test_traverse_grids_feeds_occupancy_grid_sampling():
    """nerfacc's own OccGridEstimator.sampling on the CPU, through the swapped traverse_grids."""
    from nerfacc import OccGridEstimator

    estimator = OccGridEstimator(roi_aabb=BASE, resolution=[6, 5, 7], levels=2)
    estimator.binaries = grids(2)[0]
    origins, directions = rays(16)
    with pytest.raises(Exception):  # nerfacc alone cannot march CPU tensors
        estimator.sampling(origins, directions, render_step_size=0.05)
    with nerfacc_on_cpu():
        ray_indices, t_starts, t_ends = estimator.sampling(origins, directions, render_step_size=0.05,
                                                           near_plane=0.2)
    expected = march_grid(origins, directions, estimator.binaries, estimator.aabbs, torch.full((16,), 0.2),
                          torch.full((16,), 1e10), 0.05, 0.0)
    assert torch.equal(ray_indices, expected[0]) and torch.equal(t_starts, expected[1]) and len(t_starts) > 50
    intervals, samples = traverse_grids(origins, directions, estimator.binaries, estimator.aabbs, step_size=0.05)
    assert torch.equal(samples.packed_info, pack_info(samples.ray_indices, 16))
    assert torch.equal(intervals.vals[intervals.is_left], march_grid(
        origins, directions, estimator.binaries, estimator.aabbs, torch.zeros(16), torch.full((16,), torch.inf),
        0.05, 0.0)[1])
    import nerfacc.estimators.occ_grid

    assert nerfacc.estimators.occ_grid.traverse_grids is not traverse_grids  # put back on exit


def packed(counts, seed=3):
    counts = torch.tensor(counts)
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    values = torch.rand(int(counts.sum()), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return values, info


def loop_scan(values, info, product: bool):
    out = torch.zeros_like(values)
    for start, count in info.tolist():
        running = torch.ones((), dtype=values.dtype) if product else torch.zeros((), dtype=values.dtype)
        for i in range(start, start + count):
            out = out.index_put((torch.tensor([i]),), running[None])
            running = running * values[i] if product else running + values[i]
    return out


@pytest.mark.parametrize("scan, product", [(exclusive_sum, False), (exclusive_prod, True)])
def test_packed_scans_and_their_gradients_match_a_loop(scan, product):
    values, info = packed([3, 0, 5, 1, 4])
    values[6] = 0.0  # a zero inside a product: its gradient is not 0 / 0
    a = values.clone().requires_grad_(True)
    b = values.clone().requires_grad_(True)
    mine, theirs = scan(a, info), loop_scan(b, info, product)
    assert torch.allclose(mine, theirs, atol=1e-12)
    weights = torch.rand(len(values), dtype=torch.float64)
    (mine * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    reordered = info[[2, 0, 4, 1, 3]]  # chunks in any order
    assert torch.allclose(scan(values, reordered), loop_scan(values, reordered, product), atol=1e-12)
    with pytest.raises(SINRInputError, match="flat inputs"):
        scan(values[:, None], info)


def test_pack_info_and_the_swap_of_nerfaccs_functions():
    import nerfacc
    import nerfacc.volrend

    ray_indices = torch.tensor([0, 0, 2, 2, 2, 3])
    assert pack_info(ray_indices, 5).tolist() == [[0, 2], [2, 0], [2, 3], [5, 1], [6, 0]]
    assert pack_info(ray_indices).shape == (4, 2)
    originals = nerfacc.pack_info, nerfacc.volrend.exclusive_sum
    values, info = packed([2, 3], seed=4)
    sigmas, starts = values.float(), torch.arange(5, dtype=torch.float32)
    with nerfacc_on_cpu():
        with nerfacc_on_cpu():  # nests
            weights, trans, alphas = nerfacc.render_weight_from_density(starts, starts + 0.5, sigmas,
                                                                        ray_indices=torch.tensor([0, 0, 1, 1, 1]),
                                                                        n_rays=2)
        assert nerfacc.pack_info is pack_info
    assert (nerfacc.pack_info, nerfacc.volrend.exclusive_sum) == originals
    expected = torch.exp(-loop_scan(values * 0.5, info, product=False)).float()
    assert torch.allclose(trans, expected) and torch.allclose(weights, trans * alphas)
