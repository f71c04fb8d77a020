"""How much the bit-packed layout of quantized values costs under Brotli (a caveat of the Kodak benchmark's baseline).

Every uniform baseline file, and every SINR value stream, packs b-bit codes back to back
(``pack_uint``) before Brotli. Brotli models bytes, so codes that straddle byte boundaries (5, 6,
7, 9.. bits) hide their statistics from it. This measures, on the committed Kodak fits, the
Brotli-coded size of every weight tensor's uniform codes in three layouts:

- ``packed``: the layout the files use (b bits per code, MSB first);
- ``bytes``: one byte per code for b <= 8; for b > 8, a plane of high bytes then a plane of
  low bytes (``torch_sinr.format.codec.bitpack.byte_planes``);
- ``entropy``: the zero-order empirical entropy of the codes (a bound for any memoryless coder;
  Brotli's context modelling can go below it).

``python -m benchmarks.value_layout`` writes benchmarks/results/value_layout.{json,md,png}.
Where ``bytes`` is smaller, a baseline limited to ``packed`` would be weaker than it needs to be
and SINR's saving against it overstated; so the baseline files now take the smaller layout per
tensor (``torch_sinr.tune.baselines``). SINR's own value streams stay bit-packed (format v1): its
best Kodak points use 8-bit values, where the two layouts are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from benchmarks._common import DEFAULT_OUT, HelpFormatter, machine_info
from torch_sinr.format.codec import entropy
from torch_sinr.format.codec.bitpack import byte_planes, pack_uint
from torch_sinr.core.quantization import UniformQuantizer

FITS = Path(__file__).resolve().parent / "fits"
BITS = list(range(4, 17))


def entropy_bytes(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum() / 8)


def measure(fit_paths: list[Path]) -> dict:
    totals = {b: {"packed": 0, "bytes": 0, "entropy": 0.0} for b in BITS}
    for path in fit_paths:
        state = load_file(str(path))
        for name, tensor in state.items():
            if tensor.ndim != 2:  # weight matrices: what the quantized streams are made of
                continue
            for b in BITS:
                codes = UniformQuantizer.fit(tensor, b).quantize(tensor.reshape(-1).float()).numpy()
                totals[b]["packed"] += len(entropy.compress(pack_uint(codes, b)))
                totals[b]["bytes"] += len(entropy.compress(byte_planes(codes, b)))
                totals[b]["entropy"] += entropy_bytes(codes)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.value_layout", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--fits", type=Path, default=FITS,
                        help="folder of fitted Kodak SIRENs (kodim*-siren-LxW-*.safetensors, as benchmarks.kodak fit "
                             "writes them)")
    parser.add_argument("--configs", nargs="*", default=["2x32", "3x64", "3x128"],
                        help="LxW configurations whose fits are measured (one with no fits is skipped)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder value_layout.{json,md,png} go to")
    args = parser.parse_args(argv)
    if not args.fits.is_dir():
        raise SystemExit(f"no fitted INRs in {args.fits}: run python -m benchmarks.kodak fit first")
    results = {}
    for config in args.configs:
        paths = sorted(args.fits.glob(f"kodim*-siren-{config}-*.safetensors"))
        if not paths:
            continue
        totals = measure(paths)
        results[config] = {"fits": len(paths), "by_bits": {
            b: {**t, "bytes_vs_packed": t["bytes"] / t["packed"], "entropy_vs_packed": t["entropy"] / t["packed"]}
            for b, t in totals.items()}}
    result = {"name": "value_layout", "description": __doc__.strip().splitlines()[0],
              "machine": machine_info(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "value_layout.json").write_text(json.dumps(result, indent=1))
    lines = ["# Brotli size of uniform codes: bit-packed vs byte-aligned layout", "",
             "Weight matrices of the committed Kodak SIREN fits, summed per configuration; "
             "`python -m benchmarks.value_layout`.", "",
             "| config | fits | bits | packed (B) | byte-aligned (B) | byte-aligned / packed | entropy bound / packed |",
             "|---|---|---|---|---|---|---|"]
    for config, r in results.items():
        for b, t in r["by_bits"].items():
            lines.append(f"| {config} | {r['fits']} | {b} | {t['packed']} | {t['bytes']} | "
                         f"{t['bytes_vs_packed']:.3f} | {t['entropy_vs_packed']:.3f} |")
    (args.out / "value_layout.md").write_text("\n".join(lines) + "\n")
    plot(results, args.out / "value_layout.png")
    print("\n".join(lines))
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for config, r in results.items():
        bits = list(r["by_bits"])
        ax.plot(bits, [r["by_bits"][b]["bytes_vs_packed"] for b in bits], "o-", label=f"{config}: byte-aligned")
        ax.plot(bits, [r["by_bits"][b]["entropy_vs_packed"] for b in bits], "x--", label=f"{config}: entropy bound")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("bits per code")
    ax.set_ylabel("Brotli bytes relative to the bit-packed layout")
    ax.set_title("Uniform codes of Kodak SIREN weights: layout vs Brotli")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
