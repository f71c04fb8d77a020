"""Pixels of a nerfstudio dataset as ray batches: a fixed sample that scores a scene (to steer
a compression search), and random batches that fine-tune it.

Both come from the training images, never the test views the results are reported on. The
rays are generated as nerfstudio's data manager does (``RayGenerator`` over the dataset's
cameras), and scored with the model's own background blending, so a score is the PSNR the
model's training loss sees.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TrainRays:
    """Ray batches from ``dataset``'s images (all of them loaded once, float32)."""

    def __init__(self, dataset, device: torch.device | str = "cpu") -> None:
        from nerfstudio.model_components.ray_generators import RayGenerator

        self.device = torch.device(device)
        self.cameras = dataset.cameras.to(self.device)
        self.generator = RayGenerator(self.cameras)
        self.images = [dataset.get_image_float32(i) for i in range(len(dataset))]
        self.sizes = torch.tensor([tuple(image.shape[:2]) for image in self.images])  # (H, W) per image

    def batch(self, rays: int, generator: torch.Generator):
        """``rays`` random pixels: ``(ray_bundle, {"image": (rays, C)})``."""
        camera = torch.randint(len(self.images), (rays,), generator=generator)
        size = self.sizes[camera].double()
        y = (torch.rand(rays, generator=generator, dtype=torch.float64) * size[:, 0]).long()
        x = (torch.rand(rays, generator=generator, dtype=torch.float64) * size[:, 1]).long()
        pixels = torch.stack([self.images[int(c)][int(r), int(k)] for c, r, k in zip(camera, y, x)])
        bundle = self.generator(torch.stack([camera, y, x], dim=1).to(self.device))
        return bundle, {"image": pixels.to(self.device)}

    def scorer(self, rays: int = 1 << 14, seed: int = 0, chunk: int = 1 << 12):
        """A function ``model -> PSNR`` over one fixed sample of ``rays`` training pixels."""
        bundle, batch = self.batch(rays, torch.Generator().manual_seed(seed))

        def score(model: nn.Module) -> float:
            return psnr_of(model, bundle, batch["image"], chunk)

        return score


def scene_scorer(model: nn.Module, dataset, rays: int, device=None):
    """What a table-step search needs: ``(TrainRays, score, score_now)``. ``score(view)`` is
    ``model``'s PSNR on a fixed sample of ``rays`` training pixels (``view``, the scene part of
    ``model``, shares its modules, so scoring the model scores the view); ``score_now`` is that
    PSNR before anything is coded."""
    train_rays = TrainRays(dataset, device=device if device is not None else model.device)
    model_score = train_rays.scorer(rays)
    return train_rays, (lambda _view: model_score(model)), model_score(model)


@torch.no_grad()
def render_rgb(model: nn.Module, bundle, chunk: int = 1 << 12) -> torch.Tensor:
    """The model's RGB for every ray of a flat ``bundle``, in eval mode, chunk by chunk."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(bundle[start:start + chunk])["rgb"] for start in range(0, len(bundle), chunk)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def view_psnrs(model: nn.Module, dataset, chunk: int = 1 << 12) -> list[float]:
    """The PSNR of every image of ``dataset`` (e.g. the test views), each rendered whole from its
    camera and blended with the model's background, as the training loss and ``TrainRays`` see it."""
    from nerfstudio.model_components.ray_generators import RayGenerator

    device = next(model.parameters()).device
    generator = RayGenerator(dataset.cameras.to(device))
    out = []
    for i in range(len(dataset)):
        image = dataset.get_image_float32(i)
        h, w = image.shape[:2]
        y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pixels = torch.stack([torch.full_like(y, i), y, x], dim=-1).reshape(-1, 3)
        out.append(psnr_of(model, generator(pixels.to(device)), image.reshape(-1, image.shape[-1]), chunk))
    return out


def psnr_of(model: nn.Module, bundle, image: torch.Tensor, chunk: int = 1 << 12) -> float:
    rgb = render_rgb(model, bundle, chunk)
    target = model.renderer_rgb.blend_background(image.to(rgb.device))
    mse = float(((rgb - target) ** 2).mean())
    return -10.0 * math.log10(mse) if mse > 0 else math.inf
