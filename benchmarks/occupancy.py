"""Occupancy benchmark: Stanford meshes -> occupancy volumes -> INRs -> SINR vs uniform.

``python -m benchmarks.occupancy`` runs, per mesh (``--meshes``, default Lucy and Dragon):

1. the occupancy volume at ``--resolution``^3 (default 128, cached as .npz by mesh SHA-256);
2. an INR fit per ``--activations`` entry (default Gauss; ``--activations gauss siren wire`` is
   the Table S1 study), cached as .safetensors by settings, under the reduced CPU protocol of
   ``torch_sinr.inr.occupancy.fit.CPU_PROTOCOL`` (``--steps`` / ``--batch-size`` override it);
3. for the first activation: IoU and bytes uncompressed (float32 / float16 files), the uniform
   baseline plain (4..16 bits) and fine-tuned (5..9 bits), SINR at the paper's settings, SINR
   with fine-tuned codes, and ``torch_sinr.compress`` with an IoU-drop target (``--drop``);
   every byte count is the file written, every IoU what that file decodes to, over the full grid.
   Fine-tuning (the baseline's and SINR's alike) trains on fresh surface-weighted batches and
   keeps the iterate with the best IoU as estimated by ``BandIoU`` (every voxel near the surface,
   a sample elsewhere: 1/20 of a full-grid pass; ``--steer full`` uses the full grid), which
   also steers the pipeline's search;
4. per SINR point, the bytes the best baseline (the Pareto front of every uniform point, plain
   or fine-tuned, and float16) needs for the same IoU, interpolated, never extrapolated.

Writes ``occupancy.{json,md}`` (``occupancy_TAG`` with ``--tag``), ``occupancy_curves.png`` (IoU vs bytes) and
``occupancy_<mesh>.png`` (original | INR | SINR, shaded) into ``--out``: by default
``benchmarks/runs/occupancy`` (git-ignored), so a trial run never replaces committed results;
pass ``--out benchmarks/results`` to refresh those. ``--ply`` also writes marching-cubes meshes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._common import HelpFormatter, exit_code, md_table, write_results
from torch_sinr import MaxDrop, SINRConfig, compress, compress_model
from torch_sinr.tune.baselines import finetune_uniform, read_baseline, write_cast, write_uniform
from torch_sinr.errors import SINRError
from torch_sinr.tune.finetune import finetune_codes
from torch_sinr.inr.models import INR
from torch_sinr.tune.pipeline import MAX_PROBES, SINR_EVERYWHERE, UNIFORM_CANDIDATES
from torch_sinr.tune.finetune import SELECT_EVERY
from torch_sinr.inr.occupancy.fit import (CPU_PROTOCOL, CPU_PROTOCOL_RESOLUTION, cpu_protocol, fit_occupancy_cached,
                                      sampled_loss)
from torch_sinr.inr.occupancy.metrics import BandIoU, model_iou, predict_volume
from torch_sinr.inr.occupancy.render import render_comparison
from torch_sinr.inr.occupancy.store import mesh_volume
from torch_sinr.inr.occupancy.surface import field_to_ply
from torch_sinr.format import load_compressed, save_compressed

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO.parent / "shared" / "data" / "meshes"
MESH_FILES = {"lucy": "lucy.obj", "dragon": "dragon.ply", "armadillo": "armadillo.obj"}
CACHE = REPO / "benchmarks" / "cache" / "occupancy"  # volumes/ and fits/ (git-ignored)
RUNS = REPO / "benchmarks" / "runs" / "occupancy"
DESCRIPTION = "Occupancy fields of Stanford meshes: IoU and bytes, SINR vs uniform quantization."
# Bump when evaluate_model changes what it measures.
EVAL_VERSION = 2  # 2: fine-tuning on fresh batches, best iterate by IoU (1: one fixed sample, by its MSE)
PAPER_K2 = 2**16  # the paper's 16-bit indices
PAPER_S_RATIO = 0.45
# Bare files on both sides, as in the Kodak benchmark: the decoder knows the architecture.
STORE_NAMES = False
UNIFORM_BITS = tuple(range(4, 17))
UNIFORM_FT_BITS = tuple(range(5, 10))
# The paper's Table S1 (IoU at 128 hidden neurons); the Thai Statue is not in the shared data.
PAPER_TABLE_S1 = {"lucy": {"siren": 0.968, "gauss": 0.979, "wire": 0.965},
                  "thai_statue": {"siren": 0.962, "gauss": 0.975, "wire": 0.944}}


def sinr_config(**options) -> SINRConfig:
    return SINRConfig(store_names=STORE_NAMES, **options)


STEER_TEXT = {"band": "IoU estimated by BandIoU (every voxel within 3 of the surface, every 4th per axis elsewhere)",
              "full": "IoU over the full grid"}


def steering(kind: str, occupancy):
    """The IoU that picks fine-tuning iterates and steers the pipeline's search."""
    if kind == "full":
        return lambda m: model_iou(m, occupancy)
    return BandIoU(occupancy)


