"""Whole nerfacto scenes on lego_200: file bytes against PSNR, SINR MLPs against uniform ones.

``python -m benchmarks.nerf_scene_rd`` loads the nerfacto run of ``benchmarks.nerf_lego``
(train it first: ``python -m benchmarks.nerf_lego train --method nerfacto``) and codes its field
MLPs and proposal networks three ways, the hash tables the same way for all three:

- **sinr**: the plugin's SINR coding of every field linear (``compress_fields``);
- **uniform 8-bit** (a baseline): every linear SINR codes on a per-tensor 8-bit uniform grid,
  everything else stored as SINR's file stores it (``store_fields_uniform``);
- **uniform searched** (a baseline): per-layer widths from ``UNIFORM_BITS``, chosen by the same
  greedy search ``torch_sinr.compress`` uses for mixed precision (``autotune`` with SINR off), to
  lose at most what SINR's coding of the MLPs loses on the training-ray sample.

Then, for each coding and PSNR-drop target (on a fixed sample of training rays, never the test
views): the hash tables quantized level by level at the step the search picks
(``scene_codec.code_tables``): the post-training point; and that scene trained
``--finetune-steps`` more steps as it is stored, with the rate term (``finetune_scene``; every
coding gets the same steps, straight-through on its grids): the fine-tuned point. Every point's
file is written and checked to decode to exactly the scene that is scored (so every figure is
the file's); every byte counts. Test PSNR: every ``--test-stride``-th test view (25 views at the
default 8), rendered whole, mean and standard error over views. The reported point of each
coding is chosen on the training rays alone: the smallest file within ``TARGET_DROP_DB`` of the
uncompressed scene there.

Published codecs for hash-grid NeRFs are drawn as labelled context points: they train their own
scenes, with other budgets (GPU, 20-30k steps), on the full 800x800 Blender scenes, so they are
not a like-for-like comparison. Each (coding, target) pair is kept as a record in
``benchmarks/cache/nerf_scene_rd/`` when it finishes, so a run resumes where it stopped and a
fresh clone rebuilds the tables from the records (``--cached-only``). Writes
``nerf_scene_rd.{json,md,png}`` into ``--out`` (default benchmarks/runs; ``--out
benchmarks/results`` refreshes the committed results).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from ._common import HelpFormatter, exit_code, md_table, publish

REPO = Path(__file__).resolve().parents[1]
RUNS_OUT = REPO / "benchmarks" / "runs"
CACHE = REPO / "benchmarks" / "cache" / "nerf_scene_rd"
TARGETS_DB = (0.1, 0.3, 1.0, 3.0)
CODINGS = ("sinr", "uniform 8-bit", "uniform searched")
BASELINES = CODINGS[1:]
UNIFORM_BITS = (12, 10, 9, 8, 7, 6, 5, 4)  # torch_sinr.tune.pipeline.UNIFORM_BITS, the search's menu
TEST_STRIDE = 8  # test views 0, 8, ..., 192: 25 views
# The targets: the whole file at least 10x smaller at most 0.3 dB below, post-training;
# at least 30x with the short fine-tune. The drop is judged on the training rays (the choice).
TARGET = {"post_training_ratio": 10.0, "finetuned_ratio": 30.0, "psnr_drop_max_db": 0.3}
TARGET_DROP_DB = TARGET["psnr_drop_max_db"]
# Published context (different training budgets and data: see the module docstring). Sizes are of
# the whole compressed model; PSNR on the 8 Blender scenes' average (lego alone where stated).
PUBLISHED = [
    {"label": "Instant-NGP + zip (2.4% of the model, lego)", "megabytes": 0.53, "psnr": 32.31},
    {"label": "BiRF (Blender average)", "megabytes": 0.5, "psnr": 32.03},
]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def search_uniform_widths(model, score, drop: float, menu=UNIFORM_BITS) -> tuple[dict[str, int], dict]:
    """Per-layer widths for the field linears: ``autotune`` with SINR off (mixed precision, the
    search ``torch_sinr.compress`` runs for its baseline) on ``model``'s scene, losing at most
    ``drop`` on ``score``. ``score`` renders the live model, so each candidate's tensors are put
    into the scene for its evaluation and the originals put back after it."""
    import torch

    from torch_sinr import MaxDrop, autotune
    from torch_sinr_nerfstudio.compress import fields_config
    from torch_sinr_nerfstudio.state import scene_view

    view = scene_view(model)
    original = {k: v.detach().clone() for k, v in view.state_dict().items()}

    def evaluate(candidate) -> float:
        with torch.no_grad():
            view.load_state_dict(candidate.state_dict())
        try:
            return score(model)
        finally:
            with torch.no_grad():
                view.load_state_dict(original)

    work = copy.deepcopy(view)  # autotune installs its result into the module it is given: a copy
    result = autotune(work, evaluate, MaxDrop(max(drop, 0.0)), fields_config(work), sinr=False,
                      uniform_bits=tuple(menu), progress=True)
    return dict(result.uniform), {"evaluations": result.evaluations, "seconds": result.seconds,
                                  "training_ray_psnr": result.score, "drop_db": drop, "menu": list(menu)}


def cache_key(record_inputs: dict) -> str:
    return hashlib.sha256(json.dumps(record_inputs, sort_keys=True).encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> dict:
    if args.cached_only:
        return finish(args, *_cached(args))
    import torch

    from benchmarks.nerf_lego import offline_lpips, run_dir, test_views
    from torch_sinr_nerfstudio.compress import (check_file_equals_memory, compress_fields, file_bytes_by_part,
                                                save_scene, store_fields_uniform)
    from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding
    from torch_sinr_nerfstudio.hash_tables import scene_tables
    from torch_sinr_nerfstudio.pipeline_io import load_trained_pipeline
    from torch_sinr_nerfstudio.rays import TrainRays, view_psnrs
    from torch_sinr_nerfstudio.scene_codec import FinetuneOptions, SceneTarget, code_tables, finetune_scene
    from torch_sinr_nerfstudio.state import scene_view, state_bytes_by_part

    offline_lpips()
    config_path = run_dir("nerfacto") / "config.yml"
    if not config_path.is_file():
        raise SystemExit(f"{config_path} not found: train it first (python -m benchmarks.nerf_lego train --method "
                         f"nerfacto)")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="nerf_scene_rd_"))
    options = FinetuneOptions(steps=args.finetune_steps, rays=args.finetune_rays, rate_lambda=args.rate_lambda)
    # every torch HashEncoding through the fused gather: the same function, twice the speed
    with fast_hash_encoding():
        _, pipeline, checkpoint, step = load_trained_pipeline(config_path)
        model = pipeline.model
        original = state_bytes_by_part(scene_view(model))
        rays = TrainRays(pipeline.datamanager.train_dataset, device=pipeline.device)
        score = rays.scorer(args.score_rays)
        test = test_views(args.test_stride)
        inputs = {"checkpoint_step": int(step), "model_bytes": sum(original.values()), "score_rays": args.score_rays,
                  "test_stride": args.test_stride, "finetune": {k: getattr(options, k) for k in
                                                                ("steps", "rays", "lr", "rate_lambda", "seed")}}
        header_path = CACHE / f"scene-{cache_key(inputs)}.json"
        if header_path.is_file():
            header = json.loads(header_path.read_text())
        else:
            t0 = time.perf_counter()
            views = view_psnrs(model, test)
            header = {"inputs": inputs, "uncompressed": {"view_psnr": views, "training_ray_psnr": score(model),
                                                         "seconds": time.perf_counter() - t0},
                      "run": {"checkpoint": str(checkpoint), "bytes_by_part": original}}
            # what SINR's coding of the MLPs alone costs on the training rays: the searched
            # baseline's allowance, so both code the MLPs at the same training-ray quality
            scene = copy.deepcopy(model)
            compress_fields(scene, measure_file=False)
            header["sinr_mlps"] = {"training_ray_psnr": score(scene)}
            del scene
            widths, search = search_uniform_widths(
                model, score, header["uncompressed"]["training_ray_psnr"] - header["sinr_mlps"]["training_ray_psnr"])
            header["uniform_searched"] = {"widths": widths, "search": search}
            CACHE.mkdir(parents=True, exist_ok=True)
            header_path.write_text(json.dumps(header, indent=1) + "\n")
        score_before = header["uncompressed"]["training_ray_psnr"]
        print(f"uncompressed: {sum(original.values())} B, test PSNR {mean_se(header['uncompressed']['view_psnr'])[0]:.3f}"
              f" dB, training-ray PSNR {score_before:.3f} dB (step {step})", flush=True)

        def code_mlps(scene, coding: str) -> None:
            if coding == "sinr":
                compress_fields(scene, measure_file=False)
            elif coding == "uniform 8-bit":
                store_fields_uniform(scene, 8)
            else:
                store_fields_uniform(scene, header["uniform_searched"]["widths"])

        def record(coding: str, kind: str, target_db: float, scene, table_coding, extra: dict) -> dict:
            view = scene_view(scene)
            path = scratch / f"{coding}-{kind}-{target_db}.safetensors".replace(" ", "_")
            report = save_scene(view, path, method_name="nerfacto", step=step, require_codes=coding == "sinr")
            check_file_equals_memory(view, path)  # the scored scene is exactly what the file decodes to
            t0 = time.perf_counter()
            views = view_psnrs(scene, test)
            point = {"coding": coding, "kind": kind, "target_drop_db": target_db, "file_bytes": report.file_bytes,
                     "bytes_by_part": file_bytes_by_part(path, view), "view_psnr": views,
                     "training_ray_psnr": score(scene), "table_step": table_coding.step,
                     "file_equals_memory": True, "eval_seconds": time.perf_counter() - t0, **extra}
            mean, se = mean_se(views)
            print(f"{coding}, {kind}, {target_db} dB: {point['file_bytes']} B, test PSNR {mean:.3f} +- {se:.3f} dB, "
                  f"training-ray drop {score_before - point['training_ray_psnr']:+.3f} dB", flush=True)
            return point

        for target_db in args.targets:  # every coding at a target before the next target: a cut run compares
            for coding in args.codings:
                key = cache_key({**inputs, "coding": coding, "target_db": target_db,
                                 "widths": header["uniform_searched"]["widths"] if coding == "uniform searched" else None})
                path = CACHE / f"pair-{key}.json"
                if path.is_file():
                    continue
                scene = copy.deepcopy(model)
                code_mlps(scene, coding)
                view = scene_view(scene)
                tables = scene_tables(view)
                t0 = time.perf_counter()
                table_coding = code_tables(view, tables, SceneTarget(psnr_drop=target_db), lambda _: score(scene),
                                           score_before)
                points = [record(coding, "post-training", target_db, scene, table_coding,
                                 {"search_seconds": time.perf_counter() - t0, "probes": len(table_coding.probes)})]
                if options.steps:
                    log = finetune_scene(scene, view, tables, rays, options, progress=args.progress)
                    points.append(record(coding, "fine-tuned", target_db, scene, table_coding,
                                         {"finetune_seconds": log["seconds"], "history": log["history"]}))
                path.write_text(json.dumps({"inputs": {**inputs, "coding": coding, "target_db": target_db},
                                            "points": points}, indent=1) + "\n")
                del scene
    header_found, points = _collect(args, header_path, inputs)
    return finish(args, header_found, points, time.perf_counter() - started)


def _collect(args, header_path: Path, inputs: dict) -> tuple[dict, list[dict]]:
    header = json.loads(header_path.read_text())
    points = []
    for path in sorted(CACHE.glob("pair-*.json")):
        rec = json.loads(path.read_text())
        i = rec["inputs"]
        if {k: i[k] for k in inputs} == inputs and i["coding"] in args.codings and i["target_db"] in args.targets:
            points += rec["points"]
    return header, points


def _cached(args) -> tuple[dict, list[dict], None]:
    headers = sorted(CACHE.glob("scene-*.json"))
    if not headers:
        raise SystemExit(f"no cached scene record in {CACHE}: run without --cached-only first")
    # the newest scene record whose inputs match the arguments
    for header_path in reversed(headers):
        inputs = json.loads(header_path.read_text())["inputs"]
        if (inputs["score_rays"] == args.score_rays and inputs["test_stride"] == args.test_stride
                and inputs["finetune"]["steps"] == args.finetune_steps):
            return (*_collect(args, header_path, inputs), None)
    raise SystemExit(f"no cached scene record in {CACHE} for these arguments")


def choose(points: list[dict], score_before: float) -> dict:
    """Per coding and kind, the smallest file within TARGET_DROP_DB of the uncompressed scene on the
    training rays (the test views play no part in the choice); None where no point is."""
    out = {}
    for coding in CODINGS:
        for kind in ("post-training", "fine-tuned"):
            within = [p for p in points if p["coding"] == coding and p["kind"] == kind
                      and score_before - p["training_ray_psnr"] <= TARGET_DROP_DB]
            out[f"{coding}|{kind}"] = min(within, key=lambda p: p["file_bytes"], default=None)
    return out


def bytes_at(points: list[dict], psnr: float) -> float | None:
    """A coding's file bytes at ``psnr`` (test-view mean): interpolated linearly in log bytes
    between its two neighbouring points; None outside their range (never extrapolated)."""
    pts = sorted((mean_se(p["view_psnr"])[0], p["file_bytes"]) for p in points)
    for (q0, b0), (q1, b1) in zip(pts, pts[1:]):
        if q0 <= psnr <= q1:
            if q1 == q0:
                return float(min(b0, b1))
            t = (psnr - q0) / (q1 - q0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def finish(args, header: dict, points: list[dict], seconds: float | None) -> dict:
    un = header["uncompressed"]
    score_before = un["training_ray_psnr"]
    model_bytes = header["inputs"]["model_bytes"]
    for p in points:
        p["ratio"] = model_bytes / p["file_bytes"]
        p["view_psnr_mean"], p["view_psnr_se"] = mean_se(p["view_psnr"])
        p["training_ray_drop_db"] = score_before - p["training_ray_psnr"]
    chosen = choose(points, score_before)
    psnr, psnr_se = mean_se(un["view_psnr"])
    comparison = {}
    for kind in ("post-training", "fine-tuned"):
        sinr = chosen[f"sinr|{kind}"]
        if sinr is None:
            continue
        rows = {}
        for baseline in BASELINES:
            same = [p for p in points if p["coding"] == baseline and p["kind"] == kind]
            at = bytes_at(same, sinr["view_psnr_mean"])
            picked = chosen[f"{baseline}|{kind}"]
            # SINR's chosen file minus the baseline's, view by view: the same views, so the spread of
            # the difference, not of each file's PSNR over views, is its uncertainty
            paired = None if picked is None else mean_se([a - b for a, b in zip(sinr["view_psnr"], picked["view_psnr"])])
            rows[baseline] = {"bytes_at_sinr_test_psnr": at,
                              "sinr_saving": None if at is None else 1.0 - sinr["file_bytes"] / at,
                              "chosen_bytes": None if picked is None else picked["file_bytes"],
                              "paired_psnr_difference_db": None if paired is None else {"mean": paired[0],
                                                                                        "se": paired[1]}}
        comparison[kind] = {"sinr_bytes": sinr["file_bytes"], "sinr_test_psnr": sinr["view_psnr_mean"],
                            "baselines": rows}
    results = {
        "run": {**header["run"], "step": header["inputs"]["checkpoint_step"], "model_bytes": model_bytes},
        "uncompressed": {"view_psnr": un["view_psnr"], "psnr": psnr, "psnr_se": psnr_se,
                         "training_ray_psnr": score_before, "num_eval_images": len(un["view_psnr"])},
        "sinr_mlps": header["sinr_mlps"], "uniform_searched": header["uniform_searched"],
        "undertrained": psnr < 25.0,
        "score_rays": header["inputs"]["score_rays"], "test_stride": header["inputs"]["test_stride"],
        "targets_db": sorted({p["target_drop_db"] for p in points}), "finetune": header["inputs"]["finetune"],
        "points": points, "chosen": {k: (None if v is None else {"target_drop_db": v["target_drop_db"],
                                                                 "file_bytes": v["file_bytes"]})
                                     for k, v in chosen.items()},
        "comparison": comparison, "target": TARGET, "published": PUBLISHED, "seconds": seconds,
    }
    results["verdict"] = verdict(results, chosen)
    plot(results, Path(args.out) / "nerf_scene_rd.png")
    publish(args.out, "nerf_scene_rd", __doc__.splitlines()[0], results, markdown(results, chosen))
    return results


def verdict(results: dict, chosen: dict) -> dict:
    """SINR's chosen points against the ratio targets."""
    out = {}
    for kind, key in (("post-training", "post_training_ratio"), ("fine-tuned", "finetuned_ratio")):
        best = chosen.get(f"sinr|{kind}")
        out[kind] = {"ratio": best["ratio"] if best else None, "at_target_db": best["target_drop_db"] if best else None,
                     "target_ratio": TARGET[key], "met": bool(best and best["ratio"] >= TARGET[key])}
    return out


