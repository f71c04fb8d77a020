"""nerfacc's occupancy-grid ray marching and packed scans in plain torch, so nerfstudio's
instant-ngp trains and renders on a CPU.

nerfstudio 1.1.5's ``NGPModel`` (``models/instant_ngp.py``) reaches nerfacc 0.5.2's CUDA extension
``nerfacc.cuda._C`` (no CPU kernel) in three places, and nowhere else:

* ``VolumetricSampler.forward`` (``model_components/ray_samplers.py``) calls
  ``OccGridEstimator.sampling`` (``nerfacc/estimators/occ_grid.py``), which marches the rays with
  ``traverse_grids`` (``nerfacc/grid.py`` -> ``traverse_grids_kernel`` in ``cuda/csrc/grid.cu``);
* the compositing (``render_weight_from_density``, and ``render_visibility_from_density`` that
  ``sampling`` uses to drop occluded samples while training, both in ``nerfacc/volrend.py``)
  takes transmittance from ``exclusive_sum`` / ``exclusive_prod`` over packed rays
  (``nerfacc/scan.py`` -> ``cuda/csrc/scan.cu``);
* ``pack_info`` (``nerfacc/pack.py``) refuses CPU tensors.

Everything else NGP uses is torch already: ``accumulate_along_rays`` (``volrend.py``), and the
occupancy grid's update (``OccGridEstimator.update_every_n_steps`` / ``_update``), which only
evaluates the field at random points of every cell.

``nerfacc_on_cpu()`` puts the functions below in those places while it is active; each one hands
CUDA tensors to nerfacc's own. Nothing here was compared with the CUDA kernels (there is no GPU
on the machine this was written on); the tests compare it with a per-ray Python loop that
follows the kernel's rules step by step.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor

from torch_sinr import SINRConfigError, SINRInputError

# the kernel's upper bound on one step (``_calc_dt`` in cuda/csrc/grid.cu is called with 1e10)
MAX_STEP = 1e10
# lattice steps taken per Python loop before the block is tested against the grids
BLOCK_STEPS = 256


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, aabbs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of every ray through every box, and whether it hits.

    The slab test of ``ray_aabb_intersect`` in ``cuda/csrc/include/utils_grid.cuh``: per axis the
    near/far slab distances through ``1 / d``; a miss where the x-y or xy-z slabs do not overlap or
    where the box lies behind the origin (exit <= 0). ``traverse_grids`` calls it without near or
    far limits, so these are not clipped. Shapes: (n_rays, 3), (n_rays, 3), (m, 6) -> three
    (n_rays, m) tensors.
    """
    inv = 1.0 / rays_d[:, None, :]
    lo = (aabbs[None, :, :3] - rays_o[:, None, :]) * inv
    hi = (aabbs[None, :, 3:] - rays_o[:, None, :]) * inv
    forward = inv >= 0
    near, far = torch.where(forward, lo, hi), torch.where(forward, hi, lo)
    t_min, t_max = near[..., 0], far[..., 0]
    hit = torch.ones_like(t_min, dtype=torch.bool)
    for axis in (1, 2):
        a_min, a_max = near[..., axis], far[..., axis]
        hit &= ~((t_min > a_max) | (a_min > t_max))
        # the kernel's "if (tmin_temp > tmin) tmin = tmin_temp": a NaN slab leaves the bound as it is
        t_min = torch.where(a_min > t_min, a_min, t_min)
        t_max = torch.where(a_max < t_max, a_max, t_max)
    hit &= t_max > 0
    return t_min, t_max, hit


