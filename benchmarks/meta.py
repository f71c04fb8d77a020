"""Meta-learned INRs on Kodak: INRIC-style learned initialisations (C3 without, C4 with positional
encoding) and COIN++-style modulations (C5), each image's file coded with SINR and with the fair
uniform baselines in the same container and coder.

    python -m benchmarks.meta [--configs C5-16 C5-32 C3-32 ...] [--test kodim13 ...] [--out DIR]

Protocol (a reduced CPU protocol; every figure below is an option):

* Images: Kodak box-downscaled 4x (192 x 128; the six portrait images transposed to landscape, so
  every task has one shape). Meta-learning on kodim01-12, fitting and coding on kodim13-24 (held
  out: no setting here was chosen on them).
* C3 / C4 (``C3-W``, ``C4-W``): SIRENs of 3 hidden layers of width W, plain or on the positional
  encoding; ``meta.meta_learn`` (3 inner steps, learned per-parameter rates, second order). Each
  test image is fitted from the learned initialisation (its 3 learned steps, then ``--fit-steps``
  of Adam) and, for the comparison the issue asks for, from the random initialisation the
  meta-learning started from with the same steps. The learned fit is coded five ways: SINR on the
  weights (the paper's way), on the offsets from the initialisation, and per layer on whichever
  of the two codes closer at the same settings (``offsets.choose_offset_layers``; the 1 bit per
  layer a decoder needs for that choice is not in the bare file), and uniform (one width for
  every tensor) on the weights and on the offsets; every coding fine-tuned with the same steps.
* C5 (``C5-D``): ``modulated.ModulatedSiren`` (5 layers of width ``--c5-width``), 16 x 16 patches
  (96 per image), latent size D, meta-learned by ``modulated.meta_learn_modulated``; each test
  image's latents from the 3 learned steps and ``--refine-steps`` of Adam. The latent matrix is
  coded with SINR and uniformly at 3-8 bits (COIN++'s own choice is 5 bits), plain and fine-tuned.
* Bytes are the written file's, bare (no tensor names or metadata, as the Kodak benchmark writes
  both sides; ``shared_init``'s fingerprint and layout would add the same bytes to either): bpp =
  8 bytes / pixels. The shared part (initialisation, base network) is written once and reported
  apart, not in any image's bpp, as INRIC and COIN++ count it. PSNR is the decoded file's.
* SINR against the best baseline: at each SINR point's mean PSNR, the bpp of the Pareto front of
  every uniform point of that configuration (plain and fine-tuned), interpolated, never
  extrapolated (outside the front's range: no comparison).

Caches (``--cache``, committed): meta-learning checkpoints and one record per image and
configuration, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import kodak
from benchmarks._common import HelpFormatter, cpu_model, exit_code, md_table, publish
from torch_sinr import compress_model, load_compressed, save_compressed
from torch_sinr.inr.images import load_image
from torch_sinr.inr.meta import MetaConfig, MetaLearned, adapt, meta_learn
from torch_sinr.inr.models import INR, INRConfig, fit_image, image_loss, psnr, render
from torch_sinr.inr.modulated import (LatentGrid, ModulatedSiren, ModulationConfig, fit_latents, latent_config,
                                      latent_loss, meta_learn_modulated, render_latents)
from torch_sinr.inr.offsets import choose_offset_layers, offset_network
from torch_sinr.tune.baselines import finetune_uniform, read_baseline, write_uniform
from torch_sinr.tune.finetune import finetune_codes

NAME = "meta"
CACHE = kodak.REPO / "benchmarks" / "cache" / "meta"  # committed: checkpoints and records, so a rerun resumes
TRAIN = [f"kodim{i:02d}" for i in range(1, 13)]
TEST = [f"kodim{i:02d}" for i in range(13, 25)]
CONFIGS = ["C3-32", "C3-64", "C3-96", "C3-128", "C4-32", "C4-64", "C4-96", "C4-128",
           "C5-16", "C5-32", "C5-64", "C5-96"]
RECORD_VERSION = 1  # bump when what a record measures changes
PATCH = 16
PE_FREQUENCIES = 6  # C4's encoding (INRIC's SIREN on a positional encoding)
SINR_SETTINGS = ((0.2, 8), (0.3, 8), (0.45, 8), (0.3, 6))  # (s ratio, value bits), fine-tuned
UNIFORM_BITS = (3, 4, 5, 6, 7, 8)  # plain; fine-tuned at the FT_BITS among them
FT_BITS = (3, 4, 5, 6, 8)
FT_LR = 1e-3  # every coding's fine-tuning rate (SINR and uniform alike)


def landscape(image: torch.Tensor) -> torch.Tensor:
    return image if image.shape[1] <= image.shape[2] else image.transpose(1, 2).contiguous()


def load_set(kodak_dir: Path, names: list[str], downscale: int) -> dict[str, torch.Tensor]:
    missing = [n for n in names if not (kodak_dir / f"{n}.png").is_file()]
    if missing:
        raise SystemExit(f"Kodak images {missing} not found in {kodak_dir} (see ../shared/data/README)")
    return {n: landscape(load_image(kodak_dir / f"{n}.png", downscale=downscale)) for n in names}


def parse_config(text: str) -> tuple[str, int]:
    kind, _, size = text.partition("-")
    if kind not in ("C3", "C4", "C5") or not size.isdigit() or int(size) < 1:
        raise SystemExit(f"configuration {text!r} is not C3-W, C4-W or C5-D (e.g. C3-64, C5-32)")
    return kind, int(size)


def siren(kind: str, width: int) -> INR:
    return INR(INRConfig(hidden_features=width, hidden_layers=3, activation="siren" if kind == "C3" else "siren_pe",
                         pe_frequencies=PE_FREQUENCIES))


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _bytes_of(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


# --- meta-learning (shared parts) ----------------------------------------------------------------

def learned_for(kind: str, size: int, train: dict[str, torch.Tensor], args) -> tuple[object, dict]:
    """The configuration's meta-learned initialisation or base network (resumed from its
    checkpoint) and what it cost."""
    images = list(train.values())
    torch.manual_seed(args.seed)
    if kind == "C5":
        model = ModulatedSiren(width=args.c5_width, layers=5, latent_dim=size)
        config = ModulationConfig(patch=PATCH, inner_steps=3, inner_lr=1e-2, outer_steps=args.outer_steps,
                                  outer_lr=args.c5_outer_lr, meta_batch=32, seed=args.seed)
        learn = meta_learn_modulated
    else:
        model = siren(kind, size)
        config = MetaConfig(inner_steps=3, inner_lr=1e-2, outer_steps=args.outer_steps, outer_lr=args.outer_lr,
                            meta_batch=2, pixels=args.inner_pixels, seed=args.seed)
        learn = meta_learn
    key = _key({"kind": kind, "size": size, "train": sorted(train), "config": config.to_dict(),
                "c5_width": args.c5_width if kind == "C5" else None, "downscale": args.downscale})
    checkpoint = args.cache / f"{kind}-{size}-{key}.pt"
    started = time.perf_counter()
    learned = learn(model, images, config, checkpoint=checkpoint, progress=True)
    shared = learned.base if kind == "C5" else learned.init
    info = {"config": config.to_dict(), "steps": config.outer_steps,
            "loss_first_10": _mean([h["loss_after"] for h in learned.history[:10]]),
            "loss_last_10": _mean([h["loss_after"] for h in learned.history[-10:]]),
            "seconds_this_run": time.perf_counter() - started, "shared_bytes_float32": _bytes_of(shared),
            "fingerprint": learned.fingerprint, "checkpoint": checkpoint.name}
    return learned, info


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- coding one image ----------------------------------------------------------------------------

def _point(method: str, setting, size: int, pixels: int, quality: float, **extra) -> dict:
    return {"method": method, "setting": setting, "bytes": size, "bpp": 8 * size / pixels, "psnr": quality, **extra}


def code_modulations(model: ModulatedSiren, grid: LatentGrid, image: torch.Tensor, args, work: Path) -> list[dict]:
    """The latent matrix coded with SINR and uniformly (plain and fine-tuned), each written bare
    and decoded."""
    pixels = image.shape[1] * image.shape[2]
    loss = latent_loss(model, image, grid.patch)
    skeleton = lambda: LatentGrid(torch.zeros(grid.rows * grid.cols, model.latent_dim), grid.rows, grid.cols, grid.patch)
    quality = lambda g: psnr(render_latents(model, g), image)
    points, path = [], work / "latents.safetensors"
    for s_ratio, bits in SINR_SETTINGS:
        coded = copy.deepcopy(grid)
        compress_model(coded, latent_config(s_ratio=s_ratio, value_bits=bits, dict_ratio=4, store_names=False),
                       progress=False)
        finetune_codes(coded, loss, args.ft_steps, lr=FT_LR)
        size = save_compressed(coded, path).file_bytes
        points.append(_point("sinr+ft", f"s={s_ratio} bits={bits}", size, pixels, quality(load_compressed(path, skeleton()))))
    state = {k: v.detach().clone() for k, v in grid.state_dict().items()}
    for bits in UNIFORM_BITS:
        size = write_uniform(state, path, bits, names=False)
        decoded = skeleton()
        decoded.load_state_dict(read_baseline(path, decoded))
        points.append(_point("uniform", bits, size, pixels, quality(decoded)))
    for bits in FT_BITS:
        points.append(_uniform_ft_point("uniform+ft", grid, loss, bits, args, path, skeleton, quality, pixels))
    return points


def _uniform_ft_point(method: str, network, loss, bits: int, args, path: Path, skeleton, quality, pixels: int) -> dict:
    """``network`` fine-tuned on a ``bits`` grid for every tensor, written bare, decoded into
    ``skeleton()`` and scored."""
    state, grids = finetune_uniform(copy.deepcopy(network), loss, bits, args.ft_steps, lr=FT_LR)
    size = write_uniform(state, path, bits, grids, names=False)
    decoded = skeleton()
    decoded.load_state_dict(read_baseline(path, decoded))
    return _point(method, bits, size, pixels, quality(decoded))


def code_siren(model: INR, init: dict[str, torch.Tensor], image: torch.Tensor, args, work: Path) -> list[dict]:
    """The fitted SIREN coded as weights and as offsets from the initialisation, with SINR and
    uniformly, every coding fine-tuned; each written bare and decoded."""
    height, width = image.shape[1:]
    pixels = height * width
    loss = image_loss(image)
    quality = lambda m: psnr(render(m, height, width), image)
    points, path = [], work / "model.safetensors"
    for target in ("weights", "offsets", "per-layer"):
        for s_ratio, bits in SINR_SETTINGS[:2]:
            settings = {"s_ratio": s_ratio, "value_bits": bits, "dict_ratio": 4}
            layers = None
            if target == "per-layer":  # weights or offsets, whichever codes closer at these settings
                choice = choose_offset_layers(model, init, **settings)
                layers = [name for name, c in choice.items() if c["chosen"] == "offsets"]
            network = model if target == "weights" else offset_network(model, init, layers)
            coded = copy.deepcopy(network)
            compress_model(coded, kodak.sinr_config(**settings), progress=False)
            finetune_codes(coded, loss, args.ft_steps, lr=FT_LR, train_dense=True)
            size = save_compressed(coded, path).file_bytes
            skeleton = INR(model.config) if target == "weights" else offset_network(INR(model.config), init, layers)
            points.append(_point(f"sinr+ft {target}", f"s={s_ratio} bits={bits}", size, pixels,
                                 quality(load_compressed(path, skeleton)),
                                 **({"offset_layers": layers} if layers is not None else {})))
        if target == "per-layer":
            continue
        network = model if target == "weights" else offset_network(model, init)
        skeleton = (lambda: INR(model.config)) if target == "weights" else (lambda: offset_network(INR(model.config), init))
        for bits in FT_BITS:
            points.append(_uniform_ft_point(f"uniform+ft {target}", network, loss, bits, args, path, skeleton, quality,
                                            pixels))
    return points


def fit_siren(kind: str, size: int, learned, image: torch.Tensor, args, start: str = "learned") -> tuple[INR, dict]:
    """A C3/C4 SIREN fitted to ``image`` from the learned initialisation (its learned inner steps,
    then Adam) or, with ``start="random"``, from the random one meta-learning started from with the
    same steps and rates; deterministic for a seed."""
    torch.manual_seed(args.seed)
    model = siren(kind, size)  # the random initialisation meta-learning started from
    source = learned if start == "learned" else MetaLearned(
        init={n: p.detach().clone() for n, p in model.named_parameters()},
        inner_lrs=learned.inner_lrs, config=learned.config)
    adapted = adapt(model, source, image)[-1]
    fitted = fit_image(model, image, args.fit_steps, lr=args.fit_lr, progress=False)
    return model, {"after_inner_steps_psnr": -10 * math.log10(max(adapted / 4, 1e-12)), "fitted_psnr": fitted}


def evaluate(kind: str, size: int, learned, name: str, image: torch.Tensor, args, start_new: bool = True) -> dict | None:
    """One test image under one configuration (cached; None when not cached and not ``start_new``)."""
    key = _key({"version": RECORD_VERSION, "fingerprint": learned.fingerprint, "image": name,
                "fit_steps": args.fit_steps, "refine_steps": args.refine_steps, "ft_steps": args.ft_steps,
                "downscale": args.downscale})
    cache = args.cache / f"{kind}-{size}-{name}-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    if not start_new:
        return None
    started = time.perf_counter()
    record = {"config": f"{kind}-{size}", "image": name}
    with tempfile.TemporaryDirectory() as work:
        if kind == "C5":
            torch.manual_seed(args.seed)
            model = ModulatedSiren(width=args.c5_width, layers=5, latent_dim=size)
            grid = fit_latents(model, learned, image, refine_steps=args.refine_steps, refine_lr=1e-2)
            record["fitted_psnr"] = psnr(render_latents(model, grid), image)
            record["points"] = code_modulations(model, grid, image, args, Path(work))
        else:
            fits = {}
            for start in ("learned", "random"):
                model, fits[start] = fit_siren(kind, size, learned, image, args, start)
                if start == "learned":
                    fitted = model
            record["fits"] = fits
            record["fitted_psnr"] = fits["learned"]["fitted_psnr"]
            record["points"] = code_siren(fitted, learned.init, image, args, Path(work))
    record["seconds"] = time.perf_counter() - started
    record["cpu"] = cpu_model()
    cache.write_text(json.dumps(record, indent=1))
    return record


# --- summary -------------------------------------------------------------------------------------

def summarize(records: list[dict]) -> dict:
    """Per method and setting: mean bpp and PSNR over the images; each SINR point against the
    front of every uniform point of the configuration at its PSNR (and, for C3/C4, of the same
    target: weights or offsets, and of both)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        for p in record["points"]:
            groups.setdefault((p["method"], str(p["setting"])), []).append(p)
    mean = {f"{m} {s}": {"method": m, "setting": s, "images": len(ps), "bpp": _mean([p["bpp"] for p in ps]),
                         "psnr": _mean([p["psnr"] for p in ps])} for (m, s), ps in sorted(groups.items())}
    front = [(r["psnr"], r["bpp"]) for r in mean.values() if r["method"].startswith("uniform")]
    comparisons = []
    for label, r in mean.items():
        if not r["method"].startswith("sinr"):
            continue
        best = kodak._best_baseline_bpp(front, r["psnr"])
        # outside the front's range nothing is interpolated, but a uniform point at least as good
        # in both bytes and PSNR is a verdict without extrapolating
        dominating = [u for u, v in mean.items() if v["method"].startswith("uniform")
                      and v["psnr"] >= r["psnr"] and v["bpp"] <= r["bpp"]]
        comparisons.append({"point": label, "psnr": r["psnr"], "bpp": r["bpp"], "best_uniform_bpp": best,
                            "saving": None if best is None else 1 - r["bpp"] / best,
                            "dominated_by": min(dominating, key=lambda u: mean[u]["bpp"]) if dominating else None})
    out = {"images": sorted(r["image"] for r in records), "mean": mean, "sinr_vs_best_uniform": comparisons,
           "fitted_psnr": _mean([r["fitted_psnr"] for r in records])}
    if records and "fits" in records[0]:
        out["learned_vs_random"] = {
            start: {k: _mean([r["fits"][start][k] for r in records]) for k in ("after_inner_steps_psnr", "fitted_psnr")}
            for start in ("learned", "random")}
    return out


