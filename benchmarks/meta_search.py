"""Meta-learned SIRENs (C3 / C4) compressed by ``torch_sinr.compress``'s search: the per-layer choice
between SINR and uniform grids against mixed-precision uniform quantization, on the same fits.

    python -m benchmarks.meta_search [--configs C3-32 C4-64 ...] [--test kodim13 ...] [--drops 1 2.5]

The companion of ``benchmarks.meta`` (same protocol options, same caches of learned
initialisations; a fit here is that benchmark's fit, recomputed from the same seed, and its PSNR is
recorded beside the cached one). ``benchmarks.meta`` codes each fit at fixed settings; this one asks
what a user of ``compress`` gets at a quality target. Each fit is coded as offsets from the shared
initialisation, per layer where they code closer than the weights (``offsets.choose_offset_layers``
at s=0.3, 8 bits, the rule ``benchmarks.meta`` records as "per-layer"), then compressed to
``MaxDrop(drop)`` for each drop three times, with the same search and fine-tuning budget:

* ``choice``: each layer SINR-coded or on a uniform grid, whichever the search finds cheaper per
  unit of PSNR (``compress``'s search with its default menus, ``guard=False``);
* ``sinr``: every target layer SINR-coded (``uniform_bits=()``);
* ``mixed precision``: SINR switched off (``sinr=False``): per-tensor uniform widths, fine-tuned,
  the baseline.

Files are bare (``store_names=False``) like every file of ``benchmarks.meta``; bytes are the
written file's, PSNR the decoded file's; the shared initialisation is not in an image's bpp (as
there). The one-width uniform front of ``benchmarks.meta``'s records on the same images is
reported beside, so all four codings of one fit are side by side. Settings were fixed before any
run; the test images are held out from the meta-learning.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import kodak, meta
from benchmarks._common import cpu_model, exit_code, md_table, publish
from torch_sinr import MaxDrop, SINRError, compress, load_compressed, save_compressed
from torch_sinr.inr.models import INR, image_loss, psnr, render
from torch_sinr.inr.offsets import choose_offset_layers, offset_network
from torch_sinr.nn.layer import SINRLinear
from torch_sinr.tune.pipeline import DENSE_BITS, UNIFORM_BITS

NAME = "meta_search"
CONFIGS = [c for c in meta.CONFIGS if not c.startswith("C5")]
TEST = meta.TEST[:2]  # the search costs 5-30 CPU-minutes per image and configuration: a stated subset
DROPS = (1.0, 2.5)  # dB below the fit: about where benchmarks.meta's two SINR settings land
SETTINGS = {"s_ratio": 0.3, "value_bits": 8, "dict_ratio": 4}  # the search's base config and the offsets rule's
# compress's default menus (4-12 bits for layers, 6-16 for other tensors). Extended down to 3 bits
# they made the mixed-precision search worse, not better, on the first probe (C3-32 kodim13,
# MaxDrop(1): 3,044 B at the fit's PSNR against 1,748 B with the defaults: every cheaper budget's
# greedy moves failed the target after the probes' fine-tuning), so the low rates are covered by
# benchmarks.meta's one-width files at 3-8 bits, and the baseline front is both together.
VARIANTS = {"choice": {}, "sinr": {"uniform_bits": ()}, "mixed precision": {"sinr": False}}
BASELINE = "mixed precision"
# What compress's default (its guard) keeps of these runs: the smallest file meeting the target,
# the search's on a tie, in the guard's order (tune.pipeline). The guard also makes a one-width
# file, not run here, so this row is an upper bound on the default's bytes.
GUARDED = "compress default"
GUARD_ORDER = ("choice", "mixed precision", "sinr")
RECORD_VERSION = 1


def _no_grad_psnr(image: torch.Tensor):
    height, width = image.shape[1:]

    def evaluate(model) -> float:
        with torch.no_grad():
            return psnr(render(model, height, width), image)
    return evaluate


def search_record(kind: str, size: int, learned, name: str, image: torch.Tensor, args, start_new: bool) -> dict | None:
    """Every variant at every drop for one image (cached as one record; None when not cached and
    not ``start_new``)."""
    key = meta._key({"version": RECORD_VERSION, "fingerprint": learned.fingerprint, "image": name,
                      "fit_steps": args.fit_steps, "ft_steps": args.ft_steps, "drops": list(args.drops),
                      "downscale": args.downscale, "settings": SETTINGS,
                      "variants": {k: {n: list(v) if isinstance(v, tuple) else v for n, v in d.items()}
                                   for k, d in VARIANTS.items()}})
    cache = args.cache / f"search-{kind}-{size}-{name}-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    if not start_new:
        return None
    started = time.perf_counter()
    model, fit = meta.fit_siren(kind, size, learned, image, args)
    choice = choose_offset_layers(model, learned.init, **SETTINGS)
    layers = [n for n, c in choice.items() if c["chosen"] == "offsets"]
    network = offset_network(model, learned.init, layers)
    evaluate = _no_grad_psnr(image)
    pixels = image.shape[1] * image.shape[2]
    record = {"config": f"{kind}-{size}", "image": name, "fitted_psnr": fit["fitted_psnr"],
              "offset_layers": layers, "runs": {}}
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "model.safetensors"
        for drop in args.drops:
            for label, search in VARIANTS.items():
                coded = copy.deepcopy(network)
                t0 = time.perf_counter()
                try:
                    result = compress(coded, image_loss(image), evaluate=evaluate, target=MaxDrop(drop),
                                      steps=args.ft_steps, config=kodak.sinr_config(**SETTINGS), guard=False,
                                      progress=False, **search)
                except SINRError as exc:
                    # a measured outcome, not a crash: this coding cannot reach the target on this fit
                    # (e.g. SINR at the settings' 8-bit values on a wide SIREN); the guard's row then
                    # keeps another run
                    seconds = time.perf_counter() - t0
                    record["runs"][f"{label} drop={drop:g}"] = {
                        "method": label, "drop_target": drop, "bytes": None, "bpp": None, "psnr": None,
                        "met": False, "seconds": seconds, "error": str(exc)}
                    print(f"{kind}-{size} {name} {label} drop {drop:g}: cannot be met ({exc}), {seconds:.0f} s",
                          flush=True)
                    continue
                seconds = time.perf_counter() - t0
                size_bytes = save_compressed(coded, path).file_bytes
                decoded = load_compressed(path, offset_network(INR(model.config), learned.init, layers))
                quality = evaluate(decoded)
                sinr_layers = sorted(n for n, m in coded.named_modules() if isinstance(m, SINRLinear))
                record["runs"][f"{label} drop={drop:g}"] = {
                    "method": label, "drop_target": drop, "bytes": size_bytes, "bpp": 8 * size_bytes / pixels,
                    "psnr": quality, "met": quality >= fit["fitted_psnr"] - drop, "seconds": seconds,
                    "probes": len(result.probes), "finetune_steps": result.finetune_steps,
                    "sinr_layers": sinr_layers}
                print(f"{kind}-{size} {name} {label} drop {drop:g}: {size_bytes} B, {quality:.2f} dB "
                      f"(fit {fit['fitted_psnr']:.2f}), {seconds:.0f} s, SINR on {sinr_layers}", flush=True)
    record["seconds"] = time.perf_counter() - started
    record["cpu"] = cpu_model()
    cache.write_text(json.dumps(record, indent=1))
    return record


def guarded_runs(runs: dict[str, dict]) -> dict[str, dict]:
    """Per drop, the run compress's guard keeps of one image's runs (see ``GUARDED``); its seconds
    are the three searches' together."""
    kept = {}
    for drop in sorted({r["drop_target"] for r in runs.values()}):
        found = [runs[f"{m} drop={drop:g}"] for m in GUARD_ORDER if f"{m} drop={drop:g}" in runs]
        if len(found) < len(GUARD_ORDER):
            continue
        best = found[0]
        for run in found[1:]:  # the guard's rule (tune.guard._better): meets the target, then fewer bytes
            if run["met"] and (not best["met"] or run["bytes"] < best["bytes"]):
                best = run
        kept[f"{GUARDED} drop={drop:g}"] = {**best, "method": GUARDED, "kept": best["method"],
                                            "seconds": sum(r["seconds"] for r in found)}
    return kept


