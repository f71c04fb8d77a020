import numpy as np
import pytest
import torch

from torch_sinr.inr.images import load_image


@pytest.fixture(scope="module")
def kodak_crop() -> np.ndarray:
    """A 256 x 256 crop of the bundled Kodak image (uint8 RGB)."""
    image = load_image()  # (3, H, W) float in [0, 1]
    crop = (image[:, :256, :256] * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    assert crop.shape == (256, 256, 3)
    return crop