def markdown(results: dict) -> str:
    lines = ["# Meta-learned INRs on Kodak (C3 / C4 / C5), coded with SINR and uniformly", "",
             f"Protocol: {json.dumps(results['protocol'])}.", "",
             "bpp from each written file (bare, header included) over the image's pixels; the shared "
             "initialisation or base network is reported apart (it is written once). PSNR of the decoded file, "
             "mean over the images. Saving: 1 - SINR's bpp / the bpp of the front of every uniform point of the "
             "configuration at SINR's PSNR (interpolated; '-' outside the front).", ""]
    for name, s in results["configs"].items():
        shared = s["meta_learning"]
        lines += [f"## {name}", "",
                  f"Images: {', '.join(s['images'])} ({len(s['images'])}). Meta-learning: {shared['steps']} outer steps, "
                  f"loss {shared['loss_first_10']:.4f} -> {shared['loss_last_10']:.4f} (first / last 10 steps); shared part "
                  f"{shared['shared_bytes_float32']:,} B in float32. Fitted PSNR before coding: {s['fitted_psnr']:.2f} dB.", ""]
        if "learned_vs_random" in s:
            lv = s["learned_vs_random"]
            lines += [md_table(["start", "PSNR after the 3 learned steps (dB)", "PSNR after fitting (dB)"],
                               [[k, f"{v['after_inner_steps_psnr']:.2f}", f"{v['fitted_psnr']:.2f}"] for k, v in lv.items()]), ""]
        rows = [[r["method"], r["setting"], r["images"], f"{r['bpp']:.4f}", f"{r['psnr']:.2f}"] for r in s["mean"].values()]
        lines += [md_table(["method", "setting", "images", "bpp", "PSNR (dB)"], rows), ""]
        rows = [[c["point"], f"{c['psnr']:.2f}", f"{c['bpp']:.4f}",
                 "-" if c["best_uniform_bpp"] is None else f"{c['best_uniform_bpp']:.4f}",
                 "-" if c["saving"] is None else f"{100 * c['saving']:.1f}%", c["dominated_by"] or "-"]
                for c in s["sinr_vs_best_uniform"]]
        lines += [md_table(["SINR point", "PSNR (dB)", "bpp", "best uniform bpp at that PSNR", "saving",
                            "a uniform point as good in both"], rows), ""]
    if results["not_evaluated"]:
        lines += [f"Not evaluated in this run: {', '.join(results['not_evaluated'])}.", ""]
    return "\n".join(lines)


