"""Surfaces of occupancy fields: marching cubes at 0.5, written as ``.ply``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SINRInputError
from .metrics import THRESHOLD


def marching_cubes_mesh(field: np.ndarray, level: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) in grid coordinates [-1, 1]^3, faces (F, 3)) of the ``level`` isosurface.

    ``field`` is (N, N, N) on ``grid_coordinates(N)``: a bool ground truth or a model's values.
    The field is padded with one layer of empty voxels, so a shape that touches the cube's faces
    is still closed (watertight) instead of open where the grid ends; that closing face lies
    half a voxel outside [-1, 1], between the last grid point and the padding.
    """
    from skimage.measure import marching_cubes

    field = np.asarray(field)
    if field.ndim != 3 or len(set(field.shape)) != 1:
        raise SINRInputError(f"field must be an (N, N, N) volume, got shape {field.shape}")
    padded = np.pad(field.astype(np.float32), 1, constant_values=0.0)
    if not padded.max() > level:
        raise SINRInputError(f"the field never exceeds {level}: there is no surface to extract")
    spacing = 2.0 / (field.shape[0] - 1)
    vertices, faces, _, _ = marching_cubes(padded, level=level, spacing=(spacing,) * 3)
    # padded index 1 is grid index 0, which sits at -1
    return vertices - 1.0 - spacing, faces.astype(np.int64)


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> int:
    """Write a binary ``.ply``; returns its size in bytes."""
    import trimesh

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(str(path), file_type="ply")
    return path.stat().st_size


def field_to_ply(path: str | Path, field: np.ndarray, level: float = THRESHOLD) -> int:
    """Marching cubes of ``field`` written to ``path``; returns the file's bytes."""
    return write_ply(path, *marching_cubes_mesh(field, level))
