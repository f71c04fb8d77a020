"""``torch_sinr.compress`` with SINR, with the per-layer choice, and with SINR switched off.

``python -m benchmarks.per_layer_choice`` writes ``benchmarks/results/per_layer_choice.{json,md}``:
for each held-out Kodak image (default kodim13 and kodim14, on which no setting of ``compress`` was
chosen; see the protocol's ``held_out``) and SIREN size, the Kodak benchmark's protocol fit (2000 steps at 1/4 scale) is
compressed to ``MaxDrop(drop)`` (each of ``--drops``) three times, with the same fine-tuning steps and the same search
(the bisection of ``compress`` over autotune's greedy moves); every float tensor the layers' coding
leaves (biases, the input layer) gets its own width from ``DENSE_BITS`` in all three:

* ``sinr``: every target linear SINR-coded (``uniform_bits=()``);
* ``choice``: each target linear SINR-coded or on a uniform grid of ``UNIFORM_BITS``, whichever the
  search finds cheaper per unit of PSNR;
* ``uniform``: SINR switched off (``sinr=False``): mixed-precision uniform quantization, bits per
  tensor, fine-tuned: a baseline;
* ``one_width``: one grid width for every tensor, fine-tuned with the same steps (the narrowest
  width of ``ONE_WIDTH_BITS`` (both menus) that meets the target, ``torch_sinr.tune.guard.one_width``): a
  baseline;
* ``pruned``: fine-tuned magnitude pruning + quantization (``tune.baselines.finetune_pruned``) of the
  linears SINR codes, at each density of ``PRUNE_KEEP`` (from SINR's s-ratio menu), positions coded
  like SINR's indices; the smallest file meeting the target: the third baseline.

Each search runs with ``guard=False``: the benchmark measures each coding on its own. The default
``compress`` (the guard) keeps the best of ``choice``, ``uniform`` and ``one_width``.

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
import sys
import time
from pathlib import Path

import torch

from benchmarks import kodak
from benchmarks._common import HelpFormatter, cpu_model, md_table, write_results
from torch_sinr import MaxDrop, SINRError, compress, load_compressed, save_compressed
from torch_sinr.inr.models import INR, image_loss, psnr, render
from torch_sinr.nn.layer import SINRLinear
from torch_sinr.tune.baselines import finetune_pruned, read_baseline, write_pruned
from torch_sinr.tune.guard import one_width
from torch_sinr.tune.pipeline import PIPELINE_CONFIG

NAME = "per_layer_choice"
OUT = kodak.REPO / "benchmarks" / "results"
CACHE = kodak.REPO / "benchmarks" / "cache" / "per_layer_choice"
UNIFORM_BITS = (12, 10, 9, 8, 7, 6, 5, 4)
DENSE_BITS = (16, 14, 12, 10, 9, 8, 7, 6)
ONE_WIDTH_BITS = tuple(sorted(set(UNIFORM_BITS) | set(DENSE_BITS), reverse=True))  # as compress's guard takes them
BASELINES = ("uniform", "one_width", "pruned")  # the files a user could make instead
PRUNE_KEEP = (0.45, 0.35, 0.25, 0.15)  # densities from SINR's s-ratio menu (autotune.DEFAULT_S_RATIOS)
VARIANTS = {"sinr": {"uniform_bits": (), "dense_bits": DENSE_BITS},
            "choice": {"uniform_bits": UNIFORM_BITS, "dense_bits": DENSE_BITS},
            "uniform": {"uniform_bits": UNIFORM_BITS, "dense_bits": DENSE_BITS, "sinr": False}}


def run_one(image_name: str, layers: int, width: int, drop: float, steps: int, cache: Path,
            cached_only: bool = False) -> dict | None:
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
        cached = _cache_file(cache, f"{image_name}-{layers}x{width}-{label}", key)
        if cached.exists():
            record["runs"][label] = json.loads(cached.read_text())
            continue
        if cached_only:
            return None
        work = copy.deepcopy(model)
        started = time.perf_counter()
        result = compress(work, image_loss(image), evaluate=evaluate, target=MaxDrop(drop), steps=steps,
                          progress=False, guard=False, **search)
        seconds = time.perf_counter() - started
        size, reloaded = _file(work, config, evaluate, label)
        coded = {layer.name for layer in result.report.layers}
        codings = {name: "sinr" for name in coded}
        codings.update({name: "uniform" for name in _excluded(result.config) if name not in coded})
        assert all(isinstance(work.get_submodule(n), SINRLinear) == (c == "sinr") for n, c in codings.items())
        run = {"bytes": size, "bpp": 8 * size / record["pixels"], "psnr_reloaded": reloaded,
               "drop": reference - reloaded, "met": reloaded >= reference - drop, "seconds": seconds,
               "probes": len(result.probes), "finetune_steps": result.finetune_steps, "codings": codings,
               "dense_bits_pattern": result.config.dense_bits_pattern,
               "search": {k: list(v) if isinstance(v, tuple) else v for k, v in search.items()}}
        _store(cached, run)
        record["runs"][label] = run
        print(f"{image_name} {layers}x{width} {label}: {size} B, {reloaded:.2f} dB (fit {reference:.2f}), "
              f"{seconds:.0f} s, {codings}", flush=True)
    record["runs"]["one_width"] = _one_width_run(model, image, image_name, layers, width, drop, steps, cache, evaluate,
                                                 reference, config, cached_only)
    if record["runs"]["one_width"] is None:
        return None
    record["runs"]["pruned"] = _pruned_run(model, image, image_name, layers, width, drop, steps, cache, evaluate,
                                           reference, cached_only)
    if record["runs"]["pruned"] is None:
        return None
    base = record["runs"]["uniform"]["bytes"]
    record["saving_vs_uniform"] = {label: 1 - run["bytes"] / base for label, run in record["runs"].items()
                                   if label in VARIANTS and label != "uniform"}
    best = min(record["runs"][label]["bytes"] for label in BASELINES if record["runs"][label]["met"])
    record["best_baseline"] = min((label for label in BASELINES if record["runs"][label]["met"]),
                                  key=lambda label: record["runs"][label]["bytes"])
    record["best_baseline_bytes"] = best
    record["saving_vs_best_baseline"] = {label: 1 - record["runs"][label]["bytes"] / best
                                         for label in ("sinr", "choice")}
    return record


def _cache_file(cache: Path, stem: str, key: str) -> Path:
    """Where one finished run is cached: its stem and a hash of everything that defines it."""
    return cache / f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def _store(cached: Path, run: dict) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(run, indent=1))


def _file(model, config, evaluate, label: str) -> tuple[int, float]:
    """Bytes of ``model``'s file and the PSNR of the file decoded into a fresh model."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{label}.safetensors"
        size = save_compressed(model, path).file_bytes
        return size, evaluate(load_compressed(path, INR(config)).eval())


