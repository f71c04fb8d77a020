"""A procedurally generated Blender-format scene: a shaded sphere seen from a ring of cameras.

Same layout as the NeRF-synthetic scenes (transforms_{train,val,test}.json, RGBA PNGs under
train/, val/, test/), rendered analytically (ray-sphere intersection) so it needs no data files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

CAMERA_ANGLE_X = 0.6911112070083618  # as lego's


def look_at(eye: np.ndarray) -> np.ndarray:
    """Camera-to-world matrix (Blender/OpenGL: the camera looks down its -z, y up) aimed at the origin."""
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def render(c2w: np.ndarray, size: int, radius: float = 1.0) -> np.ndarray:
    """RGBA uint8 image of a sphere at the origin, coloured by its normal, transparent elsewhere."""
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    dirs = np.stack([(j - size / 2) / focal, -(i - size / 2) / focal, -np.ones_like(i)], -1)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = c2w[:3, 3]
    b = dirs @ origin
    disc = b**2 - (origin @ origin - radius**2)
    hit = disc > 0
    t = -b - np.sqrt(np.where(hit, disc, 0))
    normal = (origin + t[..., None] * dirs) / radius
    rgb = np.clip(0.5 + 0.5 * normal, 0, 1)
    rgba = np.concatenate([rgb, hit[..., None].astype(float)], -1)
    return (255 * rgba).round().astype(np.uint8)


def make_blender_scene(root: Path, size: int = 32, views: dict[str, int] | None = None) -> Path:
    views = views or {"train": 6, "val": 2, "test": 2}
    root.mkdir(parents=True, exist_ok=True)
    offset = 0.0
    for split, count in views.items():
        (root / split).mkdir(exist_ok=True)
        frames = []
        for k in range(count):
            azimuth = 2 * math.pi * k / count + offset
            elevation = math.radians(30 if k % 2 == 0 else 15)
            eye = 4.0 * np.array([math.cos(elevation) * math.cos(azimuth),
                                  math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
            c2w = look_at(eye)
            Image.fromarray(render(c2w, size), "RGBA").save(root / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "rotation": 0.0, "transform_matrix": c2w.tolist()})
        offset += 0.37  # splits see the sphere from different angles
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}, indent=1))
    return root
