"""Fitting INRs to images with a cache, so compression experiments re-run in minutes.

A fitted model is stored as .safetensors named by a hash of everything that determines it:
the image bytes, the INR config, steps, seed, learning rate, downscale and the fitter version.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .images import load_image
from .models import INR, INRConfig, fit_image, psnr, render

FITTER_VERSION = 1  # bump when fit_image changes what it produces


def fit_key(image_path: str | Path, config: INRConfig, steps: int, seed: int, lr: float, downscale: int) -> dict:
    digest = hashlib.sha256(Path(image_path).read_bytes()).hexdigest()
    return {"image": Path(image_path).name, "image_sha256": digest, "config": asdict(config), "steps": steps,
            "seed": seed, "lr": lr, "downscale": downscale, "fitter_version": FITTER_VERSION}


def key_digest(key: dict) -> str:
    """A short hash of a cache key (a JSON-able dict), for file names."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def read_fit(path: Path, key: dict, config: INRConfig) -> tuple[INR, dict] | None:
    """The fit stored at ``path`` and its record, if the record's key is ``key`` (else None)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        record = json.loads(f.metadata()["record"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    if record.get("key") != key:
        return None
    model = INR(config)
    model.load_state_dict(state)
    return model.eval(), record


def write_fit(path: Path, model: INR, record: dict) -> None:
    """Store a fit with its record, atomically (a temporary file renamed): no torn cache files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"record": json.dumps(record)})
    tmp.replace(path)


def cache_path(cache_dir: str | Path, key: dict) -> Path:
    h = key_digest(key)
    c = key["config"]
    return Path(cache_dir) / f"{Path(key['image']).stem}-{c['activation']}-{c['hidden_layers']}x{c['hidden_features']}-{h}.safetensors"


def fit_cached(image_path: str | Path, config: INRConfig, steps: int, *, cache_dir: str | Path, seed: int = 0,
               lr: float = 1e-3, downscale: int = 1, progress: bool = True,
               device: str | torch.device = "cpu") -> tuple[INR, dict]:
    """The INR fitted to the image (from the cache when present) and its record (PSNR, time, key).

    ``device`` is where a missing fit runs; the model returned is on the CPU either way."""
    key = fit_key(image_path, config, steps, seed, lr, downscale)
    path = cache_path(cache_dir, key)
    cached = read_fit(path, key, config)
    if cached is not None:
        return cached
    image = load_image(image_path, downscale).to(device)
    torch.manual_seed(seed)
    model = INR(config).to(device)  # initialised on the CPU, so the same start on any device
    started = time.perf_counter()
    fit_image(model, image, steps, lr=lr, progress=progress)
    model.eval()
    # Where it was fitted: the weights depend on the torch version and thread count (float
    # reduction order), not on anything the key names.
    record = {"key": key, "psnr": psnr(render(model, *image.shape[1:]), image),
              "seconds": time.perf_counter() - started,
              "env": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "device": str(next(model.parameters()).device)}}
    model = model.cpu()
    write_fit(path, model, record)
    return model, record