SAVINGS = ("saving_vs_mixed_precision_same_target", "saving_vs_mixed_precision_front", "saving_vs_one_width_front",
           "saving_vs_best_baseline_front")


def summarize(records: list[dict], meta_records: list[dict]) -> dict:
    """Mean bpp and PSNR per variant and drop; each SINR variant against mixed precision at the same
    target, and every point against the one-width front of ``benchmarks.meta`` on the same images."""
    runs: dict[str, list[dict]] = {}
    for record in records:
        for label, run in {**record["runs"], **guarded_runs(record["runs"])}.items():
            runs.setdefault(label, []).append(run)
    # a run that could not meet its target has no file: means are over the images that have one,
    # and a coding without a file on every image gets no mean (it would compare other images)
    mean = {}
    for label, rs in sorted(runs.items()):
        written = [r for r in rs if r["bytes"] is not None]
        complete = len(written) == len(rs)
        mean[label] = {"method": rs[0]["method"], "drop_target": rs[0]["drop_target"], "images": len(rs),
                       "unmet_searches": len(rs) - len(written),
                       "bpp": meta._mean([r["bpp"] for r in rs]) if complete else None,
                       "psnr": meta._mean([r["psnr"] for r in rs]) if complete else None,
                       "met": sum(r["met"] for r in rs), "seconds": meta._mean([r["seconds"] for r in rs]),
                       "sinr_layers": meta._mean([len(r["sinr_layers"]) for r in written]) if complete else None}
    one_width = []
    if meta_records and {r["image"] for r in meta_records} == {r["image"] for r in records}:
        points: dict[str, list[dict]] = {}
        for record in meta_records:
            for p in record["points"]:
                if p["method"].startswith("uniform"):
                    points.setdefault(f"{p['method']} {p['setting']}", []).append(p)
        one_width = [(meta._mean([p["psnr"] for p in ps]), meta._mean([p["bpp"] for p in ps]))
                     for ps in points.values() if len(ps) == len(records)]
    mp_front = [(v["psnr"], v["bpp"]) for v in mean.values() if v["method"] == BASELINE and v["bpp"] is not None]
    for label, m in mean.items():
        if m["bpp"] is None:
            m.update(dict.fromkeys(SAVINGS))
            continue
        same = mean.get(f"{BASELINE} drop={m['drop_target']:g}")
        m["saving_vs_mixed_precision_same_target"] = (None if same is None or same["bpp"] is None
                                                      else 1 - m["bpp"] / same["bpp"])
        need = kodak._best_baseline_bpp(mp_front, m["psnr"])
        m["saving_vs_mixed_precision_front"] = None if need is None or m["method"] == BASELINE else 1 - m["bpp"] / need
        need = kodak._best_baseline_bpp(one_width, m["psnr"]) if one_width else None
        m["saving_vs_one_width_front"] = None if need is None else 1 - m["bpp"] / need
        # the strongest baseline: the front of every mixed-precision and one-width point together
        need = kodak._best_baseline_bpp(mp_front + one_width, m["psnr"])
        m["saving_vs_best_baseline_front"] = None if need is None or m["method"] == BASELINE else 1 - m["bpp"] / need
    return {"images": sorted(r["image"] for r in records), "mean": mean,
            "fitted_psnr": meta._mean([r["fitted_psnr"] for r in records]),
            "fitted_psnr_in_meta_records": meta._mean([r["fitted_psnr"] for r in meta_records]) if meta_records else None,
            "offset_layers": {r["image"]: r["offset_layers"] for r in records}}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _fmt(x, spec: str, m: dict) -> str:
    """A mean, or why there is none: the search could not meet the target on some image."""
    if x is not None:
        return format(x, spec)
    return f"target not met ({m['unmet_searches']}/{m['images']})"


