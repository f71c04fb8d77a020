import numpy as np
import torch
from PIL import Image

from torch_sinr.inr.images import save_image_row


def test_captions_wrap_inside_their_tile(tmp_path):
    # 60-pixel tiles and captions several times that wide: unwrapped, each ran into its neighbour
    images = [torch.full((3, 30, 30), 0.5) for _ in range(3)]
    labels = ["original", "SINR 34.55 dB, 4.61 bpp", "uniform 9-bit 34.60 dB, 5.21 bpp"]
    save_image_row(images, labels, tmp_path / "row.png", scale=2)
    canvas = np.asarray(Image.open(tmp_path / "row.png").convert("L"))
    tile, gap = 60, 6
    assert canvas.shape[1] == 3 * tile + 2 * gap
    caption = canvas[tile:]
    assert caption.shape[0] > 2 * 16  # the long captions took more than one line
    for left in (tile, 2 * tile + gap):  # the gaps between tiles stay white under every caption
        assert (caption[:, left:left + gap] == 255).all()
    for start in (0, tile + gap, 2 * (tile + gap)):  # and every tile has its caption drawn
        assert (caption[:, start:start + tile] < 128).any()
