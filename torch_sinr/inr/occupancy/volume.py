"""Inside/outside of every voxel centre of an N^3 grid, by ray parity along grid columns.

For rays along z, each grid column (x_i, y_j) is a vertical line. A triangle crosses it when
(x_i, y_j) lies inside the triangle's projection on the xy plane, at the z its plane takes
there. A voxel centre is inside a closed surface when an odd number of crossings lie below it.
So per triangle we list the columns inside its projected bounding box, keep those inside the
projected triangle, record (column, z), and afterwards the parity of crossings below each voxel
is an exclusive-or scan along z. Everything is numpy, in chunks of (triangle, column) pairs, so
memory is the volume (one byte per voxel) plus a bounded working set.

Rays that hit an edge or a vertex exactly are the classic failure of parity tests: counted by
both neighbouring triangles or by neither, they flip whole columns. Synthetic meshes (a box
with vertices at +-0.5) put such hits on every grid line. Here each edge's side test is

* computed from the edge's two endpoints in one canonical order (lexicographic in (x, y)), so
  the two triangles sharing an edge get bit-identical numbers for it and can never disagree;
* resolved, when it is exactly zero, as if the column were moved by (eps, eps^2) with eps -> 0
  ("simulation of simplicity"): the sign then follows from the edge direction alone. All
  triangles see the same moved column, so a column through an edge or a vertex is counted
  exactly as a column through the triangles' interiors next to it.

A triangle counts a column when all three of its side tests have the same sign, whatever its
winding, so a two-sided triangle (the same three vertices in both windings, as in the Stanford
Dragon file) adds two crossings at the same z, which leaves every parity unchanged.

A mesh with holes has no well-defined inside; ``axes=3`` then takes the majority vote of rays
along x, y and z, which repairs a small hole that only some of the directions pass through.
"""

from __future__ import annotations

import numpy as np

from ...errors import SINRInputError
from .mesh import check_mesh

MIN_RESOLUTION = 2
MAX_RESOLUTION = 2048  # the volume is one byte per voxel while it is built: 8 GiB at this size
DEFAULT_CHUNK_PAIRS = 1 << 19  # (triangle, column) pairs per chunk: about 100 MB of temporaries


def grid_coordinates(resolution: int) -> np.ndarray:
    """The N voxel-centre coordinates along each axis: linspace(-1, 1, N), as WIRE's volumes."""
    check_resolution(resolution)
    return np.linspace(-1.0, 1.0, resolution)


def check_resolution(resolution) -> None:
    if not isinstance(resolution, (int, np.integer)) or isinstance(resolution, bool) \
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise SINRInputError(f"resolution must be an int in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution!r}")


def occupancy_volume(vertices: np.ndarray, faces: np.ndarray, resolution: int, *, axes: int = 1,
                     chunk_pairs: int = DEFAULT_CHUNK_PAIRS) -> np.ndarray:
    """Bool (N, N, N) array, indexed [ix, iy, iz]: whether each grid point lies inside the mesh.

    ``vertices`` are in grid coordinates (see ``mesh.normalize_vertices``); the grid is
    ``grid_coordinates(resolution)`` on each axis. ``axes=1`` casts rays along z only (exact for
    a closed mesh); ``axes=3`` takes the majority of the x, y and z rays (for meshes with holes).
    """
    check_resolution(resolution)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    check_mesh(vertices, faces)
    if axes not in (1, 3):
        raise SINRInputError(f"axes must be 1 (rays along z) or 3 (majority of x, y, z rays), got {axes!r}")
    if not (isinstance(chunk_pairs, int) and chunk_pairs >= 1):
        raise SINRInputError(f"chunk_pairs must be a positive int, got {chunk_pairs!r}")
    if axes == 1:
        return _parity_along_last_axis(vertices, faces, resolution, chunk_pairs).view(bool)
    votes = np.zeros((resolution,) * 3, dtype=np.uint8)
    for depth_axis in range(3):
        # Rotate the coordinates so the ray axis comes last, then rotate the answer back.
        order = [a for a in range(3) if a != depth_axis] + [depth_axis]
        parity = _parity_along_last_axis(vertices[:, order], faces, resolution, chunk_pairs)
        votes += np.moveaxis(parity, (0, 1, 2), order)
        del parity
    return votes >= 2


