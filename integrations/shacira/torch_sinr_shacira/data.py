"""Images as memory-mapped arrays: random pixel batches and tiles, without holding the image.

An image is an (H, W, 3) uint8 ``.npy`` file opened with ``mmap_mode="r"``: the operating system
pages in what a batch or a tile touches, so a process never holds more of the image than its
working set (the page cache holds the rest and gives it back under memory pressure). A PNG or
JPEG is converted once into such a file in a cache folder (Pillow decodes it whole, so this is
for images that fit in memory; a larger one is given as ``.npy``, e.g. by ``tile_image``).

Coordinates: pixel (row, col) sits at (x, y) = (col / (W - 1), row / (H - 1)) in [0, 1]^2, so the
hash grid's corner vertices land on the image's corner pixels.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from torch_sinr.errors import SINRInputError


def default_cache() -> Path:
    """Where converted images go unless a cache folder is given (the image's own folder may be read-only)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "torch_sinr" / "images"


class PixelSource:
    """An (H, W, 3) uint8 image (a numpy memmap or array): batches, tiles and their coordinates."""

    def __init__(self, pixels: np.ndarray, name: str = "image") -> None:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise SINRInputError(f"{name}: expected an (H, W, 3) uint8 image, got {pixels.dtype} {pixels.shape}")
        if min(pixels.shape[:2]) < 2:
            raise SINRInputError(f"{name}: an image needs at least 2 x 2 pixels, got {pixels.shape[:2]}")
        self.pixels, self.name = pixels, name
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])

    @property
    def n_pixels(self) -> int:
        return self.height * self.width

    @classmethod
    def open(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "PixelSource":
        """An ``.npy`` (memory-mapped as it is) or an image file (converted once into ``cache_dir``,
        by default ``~/.cache/torch_sinr/images``, named by the file's SHA-256)."""
        path = Path(path)
        if not path.is_file():
            raise SINRInputError(f"image not found: {path}")
        if path.suffix == ".npy":
            return cls(np.load(path, mmap_mode="r", allow_pickle=False), path.name)
        cache = Path(cache_dir) if cache_dir is not None else default_cache()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        target = cache / f"{path.stem}-{digest}.npy"
        if not target.exists():
            from PIL import Image

            cache.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
            partial = target.with_suffix(".partial.npy")
            np.save(partial, array, allow_pickle=False)
            partial.replace(target)  # atomic: a crashed conversion never leaves a torn cache file
        return cls(np.load(target, mmap_mode="r", allow_pickle=False), path.name)

    def coordinates(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(n, 2) float32 (x, y) in [0, 1] of pixels (rows, cols)."""
        x = cols.to(torch.float32) / (self.width - 1)
        y = rows.to(torch.float32) / (self.height - 1)
        return torch.stack([x, y], dim=1)

    def sample(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` pixels drawn uniformly with replacement (SHACIRA's sampling): coordinates
        (count, 2) and colours (count, 3) in [0, 1]."""
        flat = torch.randint(self.n_pixels, (count,), generator=generator)
        rows, cols = flat // self.width, flat % self.width
        # Sorted reads touch each page once and in order (much faster on a memmap); the pairing
        # of coordinates and colours is what matters, not their order.
        order = torch.argsort(flat)
        rows, cols = rows[order], cols[order]
        colours = self.pixels[rows.numpy(), cols.numpy()]
        return self.coordinates(rows, cols), torch.from_numpy(np.ascontiguousarray(colours)).float() / 255.0

    def tiles(self, tile: int) -> Iterator[tuple[int, int, int, int]]:
        """(row0, row1, col0, col1) of every tile of at most ``tile`` x ``tile`` pixels, row-major."""
        if not (isinstance(tile, int) and tile >= 1):
            raise SINRInputError(f"tile must be a positive int, got {tile!r}")
        for r0 in range(0, self.height, tile):
            for c0 in range(0, self.width, tile):
                yield r0, min(r0 + tile, self.height), c0, min(c0 + tile, self.width)

    def tile_coordinates(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        rows = torch.arange(r0, r1).repeat_interleave(c1 - c0)
        cols = torch.arange(c0, c1).repeat(r1 - r0)
        return self.coordinates(rows, cols)

    def tile_pixels(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.ascontiguousarray(self.pixels[r0:r1, c0:c1])


def tile_image(source: PixelSource, path: str | os.PathLike, height: int, width: int, band: int = 1024) -> PixelSource:
    """Write an (height, width, 3) ``.npy`` made of ``source`` mirrored and repeated (a seamless
    stand-in for a gigapixel scan), band of rows by band of rows: memory stays at one band."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(height, width, 3))
    h, w = source.height, source.width
    # a period of 2h x 2w: the image, then mirrored, so neighbouring copies meet without seams
    row_index = np.arange(height) % (2 * h)
    row_index = np.where(row_index < h, row_index, 2 * h - 1 - row_index)
    col_index = np.arange(width) % (2 * w)
    col_index = np.where(col_index < w, col_index, 2 * w - 1 - col_index)
    for r0 in range(0, height, band):
        r1 = min(r0 + band, height)
        rows = row_index[r0:r1]
        out[r0:r1] = np.asarray(source.pixels[rows.min():rows.max() + 1])[rows - rows.min()][:, col_index]
    out.flush()
    del out
    partial.replace(path)
    return PixelSource(np.load(path, mmap_mode="r", allow_pickle=False), path.name)
