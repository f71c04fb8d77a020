"""Models and data: the INRs SINR compresses and what they are fitted to.

- ``models``: coordinate MLPs (SIREN, Gauss, WIRE, ReLU + positional encoding), rendering, PSNR,
  fitting an image (its names are re-exported here, as ``torch_sinr.inr`` always offered them);
- ``fitting``: cached image fits for the benchmarks; ``images`` and ``datasets``: image files;
- ``meta``: meta-learned initialisations (MAML with learned per-parameter inner rates, as INRIC),
  ``import torch_sinr.inr.meta``;
- ``hashgrid``: a pure-PyTorch multiresolution hash grid, its entropy model and rounding;
- ``occupancy``: occupancy fields of meshes (fit, IoU, volumes, renders).

``hashgrid`` and ``occupancy`` load only when imported: ``import torch_sinr`` stays lean.
"""

from .models import (ACTIVATIONS, INR, INRConfig, PositionalEncoding, Siren, SirenConfig, fit_image, image_loss,
                     pixel_grid, psnr, render)

__all__ = ["ACTIVATIONS", "INR", "INRConfig", "PositionalEncoding", "Siren", "SirenConfig", "fit_image", "image_loss",
           "pixel_grid", "psnr", "render"]