def _parity_along_last_axis(vertices: np.ndarray, faces: np.ndarray, resolution: int, chunk_pairs: int) -> np.ndarray:
    """uint8 (N, N, N) of 0/1: odd number of surface crossings below each point along axis 2."""
    grid = grid_coordinates(resolution)
    triangles = vertices[faces]  # (F, 3 corners, 3 coordinates)
    x, y = triangles[..., 0], triangles[..., 1]
    # Columns inside each triangle's projected bounding box: [first, last] grid index per axis,
    # both ends inclusive (a column on the box's edge can still be inside after the tie-break).
    x_first = np.searchsorted(grid, x.min(axis=1), side="left")
    x_count = np.searchsorted(grid, x.max(axis=1), side="right") - x_first
    y_first = np.searchsorted(grid, y.min(axis=1), side="left")
    y_count = np.searchsorted(grid, y.max(axis=1), side="right") - y_first
    pairs = x_count * y_count
    keep = np.flatnonzero(pairs > 0)  # triangles between two grid lines cross no column
    triangles, x_first, y_first, y_count, pairs = (a[keep] for a in (triangles, x_first, y_first, y_count, pairs))

    # Crossings per voxel, mod 2: a crossing at z is below every grid point with z_k > z, so it
    # toggles the first such point; the exclusive-or scan along z then spreads it upwards.
    toggles = np.zeros((resolution,) * 3, dtype=np.uint8)
    flat_toggles = toggles.reshape(-1)
    ends = np.cumsum(pairs)
    start = 0
    while start < len(triangles):
        # as many triangles as fit in chunk_pairs pairs, and at least one (at most N^2 pairs)
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + chunk_pairs, side="right")))
        sl = slice(start, stop)
        column, z = _crossings(triangles[sl], x_first[sl], y_first[sl], y_count[sl], pairs[sl], grid)
        first_above = np.searchsorted(grid, z, side="right")
        below_top = first_above < resolution
        index = column[below_top] * resolution + first_above[below_top]
        index, count = np.unique(index, return_counts=True)
        flat_toggles[index] ^= (count & 1).astype(np.uint8)
        start = stop
    np.bitwise_xor.accumulate(toggles, axis=2, out=toggles)
    return toggles


def _crossings(triangles, x_first, y_first, y_count, pairs, grid):
    """(flat column index ix * N + iy, z) of every column the triangles cross."""
    n = len(grid)
    total = int(pairs.sum())
    owner = np.repeat(np.arange(len(triangles)), pairs)
    local = np.arange(total) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    ix = x_first[owner] + local // y_count[owner]
    iy = y_first[owner] + local % y_count[owner]
    px, py = grid[ix], grid[iy]
    corners = triangles[owner]  # (P, 3, 3)
    # Side of the column relative to each edge a -> b, for edges (0, 1), (1, 2), (2, 0); the
    # barycentric weight of the opposite corner is that same number.
    sides, signs = [], []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        side, sign = _edge_side(corners[:, a, 0], corners[:, a, 1], corners[:, b, 0], corners[:, b, 1], px, py)
        sides.append(side)
        signs.append(sign)
    inside = (signs[0] == signs[1]) & (signs[1] == signs[2]) & (signs[0] != 0)
    w_c, w_a, w_b = (s[inside] for s in sides)  # edge (0,1) weighs corner 2, and so on
    za, zb, zc = (corners[inside, k, 2] for k in range(3))
    total_weight = w_a + w_b + w_c
    # All weights share one sign, so z is a convex combination of the corners' z; a sliver
    # whose weights underflow to zero takes the corners' mean instead of 0/0.
    safe = np.where(total_weight == 0, 1.0, total_weight)
    z = np.where(total_weight == 0, (za + zb + zc) / 3, (w_a * za + w_b * zb + w_c * zc) / safe)
    return ix[inside] * n + iy[inside], z


def _edge_side(ax, ay, bx, by, px, py):
    """(cross((b - a), (p - a)), its sign with exact zeros tie-broken), for the edge a -> b.

    Both come from the endpoints in canonical (lexicographic) order and are negated for the
    other direction, so the two triangles that share an edge see exactly opposite values.
    """
    swap = (ax > bx) | ((ax == bx) & (ay > by))
    ux, uy = np.where(swap, bx, ax), np.where(swap, by, ay)
    vx, vy = np.where(swap, ax, bx), np.where(swap, ay, by)
    side = (vx - ux) * (py - uy) - (vy - uy) * (px - ux)
    # Moving p by (eps, eps^2) changes side by -(vy - uy) eps + (vx - ux) eps^2: on the edge's
    # line the sign is that of -(vy - uy), or of (vx - ux) for a horizontal edge. An edge with
    # both ends on one column (vertical in 3-D) stays 0: it bounds no area in the projection.
    tie = np.where(vy != uy, -np.sign(vy - uy), np.sign(vx - ux))
    sign = np.where(side != 0, np.sign(side), tie)
    flip = np.where(swap, -1.0, 1.0)
    return side * flip, sign * flip