def _cached_run(cache: Path, stem: str, key: list, cached_only: bool, make) -> dict | None:
    """The cached record of one baseline run, else ``make()``'s (stored); None if ``cached_only``."""
    cached = _cache_file(cache, stem, json.dumps(key))
    if cached.exists():
        return json.loads(cached.read_text())
    if cached_only:
        return None
    run = make()
    _store(cached, run)
    return run


def _one_width_run(model, image, image_name, layers, width, drop, steps, cache: Path, evaluate, reference,
                   config, cached_only: bool = False) -> dict | None:
    """The one-width baseline: every tensor on one grid, the narrowest meeting the drop after the
    same fine-tuning steps (what compress's guard makes)."""
    def make() -> dict:
        started = time.perf_counter()
        try:
            work, cfg, used, _ = one_width(model, image_loss(image), lambda m: _no_grad(evaluate, m), MaxDrop(drop),
                                           reference, ONE_WIDTH_BITS, steps, 1e-3, None, PIPELINE_CONFIG)
        except SINRError as error:  # no width meets the drop: this baseline has no file here
            run = {"bytes": None, "psnr_reloaded": None, "met": False, "seconds": time.perf_counter() - started,
                   "bits": None, "why": str(error)}
        else:
            seconds = time.perf_counter() - started
            size, reloaded = _file(work, config, evaluate, "one_width")
            run = {"bytes": size, "bpp": 8 * size / (image.shape[1] * image.shape[2]), "psnr_reloaded": reloaded,
                   "drop": reference - reloaded, "met": reloaded >= reference - drop, "seconds": seconds,
                   "bits": sorted(set(cfg.dense_bits_pattern.values())), "finetune_steps": used}
        print(f"{image_name} {layers}x{width} one_width: {run['bytes']} B, {run['psnr_reloaded']} dB, "
              f"{run['bits']} bits, {run['seconds']:.0f} s", flush=True)
        return run

    return _cached_run(cache, f"{image_name}-{layers}x{width}-one_width",
                       [image_name, layers, width, drop, steps, "one_width", list(ONE_WIDTH_BITS)], cached_only, make)


