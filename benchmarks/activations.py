"""Activation study (the supplement's S3.1): SIREN vs Gauss vs real Gabor (WIRE) vs ReLU + PE.

``python -m benchmarks.activations`` fits each activation to four Kodak images at 300 hidden
neurons, compresses each fit with SINR at the paper's settings, and writes benchmarks/results/activations.{json,md,png}: mean PSNR
before and after per activation, bpp from the written files, and the decoded images of one
image per activation.

Reduced CPU protocol: images box-downscaled by 16 (48x32 / 32x48), 3 hidden layers of 300,
500 full-batch Adam steps at lr 1e-3 with cosine decay (the same fitter and learning rate for
every activation; each activation's own parameters are WIRE's image defaults, as in
``INRConfig``). The four images are drawn once with a fixed seed.

At this resolution a 300-wide network has far more parameters than the image has values
(272k vs 4.6k), so SIREN, Gauss and Gabor fit it to float precision and the fitted PSNR cannot
rank them; what still ranks them is how much SINR's approximation costs each. The paper's
300-wide nets on full 768x512 images have fewer parameters than values (~0.23 per value):
``--downscale 8 --hidden-features 64 --steps 1000 --tag activations_w64`` keeps the network
smaller than the image (12.7k parameters, 18k values) and so ranks the fits. Gauss and Gabor steps cost
4-6x a SIREN step here (exp on every hidden unit), which set the budget. 300-wide fits are
~1 MB each, so they are cached outside git (benchmarks/fits_activations/, ignored).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from benchmarks._common import DEFAULT_OUT, HelpFormatter, md_table, write_results
from benchmarks.kodak import DEFAULT_KODAK
from torch_sinr import SINRConfig, compress_model
from torch_sinr.inr.datasets import kodak_paths
from torch_sinr.inr.fitting import fit_cached
from torch_sinr.inr.images import load_image, save_image_row
from torch_sinr.inr.models import ACTIVATIONS, INR, INRConfig, psnr, render
from torch_sinr.format import load_compressed, save_compressed

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "fits_activations"
PROTOCOL = {"downscale": 16, "steps": 500, "lr": 1e-3, "seed": 0, "hidden_features": 300, "hidden_layers": 3,
            "image_draw_seed": 0, "images": 4}


def draw_images(paths: list[Path], count: int, seed: int) -> list[Path]:
    return sorted(random.Random(seed).sample(paths, count))


def run(kodak_dir: Path, out: Path, steps: int, downscale: int, hidden_features: int = PROTOCOL["hidden_features"],
        tag: str = "activations") -> dict:
    protocol = dict(PROTOCOL, steps=steps, downscale=downscale, hidden_features=hidden_features)
    images = draw_images(kodak_paths(kodak_dir), protocol["images"], protocol["image_draw_seed"])
    rows, shown = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "m.safetensors"
        for activation in ACTIVATIONS:
            config = INRConfig(hidden_features=protocol["hidden_features"], hidden_layers=protocol["hidden_layers"],
                               activation=activation)
            for path in tqdm(images, desc=activation, unit="image"):
                model, record = fit_cached(path, config, steps, cache_dir=CACHE, seed=protocol["seed"],
                                           lr=protocol["lr"], downscale=downscale, progress=False)
                image = load_image(path, downscale)
                height, width = image.shape[1:]
                row = {"activation": activation, "image": path.name, "fit_psnr": record["psnr"],
                       "fit_seconds": record["seconds"]}
                compressed = copy.deepcopy(model)
                # The coordinate input layer stays dense, as in the paper; after ReLU's positional
                # encoding its fan-in is 42, above the fan-in rule, so it is named explicitly.
                first = next(name for name, m in compressed.named_modules() if isinstance(m, nn.Linear))
                compress_model(compressed, SINRConfig(exclude_modules=[first]))
                size = save_compressed(compressed, file).file_bytes
                decoded = load_compressed(file, INR(config)).eval()
                picture = render(decoded, height, width)
                row.update(sinr_psnr=psnr(picture, image), sinr_bpp=8 * size / (height * width))
                if path == images[0]:
                    shown[(activation, "fit")] = render(model, height, width)
                    shown[(activation, "SINR")] = picture
                rows.append(row)

    means = []
    for activation in ACTIVATIONS:
        mine = [r for r in rows if r["activation"] == activation]
        means.append({"activation": activation, **{k: sum(r[k] for r in mine) / len(mine) for k in
                      ("fit_psnr", "sinr_psnr", "sinr_bpp")}})
    table = md_table(["activation", "fitted PSNR (dB)", "SINR, paper settings: PSNR (dB)", "bpp"],
                     [[m["activation"], f"{m['fit_psnr']:.2f}", f"{m['sinr_psnr']:.2f}", f"{m['sinr_bpp']:.2f}"]
                      for m in means])
    markdown = "\n".join([
        "# Activation study (supplement S3.1)", "",
        (f"Protocol: {protocol}. Images: {[p.name for p in images]}. Means over the images; PSNR of the "
         "decoded file, bpp from its bytes."), "", table, "",
        f"![decoded images of {images[0].name}]({tag}.png)"])
    results = {"protocol": protocol, "images": [p.name for p in images], "rows": rows, "means": means}
    written = write_results(out, tag, __doc__.strip().splitlines()[0], results, markdown)
    order = [(a, v) for a in ACTIVATIONS for v in ("fit", "SINR")]
    labels = [f"{a} {v}" for a, v in order]
    save_image_row([shown[k] for k in order], labels, out / f"{tag}.png", scale=3)
    print(markdown)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.activations", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK, help="directory with kodim01..24.png")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder the TAG.{json,md,png} results go to")
    parser.add_argument("--steps", type=int, default=PROTOCOL["steps"],
                        help="full-batch Adam steps of each fit (selects cached fits)")
    parser.add_argument("--downscale", type=int, default=PROTOCOL["downscale"],
                        help="box-downscale factor applied to every image before fitting")
    parser.add_argument("--hidden-features", type=int, default=PROTOCOL["hidden_features"],
                        help="width of each of the 3 hidden layers")
    parser.add_argument("--tag", default="activations", help="result file name: TAG.{json,md,png}")
    args = parser.parse_args(argv)
    run(args.kodak, args.out, args.steps, args.downscale, args.hidden_features, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
