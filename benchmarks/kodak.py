"""Kodak INR benchmark (issue 3).

Step 1, fitting: ``python -m benchmarks.kodak fit``. Step 2, compressing every fitted INR with
SINR and the baselines: ``python -m benchmarks.kodak compress --configs C1`` (JSON + markdown +
PNG rate-distortion plot in benchmarks/results/). Every bpp is counted from the bytes of the
file actually written (header included); every PSNR from what that file decodes to.

Reduced CPU protocol (documented in PROTOCOL): images box-downscaled by 4 (192x128 / 128x192),
SIREN (w0 = 30), full-batch Adam at lr 1e-3 with cosine decay, 2000 steps, seed 0, best-PSNR
weights kept. Paper configurations (hidden layers, width): C1 = (2,32), (3,64), (3,128);
C2 = (3,64), (5,64), (7,64). Fitted models are cached in benchmarks/fits/ (committed), keyed by
image hash, config and protocol, so compression experiments only compress. ``--downscale 1``
with a larger ``--steps`` is the full-resolution mode for a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from torch_sinr import SINRConfig, compress_model
from torch_sinr.baselines import (finetune_uniform, read_baseline, write_cast, write_low_rank, write_pruned,
                                  write_uniform)
from torch_sinr.datasets import kodak_paths
from torch_sinr.finetune import finetune_codes
from torch_sinr.fitting import cache_path, fit_cached, fit_key
from torch_sinr.images import load_image
from torch_sinr.inr import INR, INRConfig, image_loss, psnr, render
from torch_sinr.serialization import load_compressed, save_compressed
from torch_sinr.sparsity import auto_sparsity

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KODAK = REPO.parent / "shared" / "data" / "kodak"
FITS = REPO / "benchmarks" / "fits"
EVALS = REPO / "benchmarks" / "evals"  # per-image evaluation results: reruns and interrupted runs resume
EVAL_VERSION = 2  # bump when evaluate() changes what it measures
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


# ----------------------------------------------------------------------------- compression
def evaluate(model: INR, image: torch.Tensor, ft_steps: int, ft_bits: list[int], workdir: Path) -> list[dict]:
    """Every method on one fitted INR: bpp from the file written, PSNR from the file decoded."""
    config, (height, width) = model.config, image.shape[1:]
    pixels = height * width
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loss = image_loss(image)
    points: list[dict] = []

    def from_state(decoded: dict) -> float:
        plain = INR(config)
        plain.load_state_dict(decoded)
        return psnr(render(plain.eval(), height, width), image)

    def baseline(method: str, setting, size: int, path: Path) -> None:
        points.append({"method": method, "setting": setting, "bytes": size, "bpp": 8 * size / pixels,
                       "psnr": from_state(read_baseline(path))})

    path = workdir / "b.safetensors"
    for dtype in ("float32", "float16"):
        baseline(dtype, dtype, write_cast(state, path, dtype), path)
    for bits in range(6, 17):
        baseline("uniform", bits, write_uniform(state, path, bits), path)
    for bits in ft_bits:
        tuned = copy.deepcopy(model)
        ft_state, grids = finetune_uniform(tuned, loss, bits, ft_steps)
        baseline("uniform+ft", bits, write_uniform(ft_state, path, bits, grids), path)
    # The coordinate input layer stays as it is for every method that changes layers, as in SINR.
    is_input = lambda name: name == "net.0.weight"  # noqa: E731
    s = auto_sparsity(config.hidden_features)
    for keep in (0.25, 0.5):
        baseline("prune", keep, write_pruned(state, path, keep, 10, skip=is_input), path)
    # Low rank at SINR's parameter count (values + indices) for a square hidden layer: 2s(out) = k(out + in).
    baseline("low_rank", s, write_low_rank(state, path, s, skip=is_input), path)

    def sinr(method: str, setting, cfg: SINRConfig, steps: int) -> None:
        compressed = copy.deepcopy(model)
        compress_model(compressed, cfg)
        if steps:
            finetune_codes(compressed, loss, steps, lr=1e-4)
        file = workdir / "s.safetensors"
        size = save_compressed(compressed, file).file_bytes
        decoded = load_compressed(file, INR(config)).eval()
        points.append({"method": method, "setting": setting, "bytes": size, "bpp": 8 * size / pixels,
                       "psnr": psnr(render(decoded, height, width), image)})

    sinr("sinr-paper", 16, SINRConfig(), 0)
    for bits in ft_bits:
        sinr("sinr+ft", bits, SINRConfig(value_bits=bits), ft_steps)
    return points


def _interpolate_bpp(curve: list[tuple[float, float]], target_psnr: float) -> float | None:
    """bpp a baseline needs for ``target_psnr``, linear along its (psnr, bpp) points; None outside its range."""
    pts = sorted(curve)
    for (p0, b0), (p1, b1) in zip(pts, pts[1:]):
        if p0 <= target_psnr <= p1 and p1 > p0:
            return b0 + (b1 - b0) * (target_psnr - p0) / (p1 - p0)
    return None


def summarize(records: list[dict]) -> dict:
    by_config: dict[str, dict] = {}
    for r in records:
        cfg = by_config.setdefault(r["config"], {})
        for p in r["points"]:
            key = (p["method"], str(p["setting"]))
            cfg.setdefault(key, []).append(p)
    summary = {}
    for name, methods in by_config.items():
        mean = {f"{m}@{s}": {"method": m, "setting": s, "images": len(v),
                             "bpp": sum(p["bpp"] for p in v) / len(v), "psnr": sum(p["psnr"] for p in v) / len(v)}
                for (m, s), v in methods.items()}
        rows = list(mean.values())
        u16, paper = mean.get("uniform@16"), mean.get("sinr-paper@16")
        baselines = [(r["psnr"], r["bpp"]) for r in rows if r["method"] in ("uniform", "uniform+ft", "float16")]
        best_pairs = []
        for r in rows:
            if r["method"] == "sinr+ft":
                need = _interpolate_bpp(baselines, r["psnr"])
                best_pairs.append({"setting": r["setting"], "psnr": r["psnr"], "bpp": r["bpp"], "baseline_bpp": need,
                                   "saving": None if need is None else 1 - r["bpp"] / need})
        summary[name] = {"mean": mean, "paper_vs_uniform16": None if not (u16 and paper) else {
            "sinr_bpp": paper["bpp"], "uniform16_bpp": paper and u16["bpp"], "bpp_ratio": paper["bpp"] / u16["bpp"],
            "psnr_drop_vs_uniform16": u16["psnr"] - paper["psnr"]}, "sinr_ft_vs_best_baseline": best_pairs}
    return summary


def markdown(summary: dict, protocol: dict) -> str:
    lines = ["# Kodak: SINR vs baselines", "",
             f"Protocol: {json.dumps(protocol)}. bpp from the bytes of each written file (header included); "
             "PSNR of the decoded file, mean over the images listed.", ""]
    for name, s in summary.items():
        lines += [f"## {name}", "", "| method | setting | images | bpp | PSNR (dB) |", "|---|---|---|---|---|"]
        for r in sorted(s["mean"].values(), key=lambda r: (r["method"], r["bpp"])):
            lines.append(f"| {r['method']} | {r['setting']} | {r['images']} | {r['bpp']:.3f} | {r['psnr']:.2f} |")
        p = s["paper_vs_uniform16"]
        if p:
            lines += ["", f"SINR at paper settings: {p['sinr_bpp']:.3f} bpp vs 16-bit uniform + Brotli "
                          f"{p['uniform16_bpp']:.3f} bpp (ratio {p['bpp_ratio']:.2f}), PSNR "
                          f"{p['psnr_drop_vs_uniform16']:.2f} dB lower."]
        lines += ["", "| SINR+ft value bits | PSNR | bpp | best baseline bpp at equal PSNR | saving |", "|---|---|---|---|---|"]
        for b in s["sinr_ft_vs_best_baseline"]:
            need = "outside baseline range" if b["baseline_bpp"] is None else f"{b['baseline_bpp']:.3f}"
            saving = "-" if b["saving"] is None else f"{100 * b['saving']:.1f}%"
            lines.append(f"| {b['setting']} | {b['psnr']:.2f} | {b['bpp']:.3f} | {need} | {saving} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.8), squeeze=False)
    for ax, (name, s) in zip(axes[0], summary.items()):
        groups: dict[str, list] = {}
        for r in s["mean"].values():
            groups.setdefault(r["method"], []).append((r["bpp"], r["psnr"]))
        for method, pts in sorted(groups.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", label=method, ms=4)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (file bytes)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(name)
        ax.grid(True, which="both", color="0.9")
        ax.legend(fontsize=7)
    fig.suptitle("SINR vs baselines on Kodak (reduced protocol; means over images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compress_all(kodak_dir: Path, configs, images, steps, downscale, cache_dir, ft_steps, ft_bits, out: Path, tag: str,
                 evals_dir: Path = EVALS) -> dict:
    paths = kodak_paths(kodak_dir)
    if images:
        paths = [p for p in paths if p.stem in images or p.name in images]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers, width in configs:
            for path in tqdm(paths, desc=f"{layers}x{width}", unit="image"):
                config = inr_config(layers, width)
                key = fit_key(path, config, steps, PROTOCOL["seed"], PROTOCOL["lr"], downscale)
                eval_file = evals_dir / (cache_path(cache_dir, key).stem + f"-ft{ft_steps}-b{'_'.join(map(str, ft_bits))}"
                                         f"-v{EVAL_VERSION}.json")
                if eval_file.is_file():
                    records.append(json.loads(eval_file.read_text()))
                    continue
                model, record = fit_cached(path, config, steps, cache_dir=cache_dir, seed=PROTOCOL["seed"],
                                           lr=PROTOCOL["lr"], downscale=downscale, progress=False)
                started = time.perf_counter()
                points = evaluate(model, load_image(path, downscale), ft_steps, ft_bits, Path(tmp))
                records.append({"image": path.name, "config": f"{layers}x{width}", "fit_psnr": record["psnr"],
                                "seconds": time.perf_counter() - started, "points": points})
                evals_dir.mkdir(parents=True, exist_ok=True)
                eval_file.write_text(json.dumps(records[-1]))
    protocol = dict(PROTOCOL, steps=steps, downscale=downscale, finetune_steps=ft_steps, finetune_bits=ft_bits,
                    images=[p.name for p in paths])
    summary = summarize(records)
    result = {"name": f"kodak_{tag}", "description": __doc__.strip().splitlines()[0], "protocol": protocol,
              "results": {"records": records, "summary": {k: {**v, "mean": list(v["mean"].values())}
                                                          for k, v in summary.items()}}}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kodak_{tag}.json").write_text(json.dumps(result, indent=1))
    (out / f"kodak_{tag}.md").write_text(markdown(summary, protocol))
    plot(summary, out / f"kodak_{tag}.png")
    print(markdown(summary, protocol))
    return result


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
    comp = sub.add_parser("compress", help="compress every fitted INR with SINR and the baselines")
    comp.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    comp.add_argument("--configs", nargs="*", default=["C1"])
    comp.add_argument("--images", nargs="*")
    comp.add_argument("--steps", type=int, default=PROTOCOL["steps"], help="fitting steps (selects cached fits)")
    comp.add_argument("--downscale", type=int, default=PROTOCOL["downscale"])
    comp.add_argument("--cache", type=Path, default=FITS)
    comp.add_argument("--finetune-steps", type=int, default=300)
    comp.add_argument("--finetune-bits", type=int, nargs="*", default=[6, 8, 10])
    comp.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    comp.add_argument("--tag", default="C1", help="result file name: kodak_TAG.{json,md,png}")
    comp.add_argument("--evals", type=Path, default=EVALS, help="per-image evaluation cache")
    args = parser.parse_args(argv)
    configs: list[tuple[int, int]] = []
    for c in args.configs:
        entries = CONFIGS[c] if c in CONFIGS else [tuple(int(v) for v in c.split("x"))]
        configs += [e for e in entries if e not in configs]
    if args.command == "compress":
        compress_all(args.kodak, configs, args.images, args.steps, args.downscale, args.cache, args.finetune_steps,
                     args.finetune_bits, args.out, args.tag, args.evals)
        return 0
    records = fit_all(args.kodak, configs, args.images, args.steps, args.downscale, args.cache)
    summary = {f"{r['key']['image']} {r['key']['config']['hidden_layers']}x{r['key']['config']['hidden_features']}":
               r["psnr"] for r in records}
    print(json.dumps({"fits": len(records), "mean_psnr": sum(summary.values()) / max(1, len(summary))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
