"""Meshes whose inside is known in closed form, for the occupancy tests."""

from __future__ import annotations

import numpy as np


def grid_points(resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from torch_sinr.inr.occupancy.volume import grid_coordinates

    axis = grid_coordinates(resolution)
    return np.meshgrid(axis, axis, axis, indexing="ij")


def sphere(radius: float = 0.7, subdivisions: int = 4):
    """An icosphere (vertices on the sphere, so its inside is a little smaller than the ball)."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def inside_ball(resolution: int, radius: float) -> np.ndarray:
    x, y, z = grid_points(resolution)
    return x * x + y * y + z * z < radius * radius