def _pruned_run(model, image, image_name, layers, width, drop, steps, cache: Path, evaluate, reference,
                cached_only: bool = False) -> dict | None:
    """The pruning baseline: magnitude pruning of every linear SINR codes (the input layer stays
    dense, as SINR leaves it) at each density of SINR's menu ``PRUNE_KEEP``, kept values and every
    other tensor on one grid, fine-tuned with the same steps and learning rate as one width
    (``finetune_pruned``); per density the narrowest width meeting the drop (the walk of one width:
    from two below the narrowest that plain rounding meets; the widest alone where rounding meets
    at none), densest first, stopping at the first density that no width meets; the smallest file
    of all densities."""
    def make() -> dict:
        started = time.perf_counter()
        loss, skip = image_loss(image), lambda n: n == "net.0.weight"
        tried, best = [], None
        with tempfile.TemporaryDirectory() as tmp:
            def file_of(state, keep, bits, plan=None) -> tuple[int, float]:
                path = Path(tmp) / "pruned.safetensors"
                size = write_pruned(state, path, keep, bits, skip=skip, plan=plan)
                work = copy.deepcopy(model)
                work.load_state_dict(read_baseline(path))
                return size, _no_grad(evaluate, work)

            state = {n: p.detach() for n, p in model.named_parameters()}
            widths = sorted(ONE_WIDTH_BITS)
            for keep in PRUNE_KEEP:  # densest first
                met = [b for b in widths if file_of(state, keep, b)[1] >= reference - drop]
                # where rounding alone meets the drop, one width's walk; where it does not, the widest
                # width once: if even that misses after fine-tuning, sparser densities will too
                walk = widths[max(0, widths.index(met[0]) - 2):] if met else widths[-1:]
                for bits in walk:
                    tuned, plan = finetune_pruned(copy.deepcopy(model), loss, keep, bits, steps, lr=1e-3, skip=skip)
                    size, score = file_of(tuned, keep, bits, plan)
                    tried.append({"keep": keep, "bits": bits, "bytes": size, "psnr_reloaded": score})
                    if score >= reference - drop:
                        if best is None or size < best["bytes"]:
                            best = tried[-1]
                        break
                if not tried or tried[-1]["psnr_reloaded"] < reference - drop:
                    break
        seconds = time.perf_counter() - started
        if best is None:
            run = {"bytes": None, "psnr_reloaded": None, "met": False, "seconds": seconds, "tried": tried,
                   "why": f"no density of {PRUNE_KEEP} and width of {ONE_WIDTH_BITS} met the drop"}
        else:
            run = {**best, "bpp": 8 * best["bytes"] / (image.shape[1] * image.shape[2]),
                   "drop": reference - best["psnr_reloaded"], "met": True, "seconds": seconds,
                   "finetunes": len(tried), "finetune_steps": steps, "tried": tried}
        print(f"{image_name} {layers}x{width} pruned: {run['bytes']} B, {run['psnr_reloaded']} dB, "
              f"keep {run.get('keep')}, {run.get('bits')} bits, {seconds:.0f} s", flush=True)
        return run

    return _cached_run(cache, f"{image_name}-{layers}x{width}-pruned",
                       [image_name, layers, width, drop, steps, "pruned", list(PRUNE_KEEP), list(ONE_WIDTH_BITS)],
                       cached_only, make)


