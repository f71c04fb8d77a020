"""Pictures of occupancy fields: Lambert-shaded depth maps, side by side in one PNG.

Drawn straight from the voxel field, without a mesh rasteriser: for each (x, y) column, the
first occupied point seen from +z gives a depth (sub-voxel where the field is continuous), and
the depth map's slope gives the normal to shade. The Stanford scans stand with +y up, so the
default view looks at their front.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SINRInputError
from .metrics import THRESHOLD

LIGHT = np.array([-0.4, 0.5, 0.77])  # from the upper left, towards the viewer
AMBIENT = 0.15


def depth_map(field: np.ndarray, level: float = THRESHOLD) -> np.ndarray:
    """(N, N) [ix, iy]: z in [-1, 1] of the surface seen from +z; NaN where the column is empty."""
    field = np.asarray(field)
    if field.ndim != 3 or len(set(field.shape)) != 1:
        raise SINRInputError(f"field must be an (N, N, N) volume, got shape {field.shape}")
    n = field.shape[0]
    occupied = field > level
    hit = occupied.any(axis=2)
    top = n - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # highest occupied index per column
    depth = top.astype(np.float64)
    if field.dtype != bool:
        # The surface lies between the last occupied point and the empty one above it, where the
        # field crosses the level; interpolating there avoids staircase shading.
        above = np.minimum(top + 1, n - 1)
        inner = np.take_along_axis(field, top[..., None], axis=2)[..., 0].astype(np.float64)
        outer = np.take_along_axis(field, above[..., None], axis=2)[..., 0].astype(np.float64)
        step = np.clip((inner - level) / np.maximum(inner - outer, 1e-12), 0.0, 1.0)
        depth += np.where(above > top, step, 0.0)
    depth = depth * (2.0 / (n - 1)) - 1.0
    return np.where(hit, depth, np.nan)


def shade(depth: np.ndarray) -> np.ndarray:
    """Grey image (rows top to bottom = +y to -y, columns = x) of a depth map, white background."""
    n = depth.shape[0]
    filled = np.where(np.isnan(depth), np.nanmin(depth) if np.isfinite(depth).any() else 0.0, depth)
    spacing = 2.0 / (n - 1)
    dz_dx, dz_dy = np.gradient(filled, spacing)
    normals = np.stack([-dz_dx, -dz_dy, np.ones_like(filled)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    light = LIGHT / np.linalg.norm(LIGHT)
    intensity = AMBIENT + (1 - AMBIENT) * np.clip(normals @ light, 0.0, 1.0)
    image = np.where(np.isnan(depth), 1.0, intensity)
    return image.T[::-1]  # [ix, iy] -> rows of decreasing y, columns of increasing x


def render_comparison(path: str | Path, panels: list[tuple[str, np.ndarray]], title: str | None = None) -> Path:
    """One PNG with a shaded view of each (caption, field) panel, left to right."""
    if not panels:
        raise SINRInputError("render_comparison needs at least one (caption, field) panel")
    # A bare Figure (no pyplot) draws with Agg and leaves the caller's matplotlib backend alone.
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4 * len(panels), 4.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (caption, field) in zip(axes[0], panels):
        ax.imshow(shade(depth_map(field)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(caption, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
