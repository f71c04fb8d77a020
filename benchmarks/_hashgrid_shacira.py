"""The SHACIRA-style image model's hash-grid paths, timed for ``benchmarks.hashgrid_speed``.

Inference: 2**20 random positions through the large-image model (16 levels, 2**20 rows per hashed
level, resolutions 16..2604, MLP 64 -> 96 -> 96 -> 3; ``ImageModelConfig.for_image(3588, 5208)``,
the configuration ``benchmarks.shacira`` trains on the shared 5208 x 3588 image), float32, latents
read as they are (``rounding = "float"``, as decode does):

- previous: the model's forward before fast.py, as ``decode_image`` ran it (no_grad, tiles of
  2**18 points): the grid's recorded path with the rounding as a transform, the latent decoder,
  the MLP;
- torch: ``ImageModel.decode`` with the grid's torch ops (``fast.torch_only()``: what a machine
  without a C++ compiler runs; the "new" path of the previous results);
- new: ``ImageModel.decode`` (the grid's C++ kernel, the latent decoder folded into the MLP's
  first linear);
- grid alone (torch, new): ``HashGrid.forward`` without a gradient, the grid's share of each;
- MLP alone: the model's MLP on 2**20 random 64-feature rows, the faster of 2**14- and 2**18-row
  chunks: the bound the grid is measured against.

Training: ``train`` on the large image (or the bundled Kodak image where it is missing) with the
reduced CPU protocol (2**14 pixels a step) for ``TRAIN_STEPS`` steps (90% soft rounding, then
hard), previous (``fused=False``) against new (``fused=True``): pixels per second and the loss after
the same steps, from the same seed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

INFERENCE_POINTS = 2**20
PREVIOUS_TILE = 2**18  # decode_image's 512 x 512 tiles
MLP_CHUNKS = (2**14, 2**18)
AGREEMENT_POINTS = 4096
TRAIN_STEPS = 40
TRAIN_BATCH = 2**14
REPEATS = 5


def _model():
    from torch_sinr_shacira import ImageModel, ImageModelConfig

    torch.manual_seed(0)
    config = ImageModelConfig.for_image(3588, 5208)
    model = ImageModel(config).eval()
    with torch.no_grad():  # integer latents, as a decoded file holds them
        model.grid.latents.copy_(torch.round(model.grid.latents * 4))
    model.rounding = "float"
    return model


def _previous_inference(model, x: torch.Tensor) -> torch.Tensor:
    levels, latent_dim = model.config.levels, model.config.latent_dim
    outs = []
    with torch.no_grad():
        for tile in x.split(PREVIOUS_TILE):
            latents = model.grid.training_forward(tile, transform=model._round)
            n = latents.shape[0]
            features = model.latent_decoder(latents.reshape(n, levels, latent_dim))
            outs.append(model.mlp(features.reshape(n, -1)))
    return torch.cat(outs)


def _mlp_alone(model, features: torch.Tensor, chunk: int) -> None:
    with torch.inference_mode():
        for rows in features.split(chunk):
            model.mlp(rows)


def _timed(fn) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0}


def _torch_only(fn):
    """``fn`` with the grid's C++ kernel switched off: the path of a machine without a compiler."""
    from torch_sinr.inr.hashgrid import fast

    def run():
        with fast.torch_only():
            return fn()
    return run


