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
    """Save images (3, H, W) side by side with a caption under each, as one PNG.

    Captions wrap at their tile's width (a tile of a 153-pixel image is narrower than one line of
    "SINR 34.55 dB, 4.61 bpp"), so neighbours never run into each other."""
    from PIL import ImageDraw

    tiles = []
    for img in images:
        array = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        tile = Image.fromarray(array)
        tiles.append(tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST))
    gap, line_height, margin = 6, 16, 4
    font = _caption_font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(label, tile.width - 2 * margin, measure, font) for tile, label in zip(tiles, labels)]
    caption = 2 * margin + line_height * max(len(lines) for lines in wrapped)
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, tiles[0].height + caption), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, lines in zip(tiles, wrapped):
        canvas.paste(tile, (x, 0))
        for row, line in enumerate(lines):
            draw.text((x + margin, tile.height + margin + row * line_height), line, fill="black", font=font)
        x += tile.width + gap
    canvas.save(path)


def _caption_font():
    """Pillow's scalable default font where FreeType is built in: the bitmap fallback draws a
    space one pixel wide, which made "SINR 34.55 dB" read "SINR34.55 dB"."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def _wrap(text: str, width: float, draw, font) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels (a longer word gets its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
