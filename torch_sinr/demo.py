"""The built-in main job: does SINR save bits on a SIREN, against the best uniform quantization?

``torch-sinr demo`` (no arguments, a few minutes on 2 CPU cores: one fit and compress's four searches):

1. fits a SIREN to a bundled Kodak image;
2. compresses it with ``torch_sinr.compress`` (autotune + fine-tuning to within ``--max-drop``
   dB of the fit), writes the file and decodes it into a fresh model;
3. shows the uniform files a user could have made instead, which ``compress``'s guard made with
   the same fine-tuning steps and learning rate, in the same container and entropy coder:
   mixed precision (the same search with SINR switched off) and one width for every tensor; the
   file ``compress`` kept is the smallest within the target of them, SINR's per-layer choice and
   SINR on every layer;
4. prints the saving against the best uniform file and writes ``comparison.png`` (original |
   the file | the best uniform file, or SINR's when a uniform file was kept), the file and
   ``report.json`` into ``sinr_demo/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from .format import load_compressed, save_compressed
from .inr.images import DEFAULT_IMAGE, load_image, save_image_row
from .inr.models import Siren, SirenConfig, fit_image, image_loss, psnr, render
from .tune.autotune import MaxDrop
from .tune.pipeline import UNIFORM_CANDIDATES, compress

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="PNG/JPEG to fit (default: the bundled kodim23)")
    # The defaults (a 2x64 SIREN on the image at 153x102) keep the run to a few minutes on 2 cores.
    # Measured on this machine when choosing them (compress with one search, before the guard):
    # 3x64 at 192x128 took 2 min 10 s (14.1% saving), 3x64 at 128x85 58 s (8.4%, 10.7 bpp: a
    # network larger than its image), 2x64 at 153x102 62 s (11.3%, 4.6 bpp). With the guard's four
    # searches, 2x64 at 153x102: 207 s, and mixed precision was kept (7,654 B against SINR's 8,263 B).
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

    # The guard inside compress made the uniform files a user could have, with the same fine-tuning
    # (mixed precision: the same search with SINR off; one width for every tensor): the fair
    # baselines; and the search's file with SINR on every layer.
    entries = result.baseline["candidates"]
    floor = reference - args.max_drop
    within = {name: e for name, e in entries.items() if e["score"] >= floor}
    uniform = {name: e for name, e in within.items() if name in UNIFORM_CANDIDATES}
    sinr_files = {name: e for name, e in within.items() if name not in UNIFORM_CANDIDATES}
    print(f"3. Candidates (made by compress's guard, the same {args.finetune_steps} fine-tuning steps, container "
          f"and entropy coder), within {args.max_drop:g} dB:")
    for name, entry in entries.items():
        kept = "  <- kept" if name == result.baseline["kept"] else ""
        print(f"   {_label(name):32s} {entry['file_bytes']:7d} B, {entry['score']:.2f} dB{kept}")
    for name, why in result.baseline["skipped"].items():
        print(f"   {_label(name)}: none ({why})")
    best_name = min(uniform, key=lambda n: uniform[n]["file_bytes"]) if uniform else None
    uniform_bytes = uniform[best_name]["file_bytes"] if best_name else None
    saving = None if uniform_bytes is None else 1 - file_report.file_bytes / uniform_bytes
    kept_uniform = result.baseline["kept"] in UNIFORM_CANDIDATES
    # the third tile: the best uniform file, or SINR's best when a uniform file was kept (it is the second)
    pool = sinr_files if kept_uniform else uniform
    other = min(pool, key=lambda n: pool[n]["file_bytes"]) if pool else None
    shown = result.candidates.get(other) if other else None
    other_image = render(shown, height, width) if shown is not None else torch.zeros_like(image)
    other_label = "no uniform file met the target" if other is None else (
        f"{_label(other)} {entries[other]['score']:.2f} dB, {8 * entries[other]['file_bytes'] / pixels:.2f} bpp")

    result_json = {
        "image": str(args.image), "resolution": [width, height], "siren": vars(siren_config),
        "steps": args.steps, "fit_seconds": fit_seconds, "dense_params": dense_params,
        "float32_bytes": 4 * dense_params, "psnr_uncompressed": reference,
        "file_bytes": file_report.file_bytes, "bpp_sinr": 8 * file_report.file_bytes / pixels,
        "psnr_sinr": sinr_psnr, "ratio": result.report.ratio, "compress_seconds": result.seconds,
        "kept": result.baseline["kept"], "candidates": entries, "best_uniform": best_name,
        "uniform_bytes": uniform_bytes, "saving_vs_best_uniform": saving,
        "pipeline": result.to_dict(), "file": file_report.to_dict(),
    }
    save_image_row([image, sinr_image, other_image],
                   ["original",
                    f"kept ({result.baseline['kept']}) {sinr_psnr:.2f} dB, {result_json['bpp_sinr']:.2f} bpp",
                    other_label],
                   out / "comparison.png")
    (out / "report.json").write_text(json.dumps(result_json, indent=2, default=str))

    print("\nThe file compress kept, per layer:")
    print(result.report.table())
    print(f"\nPSNR: fit {reference:.2f} dB, the file {sinr_psnr:.2f} dB (drop {reference - sinr_psnr:.2f} dB)")
    print(f"Size: {4 * dense_params} B float32 -> {file_report.file_bytes} B file "
          f"({result.report.ratio:.2f}x, {result_json['bpp_sinr']:.2f} bpp)")
    if saving is None:
        print(f"No uniform file met the target: the file is SINR's ({_label(result.baseline['kept'])}).")
    elif not kept_uniform:
        print(f"The file ({_label(result.baseline['kept'])}) is {100 * saving:.1f}% smaller than the best uniform "
              f"file ({best_name}, {uniform_bytes} B) with the same fine-tuning, within the same {args.max_drop:g} dB.")
    else:
        lost = ", ".join(f"{_label(n)} {e['file_bytes']} B" for n, e in sinr_files.items()) or "none met the target"
        print(f"Here uniform quantization ({result.baseline['kept']}) beat SINR's files ({lost}), so compress kept "
              f"the uniform file.")
    print(f"Wrote {path}, {out / 'comparison.png'} (original | the file | the runner-up), {out / 'report.json'}")
    return result_json


def _label(candidate: str) -> str:
    """How the demo names one of compress's candidate files."""
    if candidate == "search":
        return "SINR / per-layer choice"
    return f"uniform, {candidate}" if candidate in UNIFORM_CANDIDATES else candidate


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="torch-sinr demo", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