def markdown(results: dict) -> str:
    lines = ["# Meta-learned SIRENs (C3 / C4) through `compress`'s search: per-layer choice vs mixed precision", "",
             f"Protocol: {json.dumps(results['protocol'])}.", "",
             "Each fit (the `benchmarks.meta` fit, recomputed) coded as offsets from the shared initialisation, "
             "compressed to MaxDrop(drop) with the same search and fine-tuning budget three ways; bpp from the "
             "bare written file, PSNR of the decoded file, means over the images. Savings are 1 - bpp / the "
             "baseline's bpp: at the same target (same drop), along the mixed-precision front at the point's "
             "PSNR, along the one-width uniform front of `benchmarks.meta` on the same images, and along "
             "both fronts together, the strongest baseline (interpolated, '-' outside a front). Positive: "
             f"smaller than the baseline. \"{GUARDED}\": per image, the run `compress`'s guard keeps of the "
             "three (the smallest file meeting the target; seconds: the three together); the guard also makes "
             "a one-width file, not run here, so its bytes are an upper bound. \"target not met (n/N)\": the "
             "search raised on n of the N images (the target is out of that coding's reach after its "
             "fine-tuning); such a coding has no mean.", "",
             f"Choices made on data: {results['tuned_on']}.", ""]
    for name, s in results["configs"].items():
        lines += [f"## {name}", "",
                  f"Images: {', '.join(s['images'])}. Fitted PSNR {s['fitted_psnr']:.2f} dB "
                  f"(benchmarks.meta's records: {'-' if s['fitted_psnr_in_meta_records'] is None else format(s['fitted_psnr_in_meta_records'], '.2f')} dB).", ""]
        rows = [[label, str(m["images"]), _fmt(m["bpp"], ".4f", m), _fmt(m["psnr"], ".2f", m),
                 f"{m['met']}/{m['images']}", _fmt(m["sinr_layers"], ".2f", m),
                 _pct(m["saving_vs_mixed_precision_same_target"]),
                 _pct(m["saving_vs_mixed_precision_front"]), _pct(m["saving_vs_one_width_front"]),
                 _pct(m["saving_vs_best_baseline_front"]),
                 f"{m['seconds']:.0f}"] for label, m in s["mean"].items()]
        lines += [md_table(["coding", "images", "bpp", "PSNR (dB)", "target met", "SINR-coded layers (of 4)",
                            "vs mixed precision, same target", "vs mixed-precision front", "vs one-width front",
                            "vs both fronts together",
                            "seconds"], rows), ""]
    if results["not_evaluated"]:
        lines += [f"Not evaluated in this run: {', '.join(results['not_evaluated'])}.", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["configs"])
    cols = min(4, len(names))  # C3 above C4 when all eight are there
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        meta.method_curves(ax, [m for m in results["configs"][name]["mean"].values() if m["bpp"] is not None],
                           lambda method: method == BASELINE)
        unmet = sorted({m["method"] for m in results["configs"][name]["mean"].values() if m["bpp"] is None})
        ax.set_title(name + (f" (a target not met by: {', '.join(unmet)})" if unmet else ""), fontsize=9)
        ax.set_xlabel("bpp (file bytes)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(True, color="0.9")
        ax.legend(fontsize=7)
    fig.suptitle("compress's search on meta-learned SIRENs (offsets): per-layer choice, SINR only, mixed precision",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> dict:
    parsed = {text: meta.parse_config(text) for text in args.configs}
    if any(kind == "C5" for kind, _ in parsed.values()):
        raise SystemExit("benchmarks.meta_search codes C3/C4 SIRENs; C5's latents are in benchmarks.meta")
    args.cache.mkdir(parents=True, exist_ok=True)
    train = meta.load_set(args.kodak, args.train, args.downscale)
    test = meta.load_set(args.kodak, args.test, args.downscale)
    protocol = {"downscale": args.downscale, "test": args.test, "fit_steps": args.fit_steps, "fit_lr": args.fit_lr,
                "drops": list(args.drops), "ft_steps": args.ft_steps, "settings": SETTINGS,
                "search": "compress(target=MaxDrop(drop), steps=ft_steps, config=the settings, guard=False) with "
                          f"its default menus: uniform_bits {list(UNIFORM_BITS)}, dense_bits {list(DENSE_BITS)} "
                          "(SINR alone: uniform_bits ())",
                "seed": args.seed, "threads": torch.get_num_threads(), "cpu": cpu_model()}
    configs, not_evaluated = {}, []
    deadline = time.monotonic() + args.budget_minutes * 60 if args.budget_minutes else None
    for text, (kind, size) in parsed.items():
        learned, _ = meta.learned_for(kind, size, train, args)
        records = meta.records_within(test, lambda name, image, start_new: search_record(kind, size, learned, name,
                                                                                         image, args, start_new),
                                      text, deadline, not_evaluated)
        if records:
            done = [r["image"] for r in records]
            metas = [r for r in (meta.evaluate(kind, size, learned, n, test[n], args, start_new=False) for n in done)
                     if r is not None]
            configs[text] = summarize(records, metas)
    not_evaluated += [f"{c} (not requested)" for c in CONFIGS if c not in args.configs]
    results = {"protocol": protocol, "configs": configs, "not_evaluated": not_evaluated,
               "tuned_on": "drops fixed before any run; the menus (compress's defaults) kept after one probe on a "
                           "reported image (C3-32 kodim13, MaxDrop(1)) showed 3-bit menus weaken the mixed-precision "
                           "baseline (3,044 vs 1,748 B): a choice in the baseline's favour, not SINR's"}
    name = NAME if not args.tag else f"{NAME}_{args.tag}"
    publish(Path(args.out), name, __doc__.splitlines()[0], results, markdown(results))
    if configs:
        plot(results, Path(args.out) / f"{name}.png")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = meta.protocol_parser("python -m benchmarks.meta_search", __doc__.split("\n\n")[0], CONFIGS)
    parser.set_defaults(test=TEST)
    parser.add_argument("--drops", nargs="+", type=float, default=list(DROPS), help="MaxDrop targets (dB below the fit)")
    args = parser.parse_args(argv)
    return exit_code(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
