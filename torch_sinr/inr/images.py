"""Reading images for fitting: any PNG/JPEG path, optionally downscaled by box averaging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import SINRInputError

ASSETS = Path(__file__).parent / "assets"
DEFAULT_IMAGE = ASSETS / "kodim23.png"  # Kodak PhotoCD image 23, 768x512


def load_image(path: str | Path = DEFAULT_IMAGE, downscale: int = 1) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; ``downscale`` > 1 averages ``downscale`` x ``downscale`` blocks."""
    path = Path(path)
    if not path.is_file():
        raise SINRInputError(f"image {path} does not exist")
    if not isinstance(downscale, int) or downscale < 1:
        raise SINRInputError(f"downscale must be a positive int, got {downscale!r}")
    # Pillow, not torchvision.io: torchvision deprecated its image decoders in 0.29.
    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise SINRInputError(f"cannot decode image {path}: {exc}") from None
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
    if downscale > 1:
        h, w = image.shape[1] // downscale * downscale, image.shape[2] // downscale * downscale
        image = F.avg_pool2d(image[None, :, :h, :w], downscale)[0]
    return image


def save_image_row(images: list[torch.Tensor], labels: list[str], path: str | Path, scale: int = 2) -> None:
    """Save images (3, H, W) side by side with a caption under each, as one PNG."""
    from PIL import ImageDraw

    tiles = []
    for img in images:
        array = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        tile = Image.fromarray(array)
        tiles.append(tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST))
    caption, gap = 18, 6
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, tiles[0].height + caption), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, label in zip(tiles, labels):
        canvas.paste(tile, (x, 0))
        draw.text((x + 4, tile.height + 3), label, fill="black")
        x += tile.width + gap
    canvas.save(path)
