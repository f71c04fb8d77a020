"""Whole nerfacto scenes on lego_200: file bytes against PSNR, hash tables included.

``python -m benchmarks.nerf_scene_rd`` loads the nerfacto run of ``benchmarks.nerf_lego``
(train it first: ``python -m benchmarks.nerf_lego train --method nerfacto``), evaluates the
uncompressed scene on the test views, codes its field MLPs with SINR once, and then, for each
PSNR-drop target (on a fixed sample of training rays, never the test views):

1. post-training: the hash tables quantized level by level at the step the search picks
   (``torch_sinr_nerfstudio.scene_codec.code_tables``), the file written and evaluated;
2. fine-tuned: that coded scene trained ``--finetune-steps`` more steps through its steps with
   the rate term (``finetune_scene``), written and evaluated again.

Every byte of each file counts (header, MLPs, proposal networks, tables). Published codecs for
hash-grid NeRFs are drawn as labelled context points: they train their own scenes, with other
budgets (GPU, 20-30k steps), on the full 800x800 Blender scenes, so they are not a like-for-like
comparison. Writes ``nerf_scene_rd.{json,md,png}`` into ``--out`` (default benchmarks/runs;
``--out benchmarks/results`` refreshes the committed results).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

from ._common import HelpFormatter, exit_code, md_table, publish

REPO = Path(__file__).resolve().parents[1]
RUNS_OUT = REPO / "benchmarks" / "runs"
TARGETS_DB = (0.1, 0.3, 1.0, 3.0)
# The targets: the whole file at least 10x smaller at most 0.3 dB below, post-training;
# at least 30x with the short fine-tune.
TARGET = {"post_training_ratio": 10.0, "finetuned_ratio": 30.0, "psnr_drop_max_db": 0.3}
# Published context (different training budgets and data: see the module docstring). Sizes are of
# the whole compressed model; PSNR on the 8 Blender scenes' average (lego alone where stated).
PUBLISHED = [
    {"label": "Instant-NGP + zip (2.4% of the model, lego)", "megabytes": 0.53, "psnr": 32.31},
    {"label": "BiRF (Blender average)", "megabytes": 0.5, "psnr": 32.03},
]


def run(args: argparse.Namespace) -> dict:
    import torch

    from benchmarks.nerf_lego import offline_lpips, run_dir
    from torch_sinr_nerfstudio import metrics as ns_metrics
    from torch_sinr_nerfstudio.compress import compress_fields, file_bytes_by_part, save_scene
    from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding
    from torch_sinr_nerfstudio.hash_tables import scene_tables
    from torch_sinr_nerfstudio.pipeline_io import load_trained_pipeline
    from torch_sinr_nerfstudio.rays import TrainRays
    from torch_sinr_nerfstudio.scene_codec import FinetuneOptions, SceneTarget, code_tables, finetune_scene
    from torch_sinr_nerfstudio.state import scene_view, state_bytes_by_part

    offline_lpips()
    config_path = run_dir("nerfacto") / "config.yml"
    if not config_path.is_file():
        raise SystemExit(f"{config_path} not found: train it first (python -m benchmarks.nerf_lego train --method "
                         f"nerfacto)")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="nerf_scene_rd_"))
    points = []
    # every torch HashEncoding through the fused gather: the same function, twice the speed
    with fast_hash_encoding():
        _, pipeline, checkpoint, step = load_trained_pipeline(config_path)
        model = pipeline.model
        original = state_bytes_by_part(scene_view(model))
        before = ns_metrics.evaluate(pipeline, scratch / "before")
        rays = TrainRays(pipeline.datamanager.train_dataset, device=pipeline.device)
        score = rays.scorer(args.score_rays)
        score_before = score(model)
        print(f"uncompressed: {sum(original.values())} B, test PSNR {before['psnr']:.3f} dB, training-ray PSNR "
              f"{score_before:.3f} dB (step {step})", flush=True)
        compress_fields(model, measure_file=False)

        def record(kind: str, target_db: float, scene, coding, extra: dict) -> dict:
            view = scene_view(scene)
            path = scratch / f"{kind}-{target_db}.safetensors"
            report = save_scene(view, path, method_name="nerfacto", step=step)
            pipeline._model = scene
            after = ns_metrics.evaluate(pipeline, scratch / f"{kind}-{target_db}")
            point = {"kind": kind, "target_drop_db": target_db, "file_bytes": report.file_bytes,
                     "ratio": sum(original.values()) / report.file_bytes,
                     "bytes_by_part": file_bytes_by_part(path, view), "psnr": after["psnr"], "ssim": after["ssim"],
                     "psnr_drop_db": before["psnr"] - after["psnr"], "table_step": coding.step,
                     "training_ray_psnr": score(scene), **extra}
            print(f"{kind} {target_db} dB: {point['file_bytes']} B ({point['ratio']:.1f}x), test PSNR "
                  f"{point['psnr']:.3f} dB ({point['psnr_drop_db']:+.3f})", flush=True)
            return point

        for target_db in args.targets:
            scene = copy.deepcopy(model)
            view = scene_view(scene)
            tables = scene_tables(view)
            t0 = time.perf_counter()
            coding = code_tables(view, tables, SceneTarget(psnr_drop=target_db), lambda _: score(scene), score_before)
            points.append(record("post-training", target_db, scene, coding,
                                 {"search_seconds": time.perf_counter() - t0, "probes": len(coding.probes)}))
            if args.finetune_steps:
                options = FinetuneOptions(steps=args.finetune_steps, rays=args.finetune_rays,
                                          rate_lambda=args.rate_lambda)
                log = finetune_scene(scene, view, tables, rays, options, progress=args.progress)
                points.append(record("fine-tuned", target_db, scene, coding,
                                     {"finetune": {k: v for k, v in log.items() if k != "history"},
                                      "history": log["history"]}))
    results = {
        "run": {"config": str(config_path), "checkpoint": str(checkpoint), "step": int(step),
                "model_bytes": sum(original.values()), "bytes_by_part": original},
        "uncompressed": {"psnr": before["psnr"], "ssim": before["ssim"], "training_ray_psnr": score_before,
                         "num_eval_images": before["num_eval_images"]},
        "undertrained": before["psnr"] < 25.0,
        "score_rays": args.score_rays, "targets_db": list(args.targets),
        "finetune": {"steps": args.finetune_steps, "rays": args.finetune_rays, "rate_lambda": args.rate_lambda},
        "points": points, "target": TARGET, "published": PUBLISHED, "torch_threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - started,
    }
    results["verdict"] = verdict(results)
    plot(results, Path(args.out) / "nerf_scene_rd.png")
    publish(args.out, "nerf_scene_rd", __doc__.splitlines()[0], results, markdown(results))
    return results


def verdict(results: dict) -> dict:
    """The best ratio within the drop target, post-training and fine-tuned, against the targets."""
    out = {}
    for kind, key in (("post-training", "post_training_ratio"), ("fine-tuned", "finetuned_ratio")):
        within = [p for p in results["points"] if p["kind"] == kind and p["psnr_drop_db"] <= TARGET["psnr_drop_max_db"]]
        best = max(within, key=lambda p: p["ratio"], default=None)
        out[kind] = {"best_ratio_within_drop": best["ratio"] if best else None,
                     "at_target_db": best["target_drop_db"] if best else None,
                     "target_ratio": TARGET[key], "met": bool(best and best["ratio"] >= TARGET[key])}
    return out


def markdown(results: dict) -> str:
    run, un = results["run"], results["uncompressed"]
    lines = ["# nerfacto on lego_200: whole-file bytes against PSNR", "",
             "*Generated by `python -m benchmarks.nerf_scene_rd`; not edited by hand.*", "",
             f"Scene: nerfacto (torch) trained {run['step'] + 1} steps under the reduced CPU protocol of "
             f"`benchmarks/nerf_lego.py`; {run['model_bytes']:,} bytes in memory; test PSNR {un['psnr']:.3f} dB, "
             f"SSIM {un['ssim']:.4f} over {un['num_eval_images']} test views"
             + (" (**undertrained**: below 25 dB)." if results["undertrained"] else "."), "",
             f"Targets are PSNR drops on {results['score_rays']} fixed training pixels; the table reports the test "
             f"views. Fine-tuning: {results['finetune']['steps']} steps of {results['finetune']['rays']} rays, rate "
             f"weight {results['finetune']['rate_lambda']:g} per bit per table entry.", ""]
    rows = []
    for p in results["points"]:
        parts = p["bytes_by_part"]
        rows.append([p["kind"], f"{p['target_drop_db']:g}", f"{p['table_step']:.3g}", f"{p['file_bytes']:,}",
                     f"{p['ratio']:.1f}x", f"{p['psnr']:.3f}", f"{p['psnr_drop_db']:+.3f}", f"{p['ssim']:.4f}",
                     f"{parts['hash_grid']:,}", f"{parts['mlp']:,}", f"{parts['proposal_networks']:,}",
                     f"{parts['other'] + parts['container']:,}"])
    lines.append(md_table(["run", "target drop (dB)", "table step", "file bytes", "smaller by", "test PSNR (dB)",
                           "drop (dB)", "SSIM", "hash tables", "field MLPs", "proposal networks",
                           "other + container"], rows))
    lines.append("")
    v = results["verdict"]
    for kind in ("post-training", "fine-tuned"):
        e = v[kind]
        best = f"{e['best_ratio_within_drop']:.1f}x" if e["best_ratio_within_drop"] else "no point"
        lines.append(f"- {kind}: best within {TARGET['psnr_drop_max_db']} dB on the test views: {best} "
                     f"(target {e['target_ratio']:g}x): {'met' if e['met'] else 'not met'}.")
    lines += ["", "Published context (other training budgets and data; not like for like): "
              + "; ".join(f"{p['label']}: {p['megabytes']} MB at {p['psnr']} dB" for p in PUBLISHED) + "."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("post-training", "o"), ("fine-tuned", "s")):
        pts = sorted((p for p in results["points"] if p["kind"] == kind), key=lambda p: p["file_bytes"])
        if pts:
            ax.plot([p["file_bytes"] / 1e6 for p in pts], [p["psnr"] for p in pts], marker=marker, label=f"SINR, {kind}")
    un = results["uncompressed"]
    ax.scatter([results["run"]["model_bytes"] / 1e6], [un["psnr"]], color="k", marker="x", label="uncompressed (float32)")
    for p in results["published"]:
        ax.scatter([p["megabytes"]], [p["psnr"]], marker="^", color="grey")
        ax.annotate(p["label"], (p["megabytes"], p["psnr"]), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("whole file (MB, log scale)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title("nerfacto on lego_200 (reduced CPU protocol)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nerf_scene_rd", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS_DB),
                        help="PSNR-drop targets (dB, on the training-ray sample): one coded scene per target")
    parser.add_argument("--finetune-steps", type=int, default=150,
                        help="fine-tuning steps of each coded scene with the rate term (0: post-training only)")
    parser.add_argument("--finetune-rays", type=int, default=1024, help="training rays per fine-tuning step")
    parser.add_argument("--rate-lambda", type=float, default=1e-4,
                        help="weight of the rate term in the fine-tuning loss (per mean bit per table entry)")
    parser.add_argument("--score-rays", type=int, default=1 << 14,
                        help="size of the fixed training-ray sample that scores the PSNR drop in the table search")
    parser.add_argument("--out", type=Path, default=RUNS_OUT,
                        help="folder nerf_scene_rd.{json,md,png} go to (default: %(default)s; benchmarks/results "
                             "refreshes the committed results)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the fine-tuning progress bar (shown by default)")
    return exit_code(run, parser.parse_args(argv))


if __name__ == "__main__":  # nerfacto's parallel data manager spawns workers that re-import main
    sys.exit(main())
