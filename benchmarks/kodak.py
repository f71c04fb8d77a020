"""Kodak INR benchmark (issue 3). Step 1, fitting: ``python -m benchmarks.kodak fit``.

Reduced CPU protocol (documented in PROTOCOL): images box-downscaled by 4 (192x128 / 128x192),
SIREN (w0 = 30), full-batch Adam at lr 1e-3 with cosine decay, 2000 steps, seed 0, best-PSNR
weights kept. Paper configurations (hidden layers, width): C1 = (2,32), (3,64), (3,128);
C2 = (3,64), (5,64), (7,64). Fitted models are cached in benchmarks/fits/ (committed), keyed by
image hash, config and protocol, so compression experiments only compress. ``--downscale 1``
with a larger ``--steps`` is the full-resolution mode for a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from torch_sinr.datasets import kodak_paths
from torch_sinr.fitting import fit_cached
from torch_sinr.inr import INRConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KODAK = REPO.parent / "shared" / "data" / "kodak"
FITS = REPO / "benchmarks" / "fits"
PROTOCOL = {"downscale": 4, "steps": 2000, "lr": 1e-3, "seed": 0, "activation": "siren"}
CONFIGS = {"C1": [(2, 32), (3, 64), (3, 128)], "C2": [(3, 64), (5, 64), (7, 64)]}


def inr_config(layers: int, width: int) -> INRConfig:
    return INRConfig(hidden_features=width, hidden_layers=layers, activation=PROTOCOL["activation"])


def fit_all(kodak_dir: Path, configs: list[tuple[int, int]], images: list[str] | None, steps: int, downscale: int,
            cache_dir: Path) -> list[dict]:
    paths = kodak_paths(kodak_dir)
    if images:
        paths = [p for p in paths if p.stem in images or p.name in images]
    records = []
    for layers, width in configs:  # one configuration over all images before the next
        for path in paths:
            _, record = fit_cached(path, inr_config(layers, width), steps, cache_dir=cache_dir, seed=PROTOCOL["seed"],
                                   lr=PROTOCOL["lr"], downscale=downscale, progress=False)
            records.append(record)
            print(f"{path.name} {layers}x{width}: {record['psnr']:.2f} dB ({record['seconds']:.0f} s fitting)", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kodak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit (or load from the cache) the INRs of the protocol")
    fit.add_argument("--kodak", type=Path, default=DEFAULT_KODAK, help="directory with kodim01..24.png")
    fit.add_argument("--configs", nargs="*", default=["C1", "C2"], help="C1, C2 or LxW entries like 3x64")
    fit.add_argument("--images", nargs="*", help="subset, e.g. kodim01 kodim05")
    fit.add_argument("--steps", type=int, default=PROTOCOL["steps"])
    fit.add_argument("--downscale", type=int, default=PROTOCOL["downscale"])
    fit.add_argument("--cache", type=Path, default=FITS)
    args = parser.parse_args(argv)
    configs: list[tuple[int, int]] = []
    for c in args.configs:
        entries = CONFIGS[c] if c in CONFIGS else [tuple(int(v) for v in c.split("x"))]
        configs += [e for e in entries if e not in configs]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    records = fit_all(args.kodak, configs, args.images, args.steps, args.downscale, args.cache)
    summary = {f"{r['key']['image']} {r['key']['config']['hidden_layers']}x{r['key']['config']['hidden_features']}":
               r["psnr"] for r in records}
    print(json.dumps({"fits": len(records), "mean_psnr": sum(summary.values()) / max(1, len(summary))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