def _paired(row: dict) -> str:
    d = row["paired_psnr_difference_db"]
    if d is None:
        return ""
    return (f" (chosen files: {row['chosen_bytes']:,} B, SINR's minus its test PSNR {d['mean']:+.3f} ± {d['se']:.3f} dB "
            "paired over views)")


def _pct(x: float | None) -> str:
    return "n/a (outside the baseline's range)" if x is None else f"{100 * x:+.1f}%"


def markdown(results: dict, chosen: dict) -> str:
    run, un = results["run"], results["uncompressed"]
    widths = results["uniform_searched"]["widths"]
    search = results["uniform_searched"]["search"]
    lines = ["# nerfacto on lego_200: whole-file bytes against PSNR, SINR and uniform MLPs", "",
             "*Generated by `python -m benchmarks.nerf_scene_rd`; not edited by hand.*", "",
             f"Scene: nerfacto (torch) trained {run['step'] + 1} steps under the reduced CPU protocol of "
             f"`benchmarks/nerf_lego.py`; {run['model_bytes']:,} bytes in memory; test PSNR {un['psnr']:.3f} "
             f"± {un['psnr_se']:.3f} dB (mean ± standard error over {un['num_eval_images']} test views, every "
             f"{results['test_stride']}th)" + (" (**undertrained**: below 25 dB)." if results["undertrained"] else "."),
             "",
             f"MLP codings (field MLPs and proposal networks; the hash tables coded the same way for all): **sinr** "
             f"(the plugin's coding; training-ray PSNR {un['training_ray_psnr']:.3f} -> "
             f"{results['sinr_mlps']['training_ray_psnr']:.3f} dB with the MLPs alone coded); **uniform 8-bit**; "
             f"**uniform searched**: widths {', '.join(f'{k} {v}' for k, v in widths.items())}, chosen by "
             f"autotune with SINR off to lose at most SINR's {search['drop_db']:.3f} dB "
             f"({search['evaluations']} evaluations, {search['seconds']:.0f} s).", "",
             f"Targets are PSNR drops on {results['score_rays']} fixed training pixels. Fine-tuning: "
             f"{results['finetune']['steps']} steps of {results['finetune']['rays']} rays, rate weight "
             f"{results['finetune']['rate_lambda']:g} per bit per table entry, every stored tensor through its grid. "
             "Every file was checked to decode to exactly the scene scored.", ""]
    rows = []
    for p in sorted(results["points"], key=lambda p: (p["kind"], p["target_drop_db"], CODINGS.index(p["coding"]))):
        parts = p["bytes_by_part"]
        picked = (chosen.get(f"{p['coding']}|{p['kind']}") or {}).get("file_bytes") == p["file_bytes"]
        rows.append([p["kind"], f"{p['target_drop_db']:g}", p["coding"] + (" (chosen)" if picked else ""),
                     f"{p['file_bytes']:,}", f"{p['ratio']:.1f}x", f"{p['training_ray_drop_db']:+.3f}",
                     f"{p['view_psnr_mean']:.3f} ± {p['view_psnr_se']:.3f}", f"{parts['hash_grid']:,}",
                     f"{parts['mlp']:,}", f"{parts['proposal_networks']:,}",
                     f"{parts['other'] + parts['container']:,}"])
    lines.append(md_table(["run", "target drop (dB)", "MLP coding", "file bytes", "smaller by",
                           "training-ray drop (dB)", "test PSNR (dB)", "hash tables", "field MLPs",
                           "proposal networks", "other + container"], rows))
    lines.append("")
    lines.append(f"Chosen: per coding and run, the smallest file within {TARGET_DROP_DB} dB on the training rays. "
                 "SINR against each baseline at SINR's chosen point's test PSNR (the baseline's bytes interpolated "
                 "between its points in log bytes, never extrapolated):")
    lines.append("")
    for kind, c in results["comparison"].items():
        parts = [f"{b}: {_pct(r['sinr_saving'])}" + _paired(r) for b, r in c["baselines"].items()]
        lines.append(f"- {kind}: SINR {c['sinr_bytes']:,} B at {c['sinr_test_psnr']:.3f} dB; saving against "
                     + "; ".join(parts) + ".")
    lines.append("- The MLP codings differ by their field MLPs' bytes (the table above); the whole files differ mostly "
                 "by the table step each target's search lands on. Fine-tuned points vary from run to run (its sums "
                 "run on several threads), so read differences between codings against the standard errors.")
    v = results["verdict"]
    for kind in ("post-training", "fine-tuned"):
        e = v[kind]
        ratio = f"{e['ratio']:.1f}x" if e["ratio"] else "no point"
        lines.append(f"- SINR {kind}, chosen on the training rays: {ratio} (target {e['target_ratio']:g}x): "
                     f"{'met' if e['met'] else 'not met'}.")
    lines += ["", "Published context (other training budgets and data; not like for like): "
              + "; ".join(f"{p['label']}: {p['megabytes']} MB at {p['psnr']} dB" for p in PUBLISHED) + "."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for coding, color in zip(CODINGS, ("C0", "C1", "C2")):
        for kind, marker, style in (("post-training", "o", "-"), ("fine-tuned", "s", "--")):
            pts = sorted((p for p in results["points"] if p["coding"] == coding and p["kind"] == kind),
                         key=lambda p: p["file_bytes"])
            if pts:
                ax.errorbar([p["file_bytes"] / 1e6 for p in pts], [p["view_psnr_mean"] for p in pts],
                            yerr=[p["view_psnr_se"] for p in pts], marker=marker, linestyle=style, color=color,
                            capsize=2, label=f"{coding}, {kind}")
    un = results["uncompressed"]
    ax.scatter([results["run"]["model_bytes"] / 1e6], [un["psnr"]], color="k", marker="x", label="uncompressed (float32)")
    for p in results["published"]:
        ax.scatter([p["megabytes"]], [p["psnr"]], marker="^", color="grey")
        ax.annotate(p["label"], (p["megabytes"], p["psnr"]), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("whole file (MB, log scale)")
    ax.set_ylabel(f"test PSNR (dB, mean ± s.e. over {un['num_eval_images']} views)")
    ax.set_title("nerfacto on lego_200 (reduced CPU protocol)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nerf_scene_rd", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS_DB),
                        help="PSNR-drop targets (dB, on the training-ray sample): one coded scene per target and coding")
    parser.add_argument("--codings", nargs="+", choices=CODINGS, default=list(CODINGS),
                        help="MLP codings to run (the tables are coded the same way for all)")
    parser.add_argument("--finetune-steps", type=int, default=120,
                        help="fine-tuning steps of each coded scene with the rate term (0: post-training only)")
    parser.add_argument("--finetune-rays", type=int, default=1024, help="training rays per fine-tuning step")
    parser.add_argument("--rate-lambda", type=float, default=1e-4,
                        help="weight of the rate term in the fine-tuning loss (per mean bit per table entry)")
    parser.add_argument("--score-rays", type=int, default=1 << 14,
                        help="size of the fixed training-ray sample that scores the PSNR drop in the searches")
    parser.add_argument("--test-stride", type=int, default=TEST_STRIDE,
                        help="score every this-many-th test view (8: 25 views)")
    parser.add_argument("--cached-only", action="store_true",
                        help="write the results from benchmarks/cache/nerf_scene_rd alone (no scene is loaded)")
    parser.add_argument("--out", type=Path, default=RUNS_OUT,
                        help="folder nerf_scene_rd.{json,md,png} go to (default: %(default)s; benchmarks/results "
                             "refreshes the committed results)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the fine-tuning progress bar (shown by default)")
    return exit_code(run, parser.parse_args(argv))


if __name__ == "__main__":  # nerfacto's parallel data manager spawns workers that re-import main
    sys.exit(main())
