"""Occupancy volumes of mesh files, cached as compressed ``.npz``.

A volume is named by the SHA-256 of the mesh file's bytes and every setting that changes it
(resolution, margin, ray axes, algorithm version), so editing a mesh or a setting can never
serve a stale volume. Files hold only plain arrays (bits packed 8 per byte, the settings as a
JSON string) and are read with ``allow_pickle=False``: a cache file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import SINRFormatError, SINRInputError
from .mesh import DEFAULT_MARGIN, Normalization, load_mesh, normalize_vertices
from .volume import check_resolution, occupancy_volume

# Bump when occupancy_volume or the normalisation changes what a volume holds.
VOLUME_VERSION = 1


def default_cache_dir() -> Path:
    """$TORCH_SINR_CACHE/occupancy, else $XDG_CACHE_HOME/torch_sinr/occupancy, else ~/.cache/..."""
    if os.environ.get("TORCH_SINR_CACHE"):
        return Path(os.environ["TORCH_SINR_CACHE"]) / "occupancy"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "torch_sinr" / "occupancy"


@dataclass
class OccupancyVolume:
    """The ground truth of one mesh at one resolution."""

    occupancy: np.ndarray  # bool (N, N, N), indexed [ix, iy, iz], grid linspace(-1, 1, N)
    normalization: Normalization  # mesh coordinates -> grid coordinates
    key: dict  # what determines the volume (mesh name and SHA-256, settings)
    seconds: float  # time to compute it (not to load it from the cache)

    @property
    def resolution(self) -> int:
        return self.occupancy.shape[0]

    @property
    def fraction_inside(self) -> float:
        return float(self.occupancy.mean())


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def volume_key(mesh_path: str | Path, resolution: int, margin: float = DEFAULT_MARGIN, axes: int = 1) -> dict:
    return {"mesh": Path(mesh_path).name, "mesh_sha256": file_sha256(mesh_path), "resolution": int(resolution),
            "margin": float(margin), "axes": int(axes), "version": VOLUME_VERSION}


def cache_path(cache_dir: str | Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(key['mesh']).stem}-{key['resolution']}-{digest}.npz"


def mesh_volume(mesh_path: str | Path, resolution: int, *, cache_dir: str | Path | None = None,
                margin: float = DEFAULT_MARGIN, axes: int = 1, use_cache: bool = True) -> OccupancyVolume:
    """The occupancy volume of ``mesh_path`` at ``resolution``^3, from the cache when present.

    ``cache_dir`` defaults to :func:`default_cache_dir`; ``use_cache=False`` neither reads nor
    writes it.
    """
    check_resolution(resolution)
    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise SINRInputError(f"mesh file not found: {str(mesh_path)!r}")
    key = volume_key(mesh_path, resolution, margin, axes)
    path = cache_path(cache_dir if cache_dir is not None else default_cache_dir(), key)
    if use_cache and path.is_file():
        cached = read_volume(path)
        if cached.key == key:
            return cached
    vertices, faces = load_mesh(mesh_path)
    started = time.perf_counter()
    normalized, normalization = normalize_vertices(vertices, margin)
    occupancy = occupancy_volume(normalized, faces, resolution, axes=axes)
    volume = OccupancyVolume(occupancy, normalization, key, time.perf_counter() - started)
    if use_cache:
        write_volume(path, volume)
    return volume


def write_volume(path: str | Path, volume: OccupancyVolume) -> None:
    """Write atomically (a temporary file renamed), so an interrupted run leaves no torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"key": volume.key, "normalization": volume.normalization.to_dict(), "seconds": volume.seconds,
            "shape": list(volume.occupancy.shape)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, bits=np.packbits(volume.occupancy.reshape(-1)), meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def read_volume(path: str | Path) -> OccupancyVolume:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            bits = data["bits"]
        shape = tuple(int(n) for n in meta["shape"])
        count = int(np.prod(shape))
        if len(shape) != 3 or bits.dtype != np.uint8 or bits.size != (count + 7) // 8:
            raise ValueError(f"{bits.size} packed bytes do not hold a volume of shape {shape}")
        occupancy = np.unpackbits(bits, count=count).view(bool).reshape(shape)
        normalization = Normalization(tuple(meta["normalization"]["center"]), float(meta["normalization"]["scale"]))
        return OccupancyVolume(occupancy, normalization, meta["key"], float(meta["seconds"]))
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise SINRFormatError(f"{str(path)!r} is not an occupancy volume file: {exc}") from exc
