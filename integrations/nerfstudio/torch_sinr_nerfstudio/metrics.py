"""Evaluating a pipeline on its eval images, and what of it may be reported.

PSNR and SSIM come from nerfstudio's own ``pipeline.get_average_eval_image_metrics``. LPIPS
depends on pretrained AlexNet weights that torchvision downloads into ``$TORCH_HOME``; where
they are a placeholder (tests, offline machines) the value means nothing, so LPIPS is reported
only when the cached file's SHA-256 matches the hash prefix in its published name.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, as LPIPS loads them


def alexnet_weights_genuine() -> tuple[bool, str]:
    """Whether the AlexNet weights LPIPS uses are torchvision's published file (and why not)."""
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if not path.is_file():
        return False, f"no AlexNet weights at {path}"
    prefix = re.search(r"-([a-f0-9]+)\.", ALEXNET_FILE).group(1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        return False, f"{path} is not torchvision's published AlexNet file (sha256 {digest[:8]}..., expected {prefix}...)"
    return True, str(path)


def write_placeholder_alexnet(torch_home: Path) -> Path:
    """Randomly initialised AlexNet weights under ``torch_home`` where LPIPS looks for them, so a
    nerfstudio model can be built offline. LPIPS values computed with them are meaningless, and
    ``evaluate`` does not report them (the file fails the published-hash check)."""
    import torch
    from torchvision.models import alexnet

    path = Path(torch_home) / "hub" / "checkpoints" / ALEXNET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(alexnet(weights=None).state_dict(), path)
    return path


def evaluate(pipeline, image_dir: Path | None = None) -> dict:
    """Average eval-image metrics: PSNR and SSIM always, LPIPS only with genuine weights.

    ``image_dir`` keeps nerfstudio's rendered eval images (``eval_img_0000.png``: ground truth
    then prediction(s), side by side).
    """
    from .render_support import check_can_render

    check_can_render(pipeline.model, "evaluation")
    raw = pipeline.get_average_eval_image_metrics(output_path=image_dir)
    genuine, why = alexnet_weights_genuine()
    kept = {k: float(v) for k, v in raw.items() if "psnr" in k or "ssim" in k or (genuine and "lpips" in k)}
    kept["num_eval_images"] = len(pipeline.datamanager.fixed_indices_eval_dataloader)
    if not genuine:
        kept["lpips"] = f"not reported: {why}"
    return kept


def main_psnr(metrics: dict) -> float:
    """The PSNR of the final rendering ('fine_psnr' for NeRF's coarse/fine pair, else 'psnr')."""
    return metrics.get("fine_psnr", metrics["psnr"])


def main_ssim(metrics: dict) -> float:
    return metrics.get("fine_ssim", metrics.get("ssim"))


def comparison_image(before_dir: Path, after_dir: Path, out: Path, index: int = 0) -> Path:
    """ground truth | before | after for one eval view, from nerfstudio's saved eval images.

    nerfstudio saves ``img`` as [ground truth, ..., final prediction] side by side, so the first
    and last square tiles are the ground truth and the final rendering.
    """
    name = f"eval_img_{index:04d}.png"
    before = np.asarray(Image.open(before_dir / name).convert("RGB"))
    after = np.asarray(Image.open(after_dir / name).convert("RGB"))
    h = before.shape[0]
    row = np.concatenate([before[:, :h], before[:, -h:], after[:, -h:]], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(out)
    return out


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="sinr_ns_eval_")