def _no_grad(evaluate, model) -> float:
    with torch.no_grad():
        return float(evaluate(model.eval()))


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
        one = runs["one_width"]
        one_cell = (f"{one['bytes']} / {one['psnr_reloaded']:.2f} ({'/'.join(map(str, one['bits']))}-bit)"
                    if one["met"] else "none meets the drop")
        pruned = runs["pruned"]
        pruned_cell = (f"{pruned['bytes']} / {pruned['psnr_reloaded']:.2f} (keep {pruned['keep']:g}, "
                       f"{pruned['bits']}-bit)" if pruned["met"] else "none meets the drop")
        uniform = sorted(n for n, k in runs["choice"]["codings"].items() if k == "uniform")
        rows.append([r["image"], r["config"], f"{r['psnr_fit']:.2f}", f"{r['target_drop']:g}", *cells,
                     one_cell, pruned_cell, r["best_baseline"].replace("_", " "),
                     *(f"{100 * r['saving_vs_best_baseline'][v]:.1f}%" for v in ("sinr", "choice")),
                     ", ".join(uniform) or "none",
                     " / ".join(f"{runs[v]['seconds']:.0f}" for v in (*VARIANTS, "one_width", "pruned")),
                     " / ".join(str(runs[v]["probes"]) for v in VARIANTS)])
    return "\n".join([
        "# SINR, the per-layer choice and uniform quantization in `torch_sinr.compress`", "",
        f"Generated by `{p['command'].strip()}`. Held-out Kodak images ({p['held_out']}), the Kodak "
        f"protocol's fits; `compress(target=MaxDrop(drop), steps={p['steps']}, guard=False)`, the same "
        f"search and fine-tuning for the three searches; dense tensors (biases, input layer) get widths from "
        f"`dense_bits={DENSE_BITS}` in all three. **sinr**: every target linear SINR-coded; **choice**: SINR or a "
        f"uniform grid of `uniform_bits={UNIFORM_BITS}` per layer; **uniform**: `sinr=False`, mixed-precision "
        f"uniform quantization (a baseline); **one width**: every tensor on one grid, the narrowest of "
        f"`{ONE_WIDTH_BITS}` meeting the target after the same {p['steps']} fine-tuning steps (a baseline); "
        f"**pruned**: magnitude pruning of the linears SINR codes at the densities `{PRUNE_KEEP}` of SINR's menu, "
        f"kept values and every other tensor on one grid, fine-tuned the same way, positions coded like SINR's "
        f"indices; the smallest file over densities and widths (the third baseline). "
        f"Bytes of the file written, PSNR of the file decoded; a saving is 1 - bytes / the smallest baseline file "
        f"(uniform, one width or pruned), each file meeting the same target (their PSNRs differ by what the table shows); "
        f"negative: larger than the baseline. The default `compress` keeps the best of choice, uniform and one "
        f"width. CPU: {p['cpu']}.", "",
        md_table(["image", "SIREN", "fit (dB)", "drop (dB)", "sinr: B / dB", "choice: B / dB", "uniform: B / dB",
                  "one width: B / dB", "pruned: B / dB", "best baseline", "sinr saves", "choice saves",
                  "layers the choice coded uniformly", "wall s (s / c / u / 1 / p)", "probes (s / c / u)"], rows), "",
        *([f"Asked for but not run (`--cached-only`): {', '.join(results['not_run'])}.", ""]
          if results.get("not_run") else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_layer_choice", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--images", nargs="+", default=["kodim13", "kodim14"],
                        help="Kodak images (file stems), held out from every choice the library made")
    parser.add_argument("--configs", nargs="+", default=["3x64", "3x128"], help="SIREN sizes LxW (the Kodak protocol's fits)")
    parser.add_argument("--drops", nargs="+", type=float, default=[0.5, 3.0],
                        help="PSNR drops (dB) allowed by the MaxDrop target: 0.5 is a high rate for these fits, "
                             "3 a middle one")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of each compress call")
    parser.add_argument("--out", type=Path, default=OUT, help="folder per_layer_choice[_TAG].{json,md} go to")
    parser.add_argument("--tag", default="", help="results go to per_layer_choice_TAG.{json,md} (a run kept apart "
                                                  "from the README's table, e.g. another rate)")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="folder of finished runs (committed: --cached-only rebuilds a table on a fresh clone)")
    parser.add_argument("--cached-only", action="store_true",
                        help="run nothing: write the records whose runs are all in the cache, and list the others")
    args = parser.parse_args(argv)
    if not kodak.DEFAULT_KODAK.is_dir():
        parser.error(f"Kodak images not found at {kodak.DEFAULT_KODAK} (the repo expects ../shared/data/kodak)")
    records, missing = [], []
    for drop in args.drops:  # the cached high-rate runs first; an interrupted run resumes from the cache
        for config in args.configs:
            layers, width = (int(v) for v in config.split("x"))
            for image in args.images:
                record = run_one(image, layers, width, drop, args.steps, args.cache, args.cached_only)
                if record is None:
                    missing.append(f"{image} {config} drop {drop:g}")
                else:
                    records.append({**record, "target_drop": drop})
    results = {"protocol": {"drops": args.drops, "steps": args.steps, "uniform_bits": list(UNIFORM_BITS),
                            "dense_bits": list(DENSE_BITS),
                            "images": args.images, "configs": args.configs, "cpu": cpu_model(),
                            "held_out": "kodim13-24: no setting of compress or of this benchmark was chosen on them "
                                        "(format 2's on kodim01-12 and kodim01/08/23); the format-1 runs that chose "
                                        "which Kodak variants format 2 kept covered all 24 images",
                            "command": "python -m benchmarks.per_layer_choice " + " ".join(argv or sys.argv[1:])},
               "records": records, "not_run": missing}
    write_results(args.out, f"{NAME}_{args.tag}" if args.tag else NAME, __doc__.split("\n\n")[0], results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
