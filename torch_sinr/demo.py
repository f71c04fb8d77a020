"""The built-in main job: fit a SIREN to a bundled Kodak image, compress it with SINR, report.

``torch-sinr demo`` (no arguments): about a minute on a 2-core CPU. Writes the compressed
.safetensors file, a side-by-side PNG (original | decoded uncompressed | decoded SINR) and a
JSON report into ``sinr_demo/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .config import SINRConfig
from .images import DEFAULT_IMAGE, load_image, save_image_row
from .inr import Siren, SirenConfig, fit_image, psnr, render
from .serialization import load_compressed, save_compressed
from .transform import compress_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="PNG/JPEG to fit (default: bundled kodim23)")
    parser.add_argument("--downscale", type=int, default=4, help="box-average factor (default 4: 192x128)")
    parser.add_argument("--hidden", type=int, default=64, help="SIREN width")
    parser.add_argument("--layers", type=int, default=3, help="SIREN hidden layers")
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--s-ratio", type=float, default=None, help="non-zeros per weight vector / fan-in")
    parser.add_argument("--dict-ratio", type=int, default=None, help="dictionary atoms / fan-in")
    parser.add_argument("--value-bits", type=int, default=16)
    parser.add_argument("--out", default="sinr_demo", help="output directory")


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(args.image, args.downscale)
    _, height, width = image.shape
    siren_config = SirenConfig(hidden_features=args.hidden, hidden_layers=args.layers)
    model = Siren(siren_config)
    print(f"Fitting a SIREN {args.layers}x{args.hidden} to {Path(args.image).name} at {width}x{height} "
          f"for {args.steps} steps")
    t0 = time.perf_counter()
    fit_image(model, image, args.steps, lr=args.lr)
    fit_seconds = time.perf_counter() - t0
    model.eval()
    uncompressed = render(model, height, width)
    dense_params = sum(p.numel() for p in model.parameters())

    options = {k: v for k, v in {"s_ratio": args.s_ratio, "dict_ratio": args.dict_ratio}.items() if v is not None}
    config = SINRConfig(value_bits=args.value_bits, **options)
    report = compress_model(model, config)
    path = out / "siren_sinr.safetensors"
    file_report = save_compressed(model, path)
    # Decode from the file into a fresh skeleton: the numbers below are the file's quality.
    decoded_model = load_compressed(path, Siren(siren_config)).eval()
    decoded = render(decoded_model, height, width)
    if not torch.equal(decoded, render(model, height, width)):
        raise RuntimeError("the decoded file differs from the in-memory compressed model")

    pixels = height * width
    result = {
        "image": str(args.image), "resolution": [width, height], "siren": vars(siren_config),
        "steps": args.steps, "fit_seconds": fit_seconds, "dense_params": dense_params,
        "float32_bytes": 4 * dense_params, "file_bytes": file_report.file_bytes,
        "bpp_float32": 32 * dense_params / pixels, "bpp_sinr": 8 * file_report.file_bytes / pixels,
        "ratio": 4 * dense_params / file_report.file_bytes,
        "psnr_uncompressed": psnr(uncompressed, image), "psnr_sinr": psnr(decoded, image),
        "compression": report.to_dict(), "file": file_report.to_dict(), "config": config.to_dict(),
    }
    save_image_row([image, uncompressed, decoded],
                   ["original", f"SIREN float32 {result['psnr_uncompressed']:.2f} dB",
                    f"SINR {result['psnr_sinr']:.2f} dB, {result['bpp_sinr']:.2f} bpp"],
                   out / "comparison.png")
    (out / "report.json").write_text(json.dumps(result, indent=2, default=str))

    print("\nPer layer (bits after Brotli; rel. error = ||W - W_sinr|| / ||W||):")
    print(report.table())
    print("\nFile parts:")
    print(file_report.table())
    print(f"\nPSNR before: {result['psnr_uncompressed']:.2f} dB   after: {result['psnr_sinr']:.2f} dB   "
          f"(drop {result['psnr_uncompressed'] - result['psnr_sinr']:.2f} dB)")
    print(f"Size: {result['float32_bytes']} B float32 -> {result['file_bytes']} B file   "
          f"ratio {result['ratio']:.2f}x   bpp {result['bpp_float32']:.2f} -> {result['bpp_sinr']:.2f}")
    print(f"Wrote {path}, {out / 'comparison.png'}, {out / 'report.json'}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="torch-sinr demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
