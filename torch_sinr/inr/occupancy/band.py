"""The surface band of an occupancy volume: voxels within a few steps of a label change.

Where an occupancy field is hard to get right, so where fitting samples more densely
(``fit.VoxelSampler``) and where the IoU estimate looks closely (``metrics.BandIoU``).
"""

from __future__ import annotations

import numpy as np


def _neighbour_pairs(axis: int) -> tuple[tuple, tuple]:
    """Index tuples (ahead, behind) pairing every voxel with its neighbour one step along ``axis``."""
    ahead, behind = [slice(None)] * 3, [slice(None)] * 3
    ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
    return tuple(ahead), tuple(behind)


def surface_band(occupancy: np.ndarray, width: int) -> np.ndarray:
    """Bool volume: voxels within ``width`` (>= 1) 6-neighbour steps of a voxel with the other label."""
    occupancy = np.asarray(occupancy, dtype=bool)
    band = np.zeros_like(occupancy)
    for axis in range(3):
        ahead, behind = _neighbour_pairs(axis)
        differs = occupancy[ahead] != occupancy[behind]  # both voxels of a differing pair are on the boundary
        band[ahead] |= differs
        band[behind] |= differs
    for _ in range(width - 1):
        grown = band.copy()
        for axis in range(3):
            ahead, behind = _neighbour_pairs(axis)
            grown[ahead] |= band[behind]
            grown[behind] |= band[ahead]
        band = grown
    return band
