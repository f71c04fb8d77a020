"""Occupancy fields of meshes: voxelise a mesh, fit an INR to it, score and draw the result.

The modules, one concern each:

- ``mesh``: read a mesh file (``trimesh``) and place it in [-1, 1]^3;
- ``volume``: inside/outside of every voxel centre by ray parity (numpy only);
- ``store``: occupancy volumes cached as compressed ``.npz``, keyed by the mesh's SHA-256;
- ``fit``: fitting an occupancy INR (Gauss, SIREN or WIRE) with a cache of fits;
- ``metrics``: IoU of a model or a volume against the ground truth, in chunks;
- ``surface``: marching-cubes surfaces written as ``.ply``;
- ``render``: shaded depth renderings, original vs decoded side by side, as PNG.

Nothing here is imported by ``import torch_sinr``; trimesh, scikit-image and matplotlib are
imported inside the functions that need them.
"""

from .fit import (CPU_PROTOCOL, CPU_PROTOCOL_RESOLUTION, OccupancyFitConfig, cpu_protocol, fit_occupancy,
                  fit_occupancy_cached, sampled_loss)
from .mesh import Normalization, load_mesh, normalize_vertices
from .metrics import iou, model_iou, predict_volume
from .store import OccupancyVolume, mesh_volume
from .volume import grid_coordinates, occupancy_volume

__all__ = [
    "CPU_PROTOCOL",
    "CPU_PROTOCOL_RESOLUTION",
    "Normalization",
    "OccupancyFitConfig",
    "OccupancyVolume",
    "cpu_protocol",
    "fit_occupancy",
    "fit_occupancy_cached",
    "grid_coordinates",
    "iou",
    "load_mesh",
    "mesh_volume",
    "model_iou",
    "normalize_vertices",
    "occupancy_volume",
    "predict_volume",
    "sampled_loss",
]
