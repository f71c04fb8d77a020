"""Multiresolution hash-grid encodings in plain PyTorch (2-D images, 3-D fields).

Not imported by ``import torch_sinr``: ``import torch_sinr.inr.hashgrid`` when needed.
"""

from . import fast
from .encoding import HashGrid, HashGridConfig, hash_coords, interpolate_hashed_levels

__all__ = ["fast", "HashGrid", "HashGridConfig", "hash_coords", "interpolate_hashed_levels"]