def method_curves(ax, rows, is_baseline) -> None:
    """One curve per method through its (bpp, PSNR) rows; baselines dashed."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append((r["bpp"], r["psnr"]))
    for method, pts in sorted(groups.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--" if is_baseline(method) else "o-", ms=4, label=method)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    published = json.loads(kodak.PUBLISHED.read_text())["methods"] if kodak.PUBLISHED.is_file() else {}
    names = list(results["configs"])
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(5 * (len(names) + 1), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        method_curves(ax, results["configs"][name]["mean"].values(), lambda method: not method.startswith("sinr"))
        ax.set_title(f"{name} (ours, 1/{results['protocol']['downscale']} scale, held out)", fontsize=9)
    ax = axes[0][-1]
    for peer in ("INRIC meta-learned 7-bit", "COIN++ (5-bit, entropy estimate)", "INRIC basic 8-bit"):
        if peer in published:
            ax.plot(published[peer]["bpp"], published[peer]["psnr"], "x:", label=f"{peer} (published, 768x512)")
    ax.set_title("published curves (context, other protocol)", fontsize=9)
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xlabel("bpp (file bytes)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(True, which="both", color="0.9")
        ax.legend(fontsize=6)
    fig.suptitle("Meta-learned INRs: SINR vs uniform coding, reduced scale (bpp at this size is not comparable with "
                 "the full-resolution published curves)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def records_within(test: dict[str, torch.Tensor], record_of, text: str, deadline: float | None,
                   not_evaluated: list[str]) -> list[dict]:
    """Each test image's record, ``record_of(name, image, start_new)``: cached ones always, new work
    only before ``deadline``; the images left are added to ``not_evaluated``."""
    records = []
    for name, image in test.items():
        record = record_of(name, image, deadline is None or time.monotonic() < deadline)
        if record is None:
            not_evaluated.append(f"{text} {name} (time budget spent)")
        else:
            records.append(record)
    return records


def run(args) -> dict:
    parsed = {text: parse_config(text) for text in args.configs}  # every name checked before any work
    args.cache.mkdir(parents=True, exist_ok=True)
    train = load_set(args.kodak, args.train, args.downscale)
    test = load_set(args.kodak, args.test, args.downscale)
    protocol = {"downscale": args.downscale, "train": args.train, "test": args.test, "outer_steps": args.outer_steps,
                "outer_lr": args.outer_lr, "c5_outer_lr": args.c5_outer_lr, "inner_pixels": args.inner_pixels,
                "fit_steps": args.fit_steps, "fit_lr": args.fit_lr, "refine_steps": args.refine_steps,
                "ft_steps": args.ft_steps, "ft_lr": FT_LR, "c5_width": args.c5_width, "patch": PATCH,
                "pe_frequencies": PE_FREQUENCIES, "sinr_settings": SINR_SETTINGS, "uniform_bits": UNIFORM_BITS,
                "ft_bits": FT_BITS, "seed": args.seed, "threads": torch.get_num_threads(), "cpu": cpu_model()}
    configs, not_evaluated = {}, []
    deadline = time.monotonic() + args.budget_minutes * 60 if args.budget_minutes else None
    for text, (kind, size) in parsed.items():
        if deadline is not None and time.monotonic() > deadline:
            not_evaluated.append(f"{text} (time budget spent)")
            continue
        learned, info = learned_for(kind, size, train, args)
        records = records_within(test, lambda name, image, start_new: evaluate(kind, size, learned, name, image, args,
                                                                              start_new=start_new),
                                 text, deadline, not_evaluated)
        if records:
            configs[text] = {**summarize(records), "meta_learning": info}
    not_evaluated += [f"{c} (not requested)" for c in CONFIGS if c not in args.configs]
    results = {"protocol": protocol, "configs": configs, "not_evaluated": not_evaluated,
               "tuned_on": "nothing: settings fixed before any run (SINR / uniform menus as the Kodak benchmark's)"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = NAME if not args.tag else f"{NAME}_{args.tag}"
    publish(out, name, __doc__.splitlines()[0], results, markdown(results))
    if configs:
        plot(results, out / f"{name}.png")
    return results


def protocol_parser(prog: str, description: str, configs: list[str]) -> argparse.ArgumentParser:
    """The options that define the protocol (images, meta-learning, fitting, fine-tuning, caches),
    shared by every benchmark that reuses this one's learned initialisations and fits."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--configs", nargs="+", default=configs, help="C3-W / C4-W (SIREN width W) and C5-D (latent size D)")
    parser.add_argument("--kodak", type=Path, default=kodak.DEFAULT_KODAK, help="directory with kodim01..24.png")
    parser.add_argument("--train", nargs="+", default=TRAIN, help="images the meta-learning sees")
    parser.add_argument("--test", nargs="+", default=TEST, help="held-out images fitted and coded")
    parser.add_argument("--downscale", type=int, default=4, help="box-downscale factor of every image")
    parser.add_argument("--outer-steps", type=int, default=500, help="meta-learning steps of every configuration")
    parser.add_argument("--outer-lr", type=float, default=1e-4, help="C3/C4 meta-learning (outer Adam) rate")
    parser.add_argument("--c5-outer-lr", type=float, default=1e-4, help="C5 meta-learning (outer Adam) rate")
    parser.add_argument("--inner-pixels", type=int, default=4096, help="C3/C4: random pixels per inner step")
    parser.add_argument("--c5-width", type=int, default=128, help="C5 base network width (5 layers)")
    parser.add_argument("--fit-steps", type=int, default=500, help="C3/C4: Adam steps after the learned inner steps")
    parser.add_argument("--fit-lr", type=float, default=1e-4, help="C3/C4: rate of those steps")
    parser.add_argument("--refine-steps", type=int, default=100, help="C5: Adam steps on the latents after the inner steps")
    parser.add_argument("--ft-steps", type=int, default=50, help="fine-tuning steps of every coding (SINR and uniform)")
    parser.add_argument("--budget-minutes", type=float, default=0, help="stop starting new work after this (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every initialisation and meta-learning run")
    parser.add_argument("--cache", type=Path, default=CACHE, help="checkpoints and per-image records (a run resumes)")
    parser.add_argument("--out", type=Path, default=kodak.RESULTS, help="folder the results go to")
    parser.add_argument("--tag", default="", help="results go to NAME_TAG.* (kept beside the default run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = protocol_parser("python -m benchmarks.meta", __doc__.split("\n\n")[0], CONFIGS)
    args = parser.parse_args(argv)
    return exit_code(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