def measure_inference() -> dict:
    from torch_sinr import native
    from torch_sinr.inr.hashgrid import fast

    model = _model()
    x = torch.rand(INFERENCE_POINTS, 2, generator=torch.Generator().manual_seed(5))
    features = torch.randn(INFERENCE_POINTS, model.config.levels * model.config.features,
                           generator=torch.Generator().manual_seed(6))
    paths = {
        "previous": lambda: _previous_inference(model, x),
        "torch": _torch_only(lambda: model.decode(x)),
        "new": lambda: model.decode(x),
        "grid_alone_torch": _torch_only(lambda: model.grid(x)),
        "grid_alone_new": lambda: model.grid(x),
        **{f"mlp_alone_{chunk}": (lambda chunk=chunk: _mlp_alone(model, features, chunk)) for chunk in MLP_CHUNKS},
    }
    kernel = fast.native_available()
    if not kernel:  # "new" would be "torch" again: say so rather than time it twice
        paths = {k: v for k, v in paths.items() if k not in ("new", "grid_alone_new")}
    times = {name: [] for name in paths}
    with torch.no_grad():
        for repeat in range(1 + REPEATS):  # one warm-up round
            order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
            for name in order:
                step = _timed(paths[name])
                if repeat >= 1:
                    times[name].append(step)
        probe = x[:AGREEMENT_POINTS]
        best = model.decode(probe)
        difference = float((best - _previous_inference(model, probe)).abs().max())
        torch_decode = _torch_only(lambda: model.decode(probe))()
    runs = {}
    for name, steps in times.items():
        wall = statistics.median(s["wall_s"] for s in steps)
        runs[name] = {"median_wall_s": wall, "points_per_s": INFERENCE_POINTS / wall,
                      "cpu_over_wall": sum(s["cpu_s"] for s in steps) / sum(s["wall_s"] for s in steps),
                      "steps": steps}
    best_mlp = max((f"mlp_alone_{chunk}" for chunk in MLP_CHUNKS), key=lambda k: runs[k]["points_per_s"])
    mlp = runs[best_mlp]["points_per_s"]
    fastest = "new" if kernel else "torch"
    return {
        "model_config": model.config.to_dict(), "latents": int(model.grid.latents.shape[0]),
        "points": INFERENCE_POINTS, "previous_tile": PREVIOUS_TILE, "repeats": REPEATS, "paths": runs,
        "native_kernel": {"built": kernel, "why_not": native.why_not("hashgrid"), "flags": list(native.FLAGS)},
        "fastest": fastest,
        "mlp_bound": best_mlp,
        "new_over_mlp": runs[fastest]["points_per_s"] / mlp,
        "torch_over_mlp": runs["torch"]["points_per_s"] / mlp,
        "previous_over_mlp": runs["previous"]["points_per_s"] / mlp,
        "new_over_previous": runs[fastest]["points_per_s"] / runs["previous"]["points_per_s"],
        "new_over_torch": runs[fastest]["points_per_s"] / runs["torch"]["points_per_s"],
        "max_abs_difference_new_vs_previous": difference,
        "new_equals_torch": bool(torch.equal(best, torch_decode)),
    }


def _source():
    from torch_sinr.inr.images import load_image
    from torch_sinr_shacira import PixelSource

    from .shacira import CACHE, LARGE

    if Path(LARGE).exists():
        return PixelSource.open(LARGE, CACHE / "images"), Path(LARGE).name
    image = load_image()  # the bundled Kodak image, (3, H, W) in [0, 1]
    pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return PixelSource(pixels, "kodak"), "bundled Kodak image (the large image is missing)"


def _train_once(source, fused: bool) -> dict:
    import math

    from torch_sinr_shacira import ImageModel, ImageModelConfig, RateModel, train
    from torch_sinr_shacira.train import CPU_TRAINING

    config = replace(CPU_TRAINING, steps=TRAIN_STEPS, batch=TRAIN_BATCH)
    torch.manual_seed(config.seed)
    model, rate = ImageModel(ImageModelConfig.for_image(3588, 5208)), RateModel()
    c0 = time.process_time()
    record = train(model, source, config, rate=rate, progress=False, log_every=TRAIN_STEPS, fused=fused)
    cpu = time.process_time() - c0
    last = record["history"][-1]
    return {"seconds": record["seconds"], "cpu_over_wall": cpu / record["seconds"],
            "pixels_per_s": TRAIN_STEPS * TRAIN_BATCH / record["seconds"], "final_step": last["step"],
            "final_mse": last["mse"], "final_psnr": -10 * math.log10(last["mse"]),
            "final_bits_per_latent": last["bits_per_latent"]}


def measure_training() -> dict:
    source, name = _source()
    runs = {"previous": [], "new": []}
    for fused in (False, True, True, False):  # alternating, each first once
        runs["new" if fused else "previous"].append(_train_once(source, fused))
    summary = {}
    for path, records in runs.items():
        summary[path] = {"pixels_per_s": statistics.median(r["pixels_per_s"] for r in records),
                         "final_mse": records[0]["final_mse"], "final_psnr": records[0]["final_psnr"],
                         "final_bits_per_latent": records[0]["final_bits_per_latent"], "runs": records}
    return {"image": name, "shape": [source.height, source.width], "steps": TRAIN_STEPS, "batch": TRAIN_BATCH,
            **summary, "new_over_previous": summary["new"]["pixels_per_s"] / summary["previous"]["pixels_per_s"]}
