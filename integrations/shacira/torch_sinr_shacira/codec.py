"""The trained image model as one file, and the file back as an image, tile by tile.

- ``prepare_for_coding``: round the latents to the integers they were trained against, mark
  them as integers level by level (format kind ``stepped`` with a step of 1 per level: each
  level range-coded under its own stored histogram, counted in the file) and freeze them.
- ``write_baseline``: the SHACIRA-style file: integer latents, decoders at float32 (as SHACIRA
  counts them), in the same container and entropy coder as everything else.
- ``compress_decoders``: SINR on the MLP (the latent decoder on the dense grid) through ``torch_sinr.compress``
  (fine-tuning the codes on fresh pixel batches with the latents fixed, each fine-tune's best
  iterate picked by PSNR on a fixed sample of pixels), to a PSNR-drop target.
- ``decode_image``: any such file into a fresh model, rendered tile by tile into an (H, W, 3)
  uint8 ``.npy`` memmap, with the PSNR accumulated over tiles against the source.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from torch_sinr import MaxDrop, SINRConfig, compress
from torch_sinr.format import load_compressed, read_compressed, save_compressed
from torch_sinr.core.quantization import StepQuantizer
from torch_sinr.nn.storage import set_storage

from .data import PixelSource
from .model import ImageModel

# SINR settings for the decoders: every linear is coded (the hash-grid features feeding the MLP
# are learned, not coordinates, so the input-layer rule that keeps an INR's first layer dense
# does not apply). Biases go on the pipeline's dense grid; every byte is counted either way.
DECODER_SINR = SINRConfig(dict_ratio=4, s_ratio=0.3, value_bits=8, dense_bits=12, keep_first_linear=False,
                          input_fan_in_max=0)
DECODER_VALUE_BITS = (12, 10, 8)  # autotune's menu for the decoders: the richest probe starts at 12 bits
DECODER_MODULES = "decoders"  # compress_decoders' default target: the latent decoder and the MLP


def latent_storage(model: ImageModel) -> StepQuantizer:
    """The latents' storage: integers (a step of 1) in one group per level, so each level has its
    own histogram. The levels' integers differ in spread (coarse levels wide, fine ones mostly
    0): on the large image's trained latents one histogram for all of them cost 13% more than
    one per level (``benchmarks/results/latent_contexts.md``)."""
    sizes = model.grid.config.level_sizes()
    return StepQuantizer(tuple(sizes), (1.0,) * len(sizes))


def prepare_for_coding(model: ImageModel) -> ImageModel:
    with torch.no_grad():
        model.grid.latents.copy_(torch.round(model.grid.latents))
    set_storage(model.grid, "latents", latent_storage(model))
    model.grid.latents.requires_grad_(False)
    # the latents are integers now: reading them as they are is the same as rounding them, and
    # takes the grid's fused gather (rounding goes through a slower differentiable path)
    model.rounding = "float"
    return model


def _float32_storage(model: nn.Module, skip: set[int]) -> None:
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and id(param) not in skip:
                set_storage(module, name, "float32")


def write_baseline(model: ImageModel, path: str | os.PathLike) -> int:
    """Integer latents and float32 decoders in one file; its bytes."""
    _float32_storage(model, {id(model.grid.latents)})
    return save_compressed(model, path, require_codes=False, names=True).file_bytes


def sample_score(source: PixelSource, pixels: int = 1 << 18, seed: int = 1):
    """PSNR on a fixed random sample of pixels: steers the search and picks fine-tuning iterates."""
    coords, colours = source.sample(pixels, torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def score(model: nn.Module) -> float:
        out = torch.cat([model(c) for c in coords.split(1 << 16)]).clamp(0, 1)
        return -10.0 * math.log10(float(((out - colours) ** 2).mean()))

    return score


def batch_loss(source: PixelSource, batch: int = 1 << 15, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)

    def loss(model: nn.Module) -> torch.Tensor:
        coords, colours = source.sample(batch, generator)
        return ((model(coords) - colours) ** 2).mean()

    return loss


def decoder_targets(model: ImageModel) -> list[str]:
    """The linears SINR codes: the MLP's. The latent decoder (latent_dim x features weights: 4
    at SHACIRA's settings) is too small for a sparse code (a vector of k1 = 4 allows s = 1, 2s < k1)
    and is stored on the dense grid instead; it still goes through compress_model, which rounds
    it to that grid and counts its bytes."""
    return [f"mlp.{name}" for name, m in model.mlp.named_children() if isinstance(m, nn.Linear)]


def compress_decoders(model: ImageModel, source: PixelSource, drop_db: float | None = 0.3, steps: int = 300,
                      config: SINRConfig = DECODER_SINR, progress: bool = True):
    """SINR-code the MLP in place (latents fixed), within ``drop_db`` of the model's PSNR on the
    fixed pixel sample (``torch_sinr.compress`` with ``MaxDrop``), or at ``config`` as it is when
    ``drop_db`` is None; returns ``torch_sinr.compress``'s result."""
    prepare_for_coding(model)
    _float32_storage(model, {id(model.grid.latents)})
    config = replace(config, target_modules=decoder_targets(model))
    search = {"target": MaxDrop(drop_db), "config": config, "value_bits": DECODER_VALUE_BITS} if drop_db is not None \
        else {"target": config}
    with warnings.catch_warnings():
        # naming the decoders explicitly is the point here, not the mistake the warning is for
        warnings.filterwarnings("ignore", message=".*looks like an input layer.*")
        return compress(model, batch_loss(source), evaluate=sample_score(source), steps=steps, select_by_score=True,
                        progress=progress, **search)


def decode_image(path: str | os.PathLike, skeleton: ImageModel, source: PixelSource, out: str | os.PathLike | None,
                 tile: int = 512) -> dict:
    """Decode ``path`` into ``skeleton`` and render the image tile by tile: PSNR (of the uint8
    image against the source), and the image as a memmap at ``out`` when given."""
    model = load_compressed(path, skeleton).eval()
    model.rounding = "float"  # the file's latents are integers
    image = None
    if out is not None:
        out = Path(out)
        image = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(source.height, source.width, 3))
    squared = 0.0
    with torch.no_grad():
        for r0, r1, c0, c1 in source.tiles(tile):
            # the inference path: the grid's fast gather, the latent decoder folded into the MLP
            rendered = model.decode(source.tile_coordinates(r0, r1, c0, c1)).clamp(0, 1)
            pixels = (rendered * 255.0).round().to(torch.uint8).reshape(r1 - r0, c1 - c0, 3).numpy()
            diff = pixels.astype(np.float64) - source.tile_pixels(r0, r1, c0, c1)
            squared += float((diff * diff).sum())
            if image is not None:
                image[r0:r1, c0:c1] = pixels
    if image is not None:
        image.flush()
    mse = squared / (source.n_pixels * 3)
    return {"psnr": 10.0 * math.log10(255.0 ** 2 / mse) if mse > 0 else math.inf,
            "file_bytes": Path(path).stat().st_size, "entries": read_compressed(path).tensors}