def march_grid(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, near_planes: Tensor,
               far_planes: Tensor, step_size: float, cone_angle: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The samples ``traverse_grids`` places along rays through a multi-level occupancy grid.

    Returns ``(ray_indices, t_starts, t_ends, t_mids)`` packed ray by ray, each ray's samples in
    order of distance. The rules, from ``traverse_grids_kernel`` (cuda/csrc/grid.cu):

    * The march of a ray starts at its near plane and steps by
      ``dt = clamp(t * cone_angle, step_size, 1e10)`` (``_calc_dt``), summed in float32 as the
      kernel sums them, whether the step lies in an empty cell or not, so every sample is one
      interval ``[t, t + dt]`` of that lattice.
    * An interval belongs to where its midpoint ``t + dt / 2`` lies: it is a sample when that
      midpoint is inside the grids and in ``[near, far)``, and the cell holding it is occupied
      (``binaries``) at the finest level whose box contains it (the kernel walks the sorted box
      entries and exits and uses, between two of them, the innermost box the ray is in).
    * ``t_mids`` is ``(t_start + t_end) / 2``, the kernel's sample value.

    The kernel finds a midpoint's cell by stepping a 3D DDA along the ray; here it is the cell
    of the midpoint's position, the same cell up to float rounding at a cell face.
    Only a positive ``step_size`` is covered (the kernel's ``step_size <= 0`` marches whole cells).
    """
    if not step_size > 0:
        raise SINRConfigError(f"CPU ray marching needs a positive step size (got {step_size}); nerfacc's "
                              "cell-by-cell march (step_size <= 0) has no CPU version here")
    n_rays = rays_o.shape[0]
    device = rays_o.device
    levels = binaries.shape[0]
    resolution = torch.tensor(binaries.shape[1:], device=device)
    t_min, t_max, hit = ray_aabb_intersect(rays_o, rays_d, aabbs)
    entry = torch.where(hit, t_min, torch.inf).amin(dim=1)
    leave = torch.where(hit, t_max, -torch.inf).amax(dim=1)
    lower = torch.maximum(entry, near_planes)
    upper = torch.minimum(leave, far_planes)
    marching = hit.any(dim=1) & (lower < upper)
    upper = torch.where(marching, upper, -torch.inf)  # rays that miss are done before they start

    step = torch.tensor(step_size, dtype=torch.float32, device=device)
    cone = torch.tensor(cone_angle, dtype=torch.float32, device=device)
    t = near_planes.to(torch.float32).clone()
    parts = []
    while bool(marching.any()):
        starts = torch.empty(BLOCK_STEPS, n_rays, dtype=torch.float32, device=device)
        steps = torch.empty_like(starts)
        for k in range(BLOCK_STEPS):
            dt = (t * cone).clamp(step, MAX_STEP) if cone_angle != 0 else step
            starts[k] = t
            steps[k] = dt
            t = t + dt
        # the whole block at once: a gather per in-range sample costs more than the dense work
        mid = starts + steps * 0.5
        inside = (mid >= lower) & (mid < upper)
        if bool(inside.any()):
            position = rays_o + rays_d * mid[..., None]
            if levels == 1:
                level, low, size = 0, aabbs[0, :3], aabbs[0, 3:] - aabbs[0, :3]
            else:
                in_box = hit & (mid[..., None] >= t_min) & (mid[..., None] < t_max)
                level = in_box.to(torch.uint8).argmax(dim=-1)  # the first (finest) box that holds it
                low, size = aabbs[level, :3], aabbs[level, 3:] - aabbs[level, :3]
            cell = ((position - low) / size * resolution).to(torch.long)  # truncation, as make_int3
            cell = torch.minimum(cell.clamp_min(0), resolution - 1)
            flat = (((level * resolution[0] + cell[..., 0]) * resolution[1] + cell[..., 1]) * resolution[2]
                    + cell[..., 2])
            k_idx, r_idx = (inside & binaries.reshape(-1)[flat]).nonzero(as_tuple=True)
            t0, dt = starts[k_idx, r_idx], steps[k_idx, r_idx]
            t1 = t0 + dt
            parts.append((r_idx, t0, t1, (t1 + t0) * 0.5))
        next_dt = (t * cone).clamp(step, MAX_STEP) if cone_angle != 0 else step
        marching &= t + next_dt * 0.5 < upper  # the next midpoint is still short of the end
    if not parts:
        empty = torch.empty(0, dtype=torch.float32, device=device)
        return torch.empty(0, dtype=torch.long, device=device), empty, empty.clone(), empty.clone()
    ray_indices, t_starts, t_ends, t_mids = (torch.cat(p) for p in zip(*parts))
    order = torch.sort(ray_indices, stable=True).indices  # blocks come in distance order
    return ray_indices[order], t_starts[order], t_ends[order], t_mids[order]


def pack_info(ray_indices: Tensor, n_rays: int | None = None) -> Tensor:
    """(n_rays, 2): where each ray's samples start and how many there are (``nerfacc/pack.py``,
    ``pack_info``: counts per ray, starts their exclusive running sum, in ``ray_indices``' dtype)."""
    if ray_indices.is_cuda:
        return _NERFACC["pack_info"](ray_indices, n_rays)
    if ray_indices.dim() != 1:
        raise SINRInputError(f"ray_indices must be 1-D (one ray index per sample), got shape "
                             f"{tuple(ray_indices.shape)}")
    if n_rays is None:
        n_rays = int(ray_indices.max()) + 1 if len(ray_indices) else 0
    counts = torch.bincount(ray_indices, minlength=n_rays).to(ray_indices.dtype)
    return torch.stack([torch.cumsum(counts, 0) - counts, counts], dim=-1)


def _chunk_positions(packed_info: Tensor) -> tuple[Tensor, Tensor]:
    """For every element in a chunk: its position in the flat tensor and its chunk's start."""
    starts, counts = packed_info.long().unbind(-1)
    chunk_start = torch.repeat_interleave(starts, counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return chunk_start + torch.arange(len(chunk_start), device=packed_info.device) - first, chunk_start


def _check_packed(inputs: Tensor, packed_info: Tensor) -> None:
    if inputs.dim() != 1 or packed_info.dim() != 2 or packed_info.shape[-1] != 2:
        raise SINRInputError(f"packed scans take flat inputs and (n_rays, 2) packed_info, got {tuple(inputs.shape)} "
                             f"and {tuple(packed_info.shape)}")


def exclusive_sum(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """Per chunk, the sum of the elements before each one (``nerfacc/scan.py``, ``exclusive_sum``).

    One running sum over the whole flat tensor in float64, less its value at the chunk's start:
    differentiable as it stands, and at least as precise as the kernel's per-ray float32 sum. Elements in
    no chunk are 0, as the kernel leaves them.
    """
    if packed_info is None or inputs.is_cuda:
        return _NERFACC["exclusive_sum"](inputs, packed_info)
    _check_packed(inputs, packed_info)
    wide = inputs.to(torch.float64)
    before = torch.cumsum(wide, 0) - wide
    position, chunk_start = _chunk_positions(packed_info)
    out = torch.zeros_like(wide).index_put((position,), before[position] - before[chunk_start])
    return out.to(inputs.dtype)


def exclusive_prod(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """Per chunk, the product of the elements before each one (``nerfacc/scan.py``,
    ``exclusive_prod``): the chunks padded with ones into rows, a running product along them.
    Elements in no chunk are 0, as the kernel leaves them."""
    if packed_info is None or inputs.is_cuda:
        return _NERFACC["exclusive_prod"](inputs, packed_info)
    _check_packed(inputs, packed_info)
    counts = packed_info[:, 1].long()
    position, chunk_start = _chunk_positions(packed_info)
    row = torch.repeat_interleave(torch.arange(len(counts), device=inputs.device), counts)
    column = position - chunk_start
    width = int(counts.max()) + 1 if len(counts) else 1
    rows = torch.ones(len(counts), width, dtype=inputs.dtype, device=inputs.device)
    rows = rows.index_put((row, column + 1), inputs[position])  # shifted by one: exclusive
    products = torch.cumprod(rows, dim=1)
    return torch.zeros_like(inputs).index_put((position,), products[row, column])


def traverse_grids(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor,
                   near_planes: Tensor | None = None, far_planes: Tensor | None = None,
                   step_size: float | None = 1e-3, cone_angle: float | None = 0.0):
    """``nerfacc.grid.traverse_grids`` for CPU tensors: nerfacc's ``RayIntervals`` and
    ``RaySamples`` of ``march_grid``'s samples.

    The intervals hold each sample's two edges (left, right) one after the other; the kernel
    shares an edge between touching samples, but ``OccGridEstimator.sampling`` reads only
    ``vals[is_left]`` and ``vals[is_right]``, the same starts and ends either way.
    """
    from nerfacc.data_specs import RayIntervals, RaySamples

    if rays_o.is_cuda:
        return _NERFACC["traverse_grids"](rays_o, rays_d, binaries, aabbs, near_planes, far_planes, step_size,
                                          cone_angle)
    if near_planes is None:
        near_planes = torch.zeros_like(rays_o[:, 0])
    if far_planes is None:
        far_planes = torch.full_like(rays_o[:, 0], float("inf"))
    ray_indices, t_starts, t_ends, t_mids = march_grid(rays_o, rays_d, binaries, aabbs, near_planes, far_planes,
                                                       float(step_size), float(cone_angle or 0.0))
    packed = pack_info(ray_indices, rays_o.shape[0])
    edges = torch.stack([t_starts, t_ends], dim=-1).reshape(-1)
    is_left = torch.zeros_like(edges, dtype=torch.bool)
    is_left[0::2] = True
    intervals = RayIntervals(vals=edges, packed_info=packed * 2, ray_indices=ray_indices.repeat_interleave(2),
                             is_left=is_left, is_right=~is_left)
    return intervals, RaySamples(vals=t_mids, packed_info=packed, ray_indices=ray_indices)


# nerfacc's own functions (for CUDA tensors), and the module attributes NGP's code looks them up in
_NERFACC: dict = {}
_PLACES = {
    "traverse_grids": ("nerfacc.estimators.occ_grid",),  # OccGridEstimator.sampling
    "pack_info": ("nerfacc", "nerfacc.volrend"),  # NGPModel.get_outputs; render_transmittance_*
    "exclusive_sum": ("nerfacc.volrend",),  # render_transmittance_from_density
    "exclusive_prod": ("nerfacc.volrend",),  # render_transmittance_from_alpha
}


def _remember_nerfacc() -> None:
    if not _NERFACC:
        import nerfacc.grid
        import nerfacc.pack
        import nerfacc.scan

        _NERFACC.update(traverse_grids=nerfacc.grid.traverse_grids, pack_info=nerfacc.pack.pack_info,
                        exclusive_sum=nerfacc.scan.exclusive_sum, exclusive_prod=nerfacc.scan.exclusive_prod)


@contextlib.contextmanager
def nerfacc_on_cpu() -> Iterator[None]:
    """While active, nerfacc's marching and packed scans run on CPU tensors (and CUDA tensors still
    go to nerfacc's kernels): nerfstudio's instant-ngp trains, renders and evaluates on a CPU.
    Nests; every attribute is put back on exit."""
    import importlib

    _remember_nerfacc()
    ours = {"traverse_grids": traverse_grids, "pack_info": pack_info, "exclusive_sum": exclusive_sum,
            "exclusive_prod": exclusive_prod}
    saved = []
    try:
        for name, modules in _PLACES.items():
            for module_name in modules:
                module = importlib.import_module(module_name)
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, ours[name])
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)
