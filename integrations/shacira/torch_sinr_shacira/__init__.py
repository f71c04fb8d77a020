"""A SHACIRA-style image codec in plain PyTorch, with SINR on its decoders.

Modules, one concern each:

- ``data``: images as memory-mapped (H, W, 3) uint8 arrays: random pixel batches, tiles, and a
  tiled gigapixel stand-in built on disk band by band;
- ``model``: the 2-D hash grid of integer latents, the shared latent decoder, the MLP, and the
  learned rate model;
- ``train``: SHACIRA's training (annealed rounding, rate term), resumable checkpoints, data
  parallel over ``torch.distributed`` (launch with ``torchrun``);
- ``codec``: the file (integer latents range-coded, decoders at float32 or SINR-coded) and the
  image decoded from it tile by tile;
- ``run``: the command (``python -m torch_sinr_shacira``) that trains, codes, measures and
  writes JSON + markdown + a PNG crop comparison.
"""

from .codec import compress_decoders, decode_image, latent_storage, prepare_for_coding, write_baseline
from .data import PixelSource, tile_image
from .model import ImageModel, ImageModelConfig, RateModel
from .train import CPU_TRAINING, TrainConfig, train

__all__ = ["CPU_TRAINING", "ImageModel", "ImageModelConfig", "PixelSource", "RateModel", "TrainConfig",
           "compress_decoders", "decode_image", "latent_storage", "prepare_for_coding", "tile_image", "train", "write_baseline"]
