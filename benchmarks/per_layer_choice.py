"""``torch_sinr.compress`` with SINR, with the per-layer choice, and with SINR switched off.

``python -m benchmarks.per_layer_choice`` writes ``benchmarks/results/per_layer_choice.{json,md}``:
for each held-out Kodak image (default kodim13 and kodim14, which no setting of the library was
ever tuned on) and SIREN size, the Kodak benchmark's protocol fit (2000 steps at 1/4 scale) is
compressed to ``MaxDrop(drop)`` three times, with the same fine-tuning steps and the same search
(the bisection of ``compress`` over autotune's greedy moves); every float tensor the layers' coding
leaves (biases, the input layer) gets its own width from ``DENSE_BITS`` in all three:

* ``sinr``: every target linear SINR-coded (``uniform_bits=()``);
* ``choice``: each target linear SINR-coded or on a uniform grid of ``UNIFORM_BITS``, whichever the
  search finds cheaper per unit of PSNR;
* ``uniform``: SINR switched off (``sinr=False``): mixed-precision uniform quantization, bits per
  tensor, fine-tuned: the baseline.

Each file is written and decoded into a fresh model: bytes are the file's, PSNR the reloaded
file's; the coding each layer got, the probes and the wall time are recorded. Each run is cached
(``--cache``), so an interrupted benchmark resumes. Wall time is this machine's, CPU model recorded.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import tempfile
import time
from pathlib import Path

from benchmarks import kodak
from benchmarks._common import HelpFormatter, cpu_model, md_table, write_results
from torch_sinr import MaxDrop, compress, load_compressed, save_compressed
from torch_sinr.inr.models import INR, image_loss, psnr, render
from torch_sinr.nn.layer import SINRLinear

NAME = "per_layer_choice"
OUT = kodak.REPO / "benchmarks" / "results"
CACHE = kodak.REPO / "benchmarks" / "cache" / "per_layer_choice"
UNIFORM_BITS = (12, 10, 9, 8, 7, 6, 5, 4)
DENSE_BITS = (16, 14, 12, 10, 9, 8, 7, 6)
VARIANTS = {"sinr": {"uniform_bits": (), "dense_bits": DENSE_BITS},
            "choice": {"uniform_bits": UNIFORM_BITS, "dense_bits": DENSE_BITS},
            "uniform": {"uniform_bits": UNIFORM_BITS, "dense_bits": DENSE_BITS, "sinr": False}}


def run_one(image_name: str, layers: int, width: int, drop: float, steps: int, cache: Path) -> dict:
    config = kodak.inr_config(layers, width)
    model, image = kodak.kodak_fit(image_name, layers, width)
    height, width_px = image.shape[1:]
    evaluate = lambda m: psnr(render(m, height, width_px), image)  # noqa: E731
    reference = evaluate(model)
    record = {"image": image_name, "config": f"{layers}x{width}", "psnr_fit": reference, "pixels": height * width_px,
              "runs": {}}
    for label, search in VARIANTS.items():
        key = json.dumps([image_name, layers, width, drop, steps, label, {k: list(v) if isinstance(v, tuple) else v
                                                                        for k, v in search.items()}])
        cached = cache / f"{image_name}-{layers}x{width}-{label}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
        if cached.exists():
            record["runs"][label] = json.loads(cached.read_text())
            continue
        work = copy.deepcopy(model)
        started = time.perf_counter()
        result = compress(work, image_loss(image), evaluate=evaluate, target=MaxDrop(drop), steps=steps,
                          progress=False, **search)
        seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{label}.safetensors"
            size = save_compressed(work, path).file_bytes
            reloaded = evaluate(load_compressed(path, INR(config)).eval())
        coded = {layer.name for layer in result.report.layers}
        codings = {name: "sinr" for name in coded}
        codings.update({name: "uniform" for name in _excluded(result.config) if name not in coded})
        assert all(isinstance(work.get_submodule(n), SINRLinear) == (c == "sinr") for n, c in codings.items())
        run = {"bytes": size, "bpp": 8 * size / record["pixels"], "psnr_reloaded": reloaded,
               "drop": reference - reloaded, "met": reloaded >= reference - drop, "seconds": seconds,
               "probes": len(result.probes), "finetune_steps": result.finetune_steps, "codings": codings,
               "dense_bits_pattern": result.config.dense_bits_pattern,
               "search": {k: list(v) if isinstance(v, tuple) else v for k, v in search.items()}}
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(run, indent=1))
        record["runs"][label] = run
        print(f"{image_name} {layers}x{width} {label}: {size} B, {reloaded:.2f} dB (fit {reference:.2f}), "
              f"{seconds:.0f} s, {codings}", flush=True)
    base = record["runs"]["uniform"]["bytes"]
    record["saving_vs_uniform"] = {label: 1 - run["bytes"] / base for label, run in record["runs"].items()
                                   if label != "uniform"}
    return record


def _excluded(config) -> list[str]:
    """Names of the layers the choice coded uniformly (exact-name regexes in exclude_modules)."""
    import re

    patterns = config.exclude_modules or []
    return [re.sub(r"\\(.)", r"\1", p[3:]) for p in ([patterns] if isinstance(patterns, str) else patterns)
            if p.startswith("re:")]


def markdown(results: dict) -> str:
    p = results["protocol"]
    rows = []
    for r in results["records"]:
        runs = r["runs"]
        cells = [f"{runs[v]['bytes']} / {runs[v]['psnr_reloaded']:.2f}" for v in VARIANTS]
        uniform = sorted(n for n, k in runs["choice"]["codings"].items() if k == "uniform")
        rows.append([r["image"], r["config"], f"{r['psnr_fit']:.2f}", *cells,
                     f"{100 * r['saving_vs_uniform']['sinr']:.1f}%", f"{100 * r['saving_vs_uniform']['choice']:.1f}%",
                     ", ".join(uniform) or "none", " / ".join(f"{runs[v]['seconds']:.0f}" for v in VARIANTS),
                     " / ".join(str(runs[v]["probes"]) for v in VARIANTS)])
    return "\n".join([
        "# SINR, the per-layer choice and mixed-precision uniform quantization in `torch_sinr.compress`", "",
        f"Generated by `python -m benchmarks.per_layer_choice`. Held-out Kodak images ({p['held_out']}), the Kodak "
        f"protocol's fits; `compress(target=MaxDrop({p['drop']}), steps={p['steps']})`, the same search and "
        f"fine-tuning for all three; dense tensors (biases, input layer) get widths from `dense_bits={DENSE_BITS}` "
        f"in all three. **sinr**: every target linear SINR-coded; **choice**: SINR or a uniform grid of "
        f"`uniform_bits={UNIFORM_BITS}` per layer; **uniform**: `sinr=False`, mixed-precision uniform "
        f"quantization, the baseline. Bytes of the file written, PSNR of the file decoded; a saving is "
        f"1 - bytes / the uniform baseline's bytes, each file meeting the same target (their PSNRs differ by "
        f"what the table shows). CPU: {p['cpu']}.", "",
        md_table(["image", "SIREN", "fit (dB)", "sinr: B / dB", "choice: B / dB", "uniform (baseline): B / dB",
                  "sinr saves", "choice saves", "layers the choice coded uniformly", "wall s (s / c / u)",
                  "probes (s / c / u)"], rows), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_layer_choice", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--images", nargs="+", default=["kodim13", "kodim14"],
                        help="Kodak images (file stems), held out from every choice the library made")
    parser.add_argument("--configs", nargs="+", default=["3x64", "3x128"], help="SIREN sizes LxW (the Kodak protocol's fits)")
    parser.add_argument("--drop", type=float, default=0.5, help="PSNR drop (dB) allowed by the MaxDrop target")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of each compress call")
    parser.add_argument("--out", type=Path, default=OUT, help="folder per_layer_choice.{json,md} go to")
    parser.add_argument("--cache", type=Path, default=CACHE, help="folder of finished runs (a rerun resumes)")
    args = parser.parse_args(argv)
    if not kodak.DEFAULT_KODAK.is_dir():
        parser.error(f"Kodak images not found at {kodak.DEFAULT_KODAK} (the repo expects ../shared/data/kodak)")
    records = []
    for config in args.configs:
        layers, width = (int(v) for v in config.split("x"))
        for image in args.images:
            records.append(run_one(image, layers, width, args.drop, args.steps, args.cache))
    results = {"protocol": {"drop": args.drop, "steps": args.steps, "uniform_bits": list(UNIFORM_BITS),
                            "dense_bits": list(DENSE_BITS),
                            "images": args.images, "configs": args.configs, "cpu": cpu_model(),
                            "held_out": "kodim13-24 were never used to choose a setting"},
               "records": records}
    write_results(args.out, NAME, __doc__.split("\n\n")[0], results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
