"""The built-in main job: does SINR save bits on a SIREN, against the best uniform quantization?

``torch-sinr demo`` (no arguments, about a minute on 2 CPU cores):

1. fits a SIREN to a bundled Kodak image;
2. compresses it with ``torch_sinr.compress`` (autotune + fine-tuning to within ``--max-drop``
   dB of the fit), writes the file and decodes it into a fresh model;
3. runs the baseline a user would otherwise use, uniform quantization of every tensor, fine-tuned
   with the same steps and learning rate and written in the same container with the same entropy
   coder, at increasing bit widths until it reaches SINR's PSNR; its bytes at exactly SINR's PSNR
   are interpolated (log-bytes, linear in PSNR) between the two bit widths that bracket it;
4. prints the saving and writes ``comparison.png`` (original | SINR | uniform), the SINR file
   and ``report.json`` into ``sinr_demo/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

from .format import load_compressed, save_compressed
from .inr.images import DEFAULT_IMAGE, load_image, save_image_row
from .inr.models import Siren, SirenConfig, fit_image, image_loss, psnr, render
from .tune.autotune import MaxDrop
from .tune.baselines import finetune_uniform, read_baseline, write_uniform
from .tune.pipeline import compress

UNIFORM_BITS = (6, 7, 8, 9, 10, 11, 12, 14, 16)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="PNG/JPEG to fit (default: the bundled kodim23)")
    # The defaults (a 2x64 SIREN on the image at 153x102) keep the run near a minute on 2 cores.
    # Measured on this machine: 3x64 at 192x128 took 2 min 10 s (14.1% saving), 3x64 at 128x85
    # 58 s (8.4%, 10.7 bpp: a network larger than its image), 2x64 at 153x102 62 s (11.3%, 4.6 bpp).
    parser.add_argument("--downscale", type=int, default=5, help="box-average the image by this factor before fitting (5 gives 153x102)")
    parser.add_argument("--hidden", type=int, default=64, help="SIREN width (hidden features per layer)")
    parser.add_argument("--layers", type=int, default=2, help="SIREN hidden layers")
    parser.add_argument("--steps", type=int, default=1000, help="fitting steps (Adam)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the fit")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the SIREN's initialisation")
    parser.add_argument("--max-drop", type=float, default=1.0, help="PSNR SINR may lose against the fit (dB)")
    parser.add_argument("--finetune-steps", type=int, default=200, help="fine-tuning steps, SINR and baseline alike")
    parser.add_argument("--finetune-lr", type=float, default=1e-3,
                        help="Adam learning rate of fine-tuning, SINR and baseline alike")
    parser.add_argument("--max-probes", type=int, default=5, help="most probes of torch_sinr.compress's size search (bisection on its rung)")
    parser.add_argument("--out", default="sinr_demo", help="output directory")


def uniform_at_psnr(points: list[dict], target: float) -> float | None:
    """Bytes of uniform quantization at PSNR ``target``: log-linear between the two measured
    points that bracket it (None when no point reaches it)."""
    points = sorted(points, key=lambda p: p["bytes"])
    for low, high in zip(points, points[1:]):
        if low["psnr"] < target <= high["psnr"]:
            t = (target - low["psnr"]) / (high["psnr"] - low["psnr"])
            return math.exp(math.log(low["bytes"]) + t * (math.log(high["bytes"]) - math.log(low["bytes"])))
    reached = [p["bytes"] for p in points if p["psnr"] >= target]
    return float(min(reached)) if reached else None


def _rounded(model, bits: int):
    """``model`` with every tensor on its own b-bit grid (no fine-tuning)."""
    from .tune.baselines import uniform_round_trip

    rounded = copy.deepcopy(model)
    rounded.load_state_dict(uniform_round_trip(model.state_dict(), bits))
    return rounded.eval()


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(args.image, args.downscale)
    _, height, width = image.shape
    pixels = height * width
    siren_config = SirenConfig(hidden_features=args.hidden, hidden_layers=args.layers)
    model = Siren(siren_config)
    print(f"1. Fitting a SIREN {args.layers}x{args.hidden} to {Path(args.image).name} at {width}x{height} "
          f"for {args.steps} steps")
    t0 = time.perf_counter()
    fit_image(model, image, args.steps, lr=args.lr)
    fit_seconds = time.perf_counter() - t0
    model.eval()
    evaluate = lambda m: psnr(render(m, height, width), image)  # noqa: E731
    loss = image_loss(image)
    reference = evaluate(model)
    dense_params = sum(p.numel() for p in model.parameters())
    print(f"   {reference:.2f} dB, {4 * dense_params} B as float32 ({32 * dense_params / pixels:.2f} bpp)")

    print(f"2. torch_sinr.compress: autotune + {args.finetune_steps} fine-tuning steps, at most "
          f"{args.max_drop:g} dB below the fit")
    compressed = copy.deepcopy(model)
    result = compress(compressed, loss, evaluate=evaluate, target=MaxDrop(args.max_drop),
                      steps=args.finetune_steps, lr=args.finetune_lr, max_probes=args.max_probes)
    path = out / "siren_sinr.safetensors"
    file_report = save_compressed(compressed, path)
    # Decode from the file into a fresh skeleton: the numbers below are the file's quality.
    decoded_model = load_compressed(path, Siren(siren_config)).eval()
    sinr_image = render(decoded_model, height, width)
    sinr_psnr = psnr(sinr_image, image)
    if not torch.equal(sinr_image, render(compressed, height, width)):
        raise RuntimeError("the decoded file differs from the in-memory compressed model")

    print(f"3. Baseline: uniform quantization of every tensor, {args.finetune_steps} fine-tuning steps, "
          f"same container and entropy coder, until it reaches {sinr_psnr:.2f} dB")
    uniform_points, uniform_images = [], {}

    def uniform(bits: int) -> dict:
        tuned, grids = finetune_uniform(copy.deepcopy(model), loss, bits, args.finetune_steps, lr=args.finetune_lr,
                                        progress=True)
        upath = out / "uniform.safetensors"
        size = write_uniform(tuned, upath, bits, grids)
        decoded = Siren(siren_config)
        decoded.load_state_dict(read_baseline(upath, skeleton=Siren(siren_config)))
        uniform_images[bits] = render(decoded.eval(), height, width)
        point = {"bits": bits, "bytes": size, "psnr": psnr(uniform_images[bits], image)}
        print(f"   {bits:2d}-bit: {size} B, {point['psnr']:.2f} dB")
        return point

    # Start two widths below the narrowest plain (not fine-tuned) grid that reaches SINR's PSNR:
    # fine-tuning gains about a bit's worth, so the bracketing widths are fine-tuned, not all.
    plain = [b for b in UNIFORM_BITS if psnr(render(_rounded(model, b), height, width), image) >= sinr_psnr]
    start = UNIFORM_BITS.index(plain[0]) - 2 if plain else 0
    for bits in UNIFORM_BITS[max(0, start):]:
        uniform_points.append(uniform(bits))
        if uniform_points[-1]["psnr"] >= sinr_psnr:
            break
    while uniform_points[0]["psnr"] >= sinr_psnr and uniform_points[0]["bits"] > UNIFORM_BITS[0]:
        lower = UNIFORM_BITS[UNIFORM_BITS.index(uniform_points[0]["bits"]) - 1]  # bracket from below too
        uniform_points.insert(0, uniform(lower))
    (out / "uniform.safetensors").unlink(missing_ok=True)
    uniform_bytes = uniform_at_psnr(uniform_points, sinr_psnr)
    shown = next((p for p in uniform_points if p["psnr"] >= sinr_psnr), uniform_points[-1])

    saving = None if uniform_bytes is None else 1 - file_report.file_bytes / uniform_bytes
    result_json = {
        "image": str(args.image), "resolution": [width, height], "siren": vars(siren_config),
        "steps": args.steps, "fit_seconds": fit_seconds, "dense_params": dense_params,
        "float32_bytes": 4 * dense_params, "psnr_uncompressed": reference,
        "file_bytes": file_report.file_bytes, "bpp_sinr": 8 * file_report.file_bytes / pixels,
        "psnr_sinr": sinr_psnr, "ratio": result.report.ratio, "compress_seconds": result.seconds,
        "uniform": uniform_points, "uniform_bytes_at_sinr_psnr": uniform_bytes,
        "bpp_uniform_at_sinr_psnr": None if uniform_bytes is None else 8 * uniform_bytes / pixels,
        "saving": saving, "pipeline": result.to_dict(), "file": file_report.to_dict(),
    }
    save_image_row([image, sinr_image, uniform_images[shown["bits"]]],
                   ["original", f"SINR {sinr_psnr:.2f} dB, {result_json['bpp_sinr']:.2f} bpp",
                    f"uniform {shown['bits']}-bit {shown['psnr']:.2f} dB, {8 * shown['bytes'] / pixels:.2f} bpp"],
                   out / "comparison.png")
    (out / "report.json").write_text(json.dumps(result_json, indent=2, default=str))

    print("\nSINR file, per layer:")
    print(result.report.table())
    print(f"\nPSNR: fit {reference:.2f} dB, SINR file {sinr_psnr:.2f} dB (drop {reference - sinr_psnr:.2f} dB)")
    print(f"Size: {4 * dense_params} B float32 -> {file_report.file_bytes} B SINR file "
          f"({result.report.ratio:.2f}x, {result_json['bpp_sinr']:.2f} bpp)")
    if saving is None:
        print(f"Uniform quantization did not reach {sinr_psnr:.2f} dB at up to {UNIFORM_BITS[-1]} bits.")
    else:
        print(f"Uniform quantization at the same PSNR: {uniform_bytes:.0f} B "
              f"({result_json['bpp_uniform_at_sinr_psnr']:.2f} bpp).")
        print(f"SINR needs {100 * saving:.1f}% {'fewer' if saving >= 0 else 'MORE'} bytes than the best uniform "
              f"quantization at equal PSNR.")
    print(f"Wrote {path}, {out / 'comparison.png'} (original | SINR | uniform), {out / 'report.json'}")
    return result_json


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="torch-sinr demo", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
