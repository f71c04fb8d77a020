"""Reading a mesh file and placing it in the occupancy grid's cube [-1, 1]^3."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import SINRInputError

# The share of the cube's half-width left empty around the shape's longest side: voxels on the
# cube's faces stay outside, so a surface extracted from the grid closes on itself.
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Normalization:
    """``grid = (mesh - center) * scale``: where the mesh's own coordinates land in [-1, 1]^3."""

    center: tuple[float, float, float]
    scale: float

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def to_mesh(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def to_dict(self) -> dict:
        return {"center": list(self.center), "scale": self.scale}


def load_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 (V, 3), faces int64 (F, 3)) of the triangle mesh in ``path``.

    The file is read as is (``process=False``): merging vertices or dropping faces would change
    the surface the volume is computed from, and the parity test does not need it.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise SINRInputError(f"mesh file not found: {str(path)!r}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds of errors for unreadable files
        raise SINRInputError(f"cannot read {str(path)!r} as a mesh: {exc}") from exc
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    check_mesh(vertices, faces, where=str(path))
    return vertices, faces


def check_mesh(vertices: np.ndarray, faces: np.ndarray, where: str = "mesh") -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise SINRInputError(f"{where}: need vertices (V, 3) and triangle faces (F, 3), got "
                             f"{tuple(vertices.shape)} and {tuple(faces.shape)}")
    if len(faces) == 0:
        raise SINRInputError(f"{where}: the mesh has no faces")
    if not np.isfinite(vertices).all():
        raise SINRInputError(f"{where}: vertices contain NaN or Inf")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise SINRInputError(f"{where}: face indices must lie in [0, {len(vertices)}), got "
                             f"[{faces.min()}, {faces.max()}]")


def normalize_vertices(vertices: np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, Normalization]:
    """Centre the bounding box on the origin and scale its longest side to 2 (1 - margin).

    One scale for all three axes, so the shape keeps its proportions.
    """
    if not 0 <= margin < 1:
        raise SINRInputError(f"margin must be in [0, 1), got {margin!r}")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    half_extent = float((hi - lo).max()) / 2
    if not half_extent > 0:
        raise SINRInputError("the mesh has zero extent: all its vertices coincide")
    normalization = Normalization(tuple(float(c) for c in (lo + hi) / 2), (1 - margin) / half_extent)
    return normalization.to_grid(vertices), normalization
