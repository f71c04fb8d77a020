"""Memory-mapped images: batches pair each coordinate with its pixel, tiles cover the image once,
the gigapixel stand-in is the image mirrored."""

import numpy as np
import pytest
import torch

from torch_sinr.errors import SINRInputError
from torch_sinr_shacira.data import PixelSource, tile_image


def _source(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    return PixelSource(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_samples_pair_coordinates_with_their_pixels():
    source = _source()
    coords, colours = source.sample(500, torch.Generator().manual_seed(1))
    rows = (coords[:, 1] * (source.height - 1)).round().long()
    cols = (coords[:, 0] * (source.width - 1)).round().long()
    expected = torch.from_numpy(source.pixels[rows.numpy(), cols.numpy()]).float() / 255
    assert torch.equal(colours, expected)
    assert coords.min() >= 0 and coords.max() <= 1


def test_tiles_cover_every_pixel_once():
    source = _source()
    seen = np.zeros((source.height, source.width), dtype=int)
    for r0, r1, c0, c1 in source.tiles(16):
        seen[r0:r1, c0:c1] += 1
        coords = source.tile_coordinates(r0, r1, c0, c1)
        assert coords.shape == ((r1 - r0) * (c1 - c0), 2)
    assert (seen == 1).all()


def test_open_converts_once_and_memory_maps(tmp_path, kodak_crop):
    from PIL import Image

    path = tmp_path / "crop.png"
    Image.fromarray(kodak_crop).save(path)
    source = PixelSource.open(path, cache_dir=tmp_path / "cache")
    assert isinstance(source.pixels, np.memmap) and np.array_equal(np.asarray(source.pixels), kodak_crop)
    assert len(list((tmp_path / "cache").glob("crop-*.npy"))) == 1
    again = PixelSource.open(path, cache_dir=tmp_path / "cache")
    assert np.array_equal(np.asarray(again.pixels), kodak_crop)
    with pytest.raises(SINRInputError, match="not found"):
        PixelSource.open(tmp_path / "missing.png")
    with pytest.raises(SINRInputError, match="uint8"):
        PixelSource(np.zeros((4, 4, 3), dtype=np.float32))


def test_tiled_stand_in_is_the_image_mirrored(tmp_path):
    source = _source(11, 7)
    big = tile_image(source, tmp_path / "big.npy", 50, 40, band=8)
    pixels = np.asarray(big.pixels)
    assert pixels.shape == (50, 40, 3) and isinstance(big.pixels, np.memmap)
    original = np.asarray(source.pixels)
    assert np.array_equal(pixels[:11, :7], original)
    assert np.array_equal(pixels[11:22, :7], original[::-1])  # mirrored below
    assert np.array_equal(pixels[:11, 7:14], original[:, ::-1])  # mirrored to the right
    assert np.array_equal(pixels[22:33, 14:21], original)  # the period is twice the image