def uniform_ft_lr(bits: int) -> float:
    """The Kodak benchmark's choice: coarse grids need the larger steps (kodak_tuning.md)."""
    return 1e-3 if bits <= 7 else 1e-4


def decode_baseline(skeleton: INR, path: Path) -> INR:
    decoded = copy.deepcopy(skeleton)
    decoded.load_state_dict(read_baseline(path, skeleton=skeleton))
    return decoded.eval()


def decode_sinr(skeleton: INR, path: Path) -> INR:
    return load_compressed(path, copy.deepcopy(skeleton)).eval()


def evaluate_model(model: INR, occupancy, loss, ft_steps: int, drop: float, steer, workdir: Path,
                   progress: bool, max_probes: int = MAX_PROBES) -> tuple[list[dict], dict, str | None]:
    """Every method's (bytes, IoU) on one fitted INR; the decoded SINR models by "method setting";
    why the pipeline failed (None when it met its target).

    Every fine-tune (uniform and SINR alike) trains on ``loss`` (fresh batches) and keeps the
    iterate with the best IoU as ``steer(model)`` scores it; the pipeline's search is steered by
    the same score. Every IoU recorded is over the full grid."""
    skeleton = INR(model.config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    points: list[dict] = []
    decoded_sinr: dict[str, INR] = {}
    path = workdir / "file.safetensors"

    select = steer

    def record(method: str, setting, size: int, decoded: INR, seconds: float) -> None:
        points.append({"method": method, "setting": setting, "bytes": size, "iou": model_iou(decoded, occupancy),
                       "seconds": seconds})

    for dtype in ("float32", "float16"):
        started = time.perf_counter()
        size = write_cast(state, path, dtype, names=STORE_NAMES)
        record(dtype, dtype, size, decode_baseline(skeleton, path), time.perf_counter() - started)
    for bits in UNIFORM_BITS:
        started = time.perf_counter()
        size = write_uniform(state, path, bits, names=STORE_NAMES)
        record("uniform", bits, size, decode_baseline(skeleton, path), time.perf_counter() - started)
    for bits in UNIFORM_FT_BITS:
        started = time.perf_counter()
        tuned, grids = finetune_uniform(copy.deepcopy(model), loss, bits, ft_steps, lr=uniform_ft_lr(bits),
                                        select=select)
        size = write_uniform(tuned, path, bits, grids, names=STORE_NAMES)
        record("uniform+ft", bits, size, decode_baseline(skeleton, path), time.perf_counter() - started)

    def sinr(method: str, setting, cfg: SINRConfig, steps: int) -> None:
        started = time.perf_counter()
        compressed = copy.deepcopy(model)
        compress_model(compressed, cfg, progress=False)
        if steps:
            finetune_codes(compressed, loss, steps, lr=1e-3, train_dense=True, select=select)
        size = save_compressed(compressed, path, names=STORE_NAMES).file_bytes
        decoded_sinr[f"{method} {setting}"] = decode_sinr(skeleton, path)
        record(method, setting, size, decoded_sinr[f"{method} {setting}"], time.perf_counter() - started)

    sinr("sinr-paper", "16-bit values, k2=2^16", sinr_config(k2=PAPER_K2, s_ratio=PAPER_S_RATIO), 0)
    for s_ratio in (0.2, 0.3):
        sinr("sinr+ft", f"s={s_ratio} 8-bit dict=4",
             sinr_config(dict_ratio=4, s_ratio=s_ratio, value_bits=8), ft_steps)

    # The one-call pipeline with its own settings ladder, steered by the same IoU; its result is
    # scored on the full grid and written bare like the others.
    started = time.perf_counter()
    piped = copy.deepcopy(model)
    try:
        result = compress(piped, loss, evaluate=select, target=MaxDrop(drop), steps=ft_steps, max_probes=max_probes,
                          select_by_score=True, progress=progress)
    except SINRError as error:  # the target cannot be met: a result to report, not a crash
        return points, decoded_sinr, str(error)
    size = save_compressed(piped, path, names=STORE_NAMES).file_bytes
    name = f"compress MaxDrop({drop})"
    decoded_sinr[name] = decode_sinr(skeleton, path)
    record("compress", f"MaxDrop({drop})", size, decoded_sinr[name], time.perf_counter() - started)
    points[-1]["candidates"] = guard_candidates(result, occupancy, path)
    return points, decoded_sinr, None


def guard_candidates(result, occupancy, path: Path) -> list[dict]:
    """compress's candidates for the target (its per-layer search, and the fair uniform baselines
    and SINR on every layer its guard runs with the same fine-tuning, container and coder): each
    file's bytes (written as
    every other file here, without names), its IoU over the full grid (the candidates are kept as
    their files decode), the seconds each took and whether it was kept. The search's seconds are
    the call's less the other candidates' (install and scoring included)."""
    record = result.baseline or {"candidates": {}, "kept": "search", "skipped": {}}
    rows, baseline_seconds = [], 0.0
    for name, model in result.candidates.items():
        entry = record["candidates"].get(name, {})
        seconds = entry.get("seconds")
        baseline_seconds += seconds or 0.0
        size = save_compressed(model, path, names=STORE_NAMES).file_bytes
        rows.append({"candidate": name, "bytes": size, "iou": model_iou(model, occupancy),
                     "seconds": seconds, "kept": record["kept"] == name})
    for row in rows:
        if row["candidate"] == "search":
            row["seconds"] = result.seconds - baseline_seconds
            row["probes"] = len(result.probes) if record["kept"] == "search" else None
    rows += [{"candidate": name, "bytes": None, "iou": None, "seconds": None, "kept": False, "skipped": why}
             for name, why in record["skipped"].items()]
    return rows


def best_baseline_bytes(points: list[dict], target_iou: float) -> float | None:
    """Bytes the best baseline needs for ``target_iou``: linear along the Pareto front of
    (IoU, bytes); None outside the front's IoU range (no extrapolation)."""
    pairs = [(p["iou"], p["bytes"]) for p in points if p["method"] in ("uniform", "uniform+ft", "float16")]
    front: list[tuple[float, float]] = []
    for quality, size in sorted(pairs, key=lambda x: (-x[0], x[1])):  # best IoU first
        if not front or size < front[-1][1]:
            front.append((quality, size))
    front.reverse()
    if not front or not front[0][0] <= target_iou <= front[-1][0]:
        return None
    if len(front) == 1:
        return float(front[0][1])
    for (q0, b0), (q1, b1) in zip(front, front[1:]):
        if q0 <= target_iou <= q1:
            return b0 + (b1 - b0) * (target_iou - q0) / (q1 - q0)
    return None


def summarize(points: list[dict], reference_iou: float, drop: float) -> list[dict]:
    rows = []
    for p in points:
        if not p["method"].startswith(("sinr", "compress")):
            continue
        need = best_baseline_bytes(points, p["iou"])
        rows.append({**p, "iou_drop": reference_iou - p["iou"], "within_drop": reference_iou - p["iou"] <= drop,
                     "baseline_bytes": need, "saving": None if need is None else 1 - p["bytes"] / need})
    return rows


def plot_curves(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    meshes = list(results["meshes"])
    fig = Figure(figsize=(6 * len(meshes), 4.5))
    axes = fig.subplots(1, len(meshes), squeeze=False)[0]
    styles = {"uniform": "o-", "uniform+ft": "s-", "float16": "^", "float32": "v", "sinr-paper": "D",
              "sinr+ft": "*", "compress": "P"}
    for ax, name in zip(axes, meshes):
        points = results["meshes"][name]["points"]
        for method, style in styles.items():
            chosen = sorted((p for p in points if p["method"] == method), key=lambda p: p["bytes"])
            if chosen:
                ax.plot([p["bytes"] for p in chosen], [p["iou"] for p in chosen], style, label=method, markersize=6)
        ax.set_xscale("log")
        ax.set_xlabel("file bytes")
        ax.set_ylabel("IoU (full grid)")
        reference = results["meshes"][name]["fit"]["iou"]
        ax.set_ylim(max(0.0, reference - 0.1), min(1.0, reference + 0.02))
        ax.axhline(reference, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{name} at {results['resolution']}^3")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(results: dict) -> str:
    lines = [f"# Occupancy: SINR vs uniform quantization at {results['resolution']}^3", "",
             f"*Generated by `python -m benchmarks.occupancy`; not edited by hand.* {results['protocol_note']}", ""]
    if "finetune_note" in results:
        lines += [results["finetune_note"], ""]
    study = results.get("table_s1")
    if study:
        activations = sorted({a for row in study.values() for a in row})
        rows = [[name] + [f"{study[name].get(a, float('nan')):.3f}" for a in activations]
                + [" / ".join(f"{PAPER_TABLE_S1[name][a]:.3f}" for a in activations) if name in PAPER_TABLE_S1 else "-"]
                for name in study]
        lines += ["## IoU per activation (the paper's Table S1)", "",
                  md_table(["mesh"] + activations + ["paper (" + " / ".join(activations) + ")"], rows), ""]
    for name, entry in results["meshes"].items():
        fit = entry["fit"]
        lines += [f"## {name}", "", f"INR {fit['activation']} {fit['layers']}: IoU {fit['iou']:.4f}, "
                  f"fitted in {fit['seconds']:.0f} s.", ""]
        rows = [[p["method"], p["setting"], p["bytes"], f"{p['iou']:.4f}"] for p in entry["points"]]
        lines += [md_table(["method", "setting", "bytes", "IoU"], rows), ""]
        if entry["pipeline_error"]:
            lines += [f"`compress(target=MaxDrop({results['drop']}))` failed: {entry['pipeline_error']}", ""]
        rows = [[r["method"], r["setting"], r["bytes"], f"{r['iou']:.4f}", f"{r['iou_drop']:+.4f}",
                 "-" if r["baseline_bytes"] is None else f"{r['baseline_bytes']:.0f}",
                 "-" if r["saving"] is None else f"{100 * r['saving']:.1f}%"] for r in entry["sinr_vs_baseline"]]
        lines += ["SINR against the best baseline at equal IoU (saving = 1 - SINR bytes / baseline bytes):", "",
                  md_table(["method", "setting", "bytes", "IoU", "drop", "baseline bytes", "saving"], rows), ""]
        lines += candidates_lines(entry, results["drop"])
    return "\n".join(lines)


def candidates_lines(entry: dict, drop: float) -> list[str]:
    """compress's candidates with their budgets, and each SINR candidate (the per-layer search,
    SINR on every layer) against the smallest uniform candidate whose file meets the drop (all
    measured over the full grid)."""
    piped = next((p for p in entry["points"] if p["method"] == "compress" and p.get("candidates")), None)
    if piped is None:
        return []
    reference = entry["fit"]["iou"]
    rows = []
    for c in piped["candidates"]:
        if c.get("skipped"):
            rows.append([c["candidate"], "-", "-", "-", "-", "-", f"skipped: {c['skipped']}"])
            continue
        rows.append([c["candidate"], c["bytes"], f"{c['iou']:.4f}", f"{reference - c['iou']:+.4f}",
                     "yes" if reference - c["iou"] <= drop else "no", f"{c['seconds']:.0f}",
                     ("kept" if c["kept"] else "") + (f"; {c['probes']} probes" if c.get("probes") else "")])
    lines = [f"`compress(target=MaxDrop({drop}))`'s candidates, each with the same fine-tuning steps, container and "
             "coder (seconds: this machine's wall time; IoU over the full grid, the drop against the fit):", "",
             md_table(["candidate", "bytes", "IoU", "drop", "meets drop", "seconds", ""], rows), ""]
    meets = {c["candidate"]: c for c in piped["candidates"] if c.get("iou") is not None and reference - c["iou"] <= drop}
    uniform = [c for name, c in meets.items() if name in UNIFORM_CANDIDATES]
    sinr = {"search": "Per-layer search (SINR or a uniform grid per layer)", SINR_EVERYWHERE: SINR_EVERYWHERE}
    stated = [name for name in sinr if name in meets]
    if stated and uniform:
        best = min(uniform, key=lambda c: c["bytes"])
        for name in stated:
            saving = 1 - meets[name]["bytes"] / best["bytes"]
            lines += [f"{sinr[name]} against the smallest uniform file meeting the drop ({best['candidate']}, "
                      f"{best['bytes']} B): **{100 * saving:+.1f}%** ({'smaller' if saving > 0 else 'larger'}).", ""]
    else:
        lines += ["No search-and-baseline pair meets the drop over the full grid: no saving is stated.", ""]
    return lines


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    # Gauss and Gabor activations underflow to subnormal floats far from their centres, which
    # makes CPU arithmetic several times slower (measured: 4x on a 3x128 Gauss fit).
    torch.set_flush_denormal(True)
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                   ("hidden_layers", args.layers), ("hidden_features", args.width)) if v is not None}
    configs = {a: replace(cpu_protocol(a), **overrides) for a in args.activations}
    config = configs[args.activations[0]]
    results = {"resolution": args.resolution, "eval_version": EVAL_VERSION,
               "fit_configs": {a: c.to_dict() for a, c in configs.items()},
               "finetune_steps": args.finetune_steps, "finetune_points": args.finetune_points, "drop": args.drop,
               "steer": args.steer, "meshes": {}, "table_s1": {},
               "protocol_note": (f"Reduced CPU protocol (torch_sinr.inr.occupancy.fit.CPU_PROTOCOL): {args.resolution}^3 "
                                 f"volumes (the paper: 512^3), {config.steps} batches of {config.batch_size} points "
                                 f"({config.sampler} sampling; the paper: 200 full passes), seed {args.seed}; "
                                 "Gauss scale and WIRE sigma / omega are the paper's divided by 4, for the same "
                                 "feature width in voxels at 128^3 as at 512^3; SIREN at lr 1e-3."),
               "finetune_note": (f"Fine-tuning (uniform and SINR alike): {args.finetune_steps} Adam steps on fresh "
                                 f"batches of {args.finetune_points} points (half near the surface); the best iterate "
                                 f"is kept by {STEER_TEXT[args.steer]}, scored every {SELECT_EVERY} steps, and the "
                                 "same IoU steers compress(target=MaxDrop). Every IoU in the tables is over the "
                                 "full grid.")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name_ = f"occupancy_{args.tag}" if args.tag else "occupancy"  # every file's stem
    for name in args.meshes:
        mesh_path = Path(args.mesh_dir) / MESH_FILES.get(name, name)
        volume = mesh_volume(mesh_path, args.resolution, cache_dir=Path(args.cache) / "volumes")
        occupancy = volume.occupancy
        label = mesh_path.stem
        fits = {}
        for activation in args.activations:
            model, record = fit_occupancy_cached(volume, configs[activation], seed=args.seed,
                                                 cache_dir=Path(args.cache) / "fits", progress=args.progress)
            fits[activation] = (model, record)
            results["table_s1"].setdefault(label, {})[activation] = record["iou"]
        model, record = fits[args.activations[0]]
        loss = sampled_loss(occupancy, args.finetune_points, seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            points, decoded_sinr, pipeline_error = evaluate_model(
                model, occupancy, loss, args.finetune_steps, args.drop, steering(args.steer, occupancy), Path(tmp),
                args.progress,
                args.max_probes)
        if pipeline_error:
            print(f"{label}: compress(target=MaxDrop({args.drop})) failed: {pipeline_error}", file=sys.stderr)
        # The picture shows the pipeline's file, or the best fine-tuned SINR file where it failed.
        candidates = [p for p in points
                      if f"{p['method']} {p['setting']}" in decoded_sinr and p["method"] != "sinr-paper"]
        shown = max(candidates, key=lambda p: (p["method"] == "compress", p["iou"]))
        original_field = predict_volume(model, args.resolution)
        decoded_field = predict_volume(decoded_sinr[f"{shown['method']} {shown['setting']}"], args.resolution)
        render_comparison(out / f"{name_}_{label}.png",
                          [("mesh volume", occupancy), (f"INR, IoU {record['iou']:.4f}", original_field),
                           (f"{shown['method']} {shown['setting']}: {shown['bytes']} B, IoU {shown['iou']:.4f}",
                            decoded_field)],
                          title=f"{label} at {args.resolution}^3")
        if args.ply:
            field_to_ply(out / f"{name_}_{label}_inr.ply", original_field)
            field_to_ply(out / f"{name_}_{label}_sinr.ply", decoded_field)
        results["meshes"][label] = {
            "mesh_sha256": volume.key["mesh_sha256"], "fraction_inside": volume.fraction_inside,
            "volume_seconds": volume.seconds,
            "fit": {"activation": args.activations[0], "layers": f"{config.hidden_layers}x{config.hidden_features}",
                    "iou": record["iou"], "seconds": record["seconds"], "env": record.get("env")},
            "points": points, "pipeline_error": pipeline_error, "shown": f"{shown['method']} {shown['setting']}",
            "sinr_vs_baseline": summarize(points, record["iou"], args.drop)}
    written = write_results(out, name_, DESCRIPTION, results, markdown(results))
    plot_curves(results, out / f"{name_}_curves.png")
    print(f"wrote {written['json']}, {written['markdown']} and PNGs in {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.occupancy", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--meshes", nargs="+", default=["lucy", "dragon"],
                        help=f"names ({', '.join(MESH_FILES)}) or file names in --mesh-dir")
    parser.add_argument("--mesh-dir", type=Path, default=MESHES, help="folder holding the mesh files of --meshes")
    parser.add_argument("--resolution", type=int, default=CPU_PROTOCOL_RESOLUTION,
                        help="voxels per side of each occupancy volume (N^3 voxels)")
    parser.add_argument("--activations", nargs="+", default=["gauss"], choices=["gauss", "siren", "wire"],
                        help="fitted and scored per mesh; the first is the one compressed")
    parser.add_argument("--steps", type=int, default=None, help=f"fitting batches (default {CPU_PROTOCOL.steps})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"points per batch (default {CPU_PROTOCOL.batch_size})")
    parser.add_argument("--layers", type=int, default=None,
                        help=f"hidden x hidden linears (default {CPU_PROTOCOL.hidden_layers})")
    parser.add_argument("--width", type=int, default=None,
                        help=f"hidden neurons (default {CPU_PROTOCOL.hidden_features})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fits and of the fine-tuning batches")
    parser.add_argument("--finetune-steps", type=int, default=300,
                        help="fine-tuning steps, for SINR codes and the uniform baseline alike")
    parser.add_argument("--finetune-points", type=int, default=1 << 14,
                        help="points per fine-tuning batch (a fresh batch every step, half near the surface)")
    parser.add_argument("--drop", type=float, default=0.005, help="the pipeline's IoU-drop target")
    parser.add_argument("--max-probes", type=int, default=MAX_PROBES, help="bound of the pipeline's byte search")
    parser.add_argument("--steer", choices=sorted(STEER_TEXT), default="band",
                        help="the IoU that picks fine-tuning's best iterate and steers the pipeline's search: band "
                             "(BandIoU: exact near the surface, sampled elsewhere) or full (the full grid, ~20x "
                             "slower); reported IoUs are always over the full grid")
    parser.add_argument("--cache", type=Path, default=CACHE, help="cache folder: the volumes/ and fits/ go here")
    parser.add_argument("--tag", default="", help="files are named occupancy_TAG* (a run kept beside the committed one)")
    parser.add_argument("--out", type=Path, default=RUNS,
                        help="folder the results go to (default: %(default)s; benchmarks/results "
                             "refreshes the committed results)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (default: torch's own count, %(default)s here)")
    parser.add_argument("--ply", action="store_true", help="also write marching-cubes meshes of the INR and SINR")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the fitting and fine-tuning progress bars (shown by default)")
    return exit_code(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
