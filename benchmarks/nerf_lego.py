"""The paper's NeRF experiment (supplement S5) on Blender 'lego' at 200x200, with nerfstudio, on a CPU.

    python -m benchmarks.nerf_lego train --method vanilla-nerf      # ~30 min of one CPU core
    python -m benchmarks.nerf_lego train --method sinr-vanilla-nerf # resumes vanilla-nerf's checkpoint
    python -m benchmarks.nerf_lego train --method nerfacto          # ~70 min on 2 cores
    python -m benchmarks.nerf_lego compress --method vanilla-nerf   # ns-sinr-compress + results files
    python -m benchmarks.nerf_lego compress --method nerfacto
    python -m benchmarks.nerf_lego eval --method sinr-vanilla-nerf  # the hook's file, via ns-sinr-eval
    python -m benchmarks.nerf_lego train --method instant-ngp       # nerfacc's marching in torch (cpu_marching)
    python -m benchmarks.nerf_lego compress --method instant-ngp
    python -m benchmarks.nerf_lego decompress --method instant-ngp  # ns-sinr-decompress, scored by eval_setup
    python -m benchmarks.nerf_lego summary                          # benchmarks/results/nerf_lego.{json,md}

Reduced CPU protocol (``PROTOCOL``): every scene is trained from ``../shared/data/nerf/lego_200``
for a fixed step budget with fewer rays and samples than the paper; evaluation uses every
``TEST_STRIDE``-th test view (a derived scene folder whose transforms_test.json lists only
those; the images are the shared files, symlinked). Runs live in benchmarks/nerf_runs/ (not
committed); results are written under benchmarks/results/nerf_lego_<method>/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from ._common import DEFAULT_OUT, HelpFormatter, machine_info

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "data" / "nerf" / "lego_200"
RUNS = Path(__file__).resolve().parent / "nerf_runs"
TEST_STRIDE = 40  # test views 0, 40, 80, 120, 160

PROTOCOL = {
    "vanilla-nerf": {
        "steps": 2000, "rays": 256,
        "model": {"num_coarse_samples": 32, "num_importance_samples": 32},
    },
    # The compress-then-finetune hook: resumes vanilla-nerf's checkpoint at its last-but-
    # FINETUNE_STEPS step, compresses right away and trains FINETUNE_STEPS steps as codes, so it
    # ends at the same total step count as vanilla-nerf.
    "sinr-vanilla-nerf": {
        "steps": 2000, "rays": 256, "finetune_steps": 400, "resume": "vanilla-nerf",
        "model": {"num_coarse_samples": 32, "num_importance_samples": 32},
    },
    # nerfacto with nerfstudio's settings for Blender scenes (white background, no contraction,
    # near/far 2/6, a uniform first proposal sampler: the default piecewise one spends half its
    # samples in disparity space, made for unbounded scenes), fewer samples than on a GPU, and
    # every torch HashEncoding on torch_sinr's fused gather (same function, fewer operations per step).
    "nerfacto": {
        # 1400 steps (70 min on this 2-core machine, beside other jobs) reach 26+ dB on the test
        # views; nerfacto's schedules span 200k steps, so this is the first 1400 of a longer run
        "steps": 1400, "rays": 2048, "fast_hash": True,
        "model": {"num_nerf_samples_per_ray": 32, "num_proposal_samples_per_ray": (64, 32),
                  "background_color": "white", "disable_scene_contraction": True,
                  "proposal_initial_sampler": "uniform",
                  "near_plane": 2.0, "far_plane": 6.0, "implementation": "torch"},
    },
    # instant-ngp with nerfstudio's Blender settings for it (one occupancy-grid level, no cone, no
    # contraction, white background, near/far 2/6), rays marched by torch_sinr_nerfstudio.cpu_marching
    # (nerfacc's kernels are CUDA-only). Cut for a shared 2-core CPU: a 32^3 grid
    # (the field is evaluated in every cell at each grid update), steps of 4/128 (at most 128 samples a
    # ray), batches of ~4096 samples (DynamicBatchPipeline sizes the rays to that) and 200 steps.
    "instant-ngp": {
        "steps": 200, "rays": 64, "fast_hash": True, "cpu_marching": True,
        "compress_args": ["--score-rays", "4096"],  # the tables' PSNR on 4096 training pixels, not 16384
        "pipeline": {"target_num_samples": 1 << 12, "max_num_samples_per_ray": 1 << 6},
        "model": {"background_color": "white", "disable_scene_contraction": True, "grid_levels": 1,
                  "grid_resolution": 32, "cone_angle": 0.0, "render_step_size": 4.0 / 128,
                  "near_plane": 2.0, "far_plane": 6.0},
    },
}


def scene_dir() -> Path:
    """The derived scene folder: the shared images, every TEST_STRIDE-th test view listed."""
    if not SCENE.is_dir():
        sys.exit(f"lego_200 not found at {SCENE} (see ../shared/data/README.md)")
    out = RUNS / "lego_200_eval"
    out.mkdir(parents=True, exist_ok=True)
    (RUNS / ".gitignore").write_text("*\n")  # runs and checkpoints are not committed
    for split in ("train", "val", "test"):
        link = out / split
        if not link.exists():
            link.symlink_to(SCENE / split)
    shutil.copyfile(SCENE / "transforms_train.json", out / "transforms_train.json")
    shutil.copyfile(SCENE / "transforms_val.json", out / "transforms_val.json")
    test = json.loads((SCENE / "transforms_test.json").read_text())
    test["frames"] = test["frames"][::TEST_STRIDE]
    (out / "transforms_test.json").write_text(json.dumps(test, indent=1))
    return out


def test_views(stride: int):
    """Every ``stride``-th test view of lego_200 as a nerfstudio dataset (the scene's test split,
    parsed as the runs' data manager parses it), for scoring scenes on more views than the
    runs' own eval set (``TEST_STRIDE``)."""
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.datasets.base_dataset import InputDataset

    out = RUNS / f"lego_200_test_every_{stride}"
    base = scene_dir()  # the same files, symlinked
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        link = out / split
        if not link.exists():
            link.symlink_to(SCENE / split)
    for name in ("transforms_train.json", "transforms_val.json"):
        shutil.copyfile(base / name, out / name)
    test = json.loads((SCENE / "transforms_test.json").read_text())
    test["frames"] = test["frames"][::stride]
    (out / "transforms_test.json").write_text(json.dumps(test, indent=1))
    parser = BlenderDataParserConfig(data=out).setup()
    return InputDataset(parser.get_dataparser_outputs(split="test"))


def trainer_config(method: str, steps: int | None = None):
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    protocol = PROTOCOL[method]
    base = "sinr-vanilla-nerf" if method == "sinr-vanilla-nerf" else method
    config = all_methods[base]
    config.method_name = method
    config.experiment_name = "lego_200"
    config.output_dir = RUNS
    config.timestamp = "run"
    config.max_num_iterations = steps or protocol["steps"]
    config.mixed_precision = False
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 200
    config.save_only_latest_checkpoint = False
    config.logging.steps_per_log = 50
    config.logging.local_writer.max_log_size = 0
    datamanager = config.pipeline.datamanager
    datamanager.data = scene_dir()
    datamanager.dataparser = BlenderDataParserConfig(data=datamanager.data)
    datamanager.train_num_rays_per_batch = protocol["rays"]
    datamanager.eval_num_rays_per_batch = protocol["rays"]
    for key, value in protocol["model"].items():
        setattr(config.pipeline.model, key, value)
    for key, value in protocol.get("pipeline", {}).items():
        setattr(config.pipeline, key, value)
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    if hasattr(config.pipeline.model, "camera_optimizer"):
        config.pipeline.model.camera_optimizer.mode = "off"  # Blender poses are exact
    return config


def run_dir(method: str) -> Path:
    return RUNS / "lego_200" / method / "run"


def train(method: str, steps: int | None) -> None:
    from nerfstudio.scripts.train import train_loop
    from nerfstudio.utils.rich_utils import CONSOLE  # noqa: F401 (nerfstudio's logging set-up)

    from torch_sinr_nerfstudio.compat import nerfstudio_checkpoint_loading

    config = trainer_config(method, steps)
    protocol = PROTOCOL[method]
    if "resume" in protocol:
        # Resume the uncompressed run from its checkpoint at step (steps - finetune_steps): that
        # checkpoint holds iterations 0..start, so finetune_steps - 1 more end at the same total
        # as the uncompressed run; the hook compresses after the first resumed iteration.
        start = config.max_num_iterations - protocol["finetune_steps"]
        checkpoint = run_dir(protocol["resume"]) / "nerfstudio_models" / f"step-{start:09d}.ckpt"
        if not checkpoint.is_file():
            sys.exit(f"{checkpoint} not found: train {protocol['resume']} first (it saves every "
                     f"{config.steps_per_save} steps)")
        config.load_checkpoint = checkpoint
        config.max_num_iterations = protocol["finetune_steps"] - 1
        config.pipeline.model.sinr_compress_step = start + 1
    config.save_config()
    t0, wall = time.process_time(), time.perf_counter()
    from torch_sinr_nerfstudio.cpu_marching import nerfacc_on_cpu
    from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding

    with (nerfstudio_checkpoint_loading(), fast_hash_encoding() if protocol.get("fast_hash") else nullcontext(),
          nerfacc_on_cpu() if protocol.get("cpu_marching") else nullcontext()):
        train_loop(local_rank=0, world_size=1, config=config)
    (run_dir(method) / "train_cpu_seconds.json").write_text(json.dumps({
        "cpu_seconds_main_process": time.process_time() - t0, "wall_seconds": time.perf_counter() - wall,
        "steps": config.max_num_iterations}))


def results_dir(method: str) -> Path:
    return DEFAULT_OUT / f"nerf_lego_{method}"


def compress(method: str) -> None:
    from torch_sinr_nerfstudio.cli import compress_main
    from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding

    out = run_dir(method) / "sinr"
    t0 = time.perf_counter()
    with fast_hash_encoding() if PROTOCOL[method].get("fast_hash") else nullcontext():
        compress_main(["--load-config", str(run_dir(method) / "config.yml"), "--output-dir", str(out),
                       *PROTOCOL[method].get("compress_args", [])])
    dest = results_dir(method)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "comparison.png"):
        shutil.copyfile(out / name, dest / name)
    # the machine the run was compressed (and scored) on: the summary may be written elsewhere
    (dest / "machine.json").write_text(json.dumps(machine_info(), indent=2) + "\n")
    print(f"compress: {time.perf_counter() - t0:.0f} s")


def _run_machine(method: str) -> str:
    """The CPU a method's run was compressed on, from its results folder's machine.json."""
    path = results_dir(method) / "machine.json"
    return json.loads(path.read_text())["cpu_model"] if path.is_file() else "not recorded"


def decompress(method: str) -> None:
    """ns-sinr-decompress the compressed file into a standard run, load that with nerfstudio's own
    eval_setup and evaluate it: its PSNR must be the compressed file's (results: decompressed.json)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from torch_sinr_nerfstudio.cli import decompress_main
    from torch_sinr_nerfstudio.cpu_marching import nerfacc_on_cpu
    from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding
    from torch_sinr_nerfstudio.metrics import evaluate, main_psnr

    t0 = time.perf_counter()
    compressed = run_dir(method) / "sinr" / "scene.sinr.safetensors"
    report = json.loads((results_dir(method) / "report.json").read_text())
    written = decompress_main(["--compressed", str(compressed), "--load-config", str(run_dir(method) / "config.yml"),
                               "--output-dir", str(run_dir(method) / "decompressed"), "--overwrite"])
    _, pipeline, checkpoint, step = eval_setup(Path(written["config"]), test_mode="test")
    with (fast_hash_encoding() if PROTOCOL[method].get("fast_hash") else nullcontext(),
          nerfacc_on_cpu() if PROTOCOL[method].get("cpu_marching") else nullcontext()):
        metrics = evaluate(pipeline)
    result = {"method": method, "compressed": str(compressed), "compressed_file_bytes": compressed.stat().st_size,
              "checkpoint": str(checkpoint), "checkpoint_file_bytes": Path(checkpoint).stat().st_size, "step": step,
              "loaded_by": "nerfstudio.utils.eval_utils.eval_setup", "metrics": metrics,
              "psnr": main_psnr(metrics), "compressed_file_psnr": report["metrics"]["psnr_after"],
              "psnr_equal": main_psnr(metrics) == report["metrics"]["psnr_after"],
              "seconds": time.perf_counter() - t0}
    (results_dir(method) / "decompressed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("psnr", "compressed_file_psnr", "psnr_equal", "seconds")}))


def evaluate_hook(method: str) -> None:
    from torch_sinr_nerfstudio.cli import eval_main

    dest = results_dir(method)
    images = run_dir(method) / "sinr" / "eval_images"
    eval_main(["--load-config", str(run_dir(method) / "config.yml"),
               "--compressed", str(run_dir(method) / "sinr" / "scene.sinr.safetensors"),
               "--output-path", str(dest / "eval.json"), "--render-output-path", str(images)])
    shutil.copyfile(run_dir(method) / "sinr" / "hook_report.json", dest / "hook_report.json")


def offline_lpips() -> None:
    """This machine cannot download LPIPS' AlexNet weights: use a placeholder in a TORCH_HOME of
    the runs folder (LPIPS is then not reported; see torch_sinr_nerfstudio.metrics)."""
    import os

    import torch

    from torch_sinr_nerfstudio.metrics import alexnet_weights_genuine, write_placeholder_alexnet

    if not alexnet_weights_genuine()[0]:
        home = RUNS / "torch_home"
        os.environ["TORCH_HOME"] = str(home)
        torch.hub.set_dir(str(home / "hub"))
        write_placeholder_alexnet(home)


TARGET = {"mlp_reduction_min": 0.5, "psnr_drop_max_db": 0.1}  # the paper's NeRF claim (S5)


def _row(name: str, steps: int, psnr_before: float, psnr_after: float, ssim_before: float, ssim_after: float,
         original: dict, compressed: dict, file_bytes: int, eval_images: int) -> dict:
    total = sum(original.values())
    return {
        "name": name, "steps": steps, "eval_images": eval_images,
        "psnr_before": psnr_before, "psnr_after": psnr_after, "psnr_drop_db": psnr_before - psnr_after,
        "ssim_before": ssim_before, "ssim_after": ssim_after,
        "model_bytes": total, "file_bytes": file_bytes, "ratio": total / file_bytes,
        "mlp_bytes_before": original["mlp"], "mlp_bytes_after": compressed["mlp"],
        "mlp_reduction": 1 - compressed["mlp"] / original["mlp"],
        "mlp_share_of_model": original["mlp"] / total, "hash_grid_share_of_model": original["hash_grid"] / total,
        "hash_grid_bytes_before": original["hash_grid"], "hash_grid_bytes_after": compressed["hash_grid"],
        # reports written before proposal networks were a part of their own counted them in the others
        "proposal_bytes_before": original.get("proposal_networks", 0),
        "proposal_bytes_after": compressed.get("proposal_networks", 0),
        "other_bytes_before": original["other"], "other_bytes_after": compressed["other"],
    }


def summarize() -> None:
    """benchmarks/results/nerf_lego.{json,md} from the per-method result files."""
    from torch_sinr_nerfstudio.metrics import main_psnr, main_ssim

    rows = []
    plain = {}
    for method in ("vanilla-nerf", "nerfacto", "instant-ngp"):
        path = results_dir(method) / "report.json"
        if not path.is_file():
            print(f"skipping {method}: {path} not found (run compress first)")
            continue
        r = json.loads(path.read_text())
        plain[method] = r
        m = r["metrics"]
        rows.append(_row(f"{method}, compressed after training", r["step"] + 1, m["psnr_before"], m["psnr_after"],
                         m["ssim_before"], m["ssim_after"], r["original"]["bytes_by_part"],
                         r["compressed"]["bytes_by_part"], r["compressed"]["file_bytes"],
                         m["before"]["num_eval_images"]))
        rows[-1]["machine"] = _run_machine(method)
    hook_eval, hook_report = results_dir("sinr-vanilla-nerf") / "eval.json", results_dir("sinr-vanilla-nerf") / "hook_report.json"
    if hook_eval.is_file() and hook_report.is_file() and "vanilla-nerf" in plain:
        e, h = json.loads(hook_eval.read_text()), json.loads(hook_report.read_text())
        before = plain["vanilla-nerf"]["metrics"]["before"]  # the uncompressed run at the same total steps
        rows.append(_row(f"sinr-vanilla-nerf (compressed after step {h['compressed_after_step']}, then trained "
                         f"as codes)", h["step"] + 1, main_psnr(before), main_psnr(e["results"]), main_ssim(before),
                         main_ssim(e["results"]), h["original_bytes_by_part"], h["file_bytes_by_part"],
                         h["file_bytes"], e["results"]["num_eval_images"]))
        rows[-1]["machine"] = _run_machine("sinr-vanilla-nerf")
    for row in rows:
        if row["name"].startswith(("vanilla-nerf", "sinr-vanilla-nerf")):
            row["meets_paper_target"] = (row["mlp_reduction"] >= TARGET["mlp_reduction_min"]
                                         and row["psnr_drop_db"] <= TARGET["psnr_drop_max_db"])
    out = {"name": "nerf_lego", "description": __doc__.split("\n\n")[0], "protocol": PROTOCOL,
           "test_stride": TEST_STRIDE, "target": TARGET, "machine": machine_info(), "results": rows}
    DEFAULT_OUT.mkdir(parents=True, exist_ok=True)
    (DEFAULT_OUT / "nerf_lego.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# NeRF 'lego' (200x200) with nerfstudio, SINR-compressed field MLPs",
        "",
        f"Generated by `python -m benchmarks.nerf_lego summary` from the per-method reports; reduced CPU protocol "
        f"(see `PROTOCOL` in benchmarks/nerf_lego.py), PSNR/SSIM over every {TEST_STRIDE}th test view. "
        f"Bytes: 'model' is the scene state in memory (float32, metric modules excluded), 'file' the one "
        f".safetensors file that renders the scene. Each run's CPU is its folder's machine.json (written by the "
        f"compress command since it was added; 'not recorded' for runs made before); this summary was written on "
        f"{out['machine']['cpu_model']}, CUDA available: {out['machine']['cuda_available']}.",
        "",
        "| run | steps | PSNR before → after (dB) | drop (dB) | SSIM before → after | model → file (bytes) | "
        "field MLPs before → after (bytes) | MLPs smaller by | MLP share of model | hash-grid share of model | "
        "hash tables before → after (bytes) | proposal networks before → after (bytes) | "
        "paper target (≥50% smaller MLPs, ≤0.1 dB) | run's CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = {True: "met", False: "missed"}.get(r.get("meets_paper_target"), "n/a")
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['psnr_before']:.3f} → {r['psnr_after']:.3f} | {r['psnr_drop_db']:.3f} | "
            f"{r['ssim_before']:.4f} → {r['ssim_after']:.4f} | {r['model_bytes']} → {r['file_bytes']} "
            f"({r['ratio']:.2f}x) | {r['mlp_bytes_before']} → {r['mlp_bytes_after']} | {100 * r['mlp_reduction']:.1f}% | "
            f"{100 * r['mlp_share_of_model']:.1f}% | {100 * r['hash_grid_share_of_model']:.1f}% | "
            f"{r['hash_grid_bytes_before']} → {r['hash_grid_bytes_after']} | "
            f"{r['proposal_bytes_before']} → {r['proposal_bytes_after']} | {target} | {r['machine']} |")
    lines += ["", "Per-method reports (per-layer codes, bytes per part, all metrics) and before/after images "
              "(ground truth | before | after): `benchmarks/results/nerf_lego_<method>/`. nerfacto's file codes its "
              "hash tables too (ns-sinr-compress's default: the smallest file within 0.3 dB on training rays); "
              "its whole rate–distortion curve is `benchmarks/results/nerf_scene_rd.md`."]
    for method in PROTOCOL:
        path = results_dir(method) / "decompressed.json"
        if path.is_file():
            d = json.loads(path.read_text())
            lines += ["", f"{method}: the `ns-sinr-decompress` output, loaded by nerfstudio's own `eval_setup`, scores "
                      f"{d['psnr']:.3f} dB on the test views; the compressed file scores {d['compressed_file_psnr']:.3f} dB "
                      f"({'equal' if d['psnr_equal'] else 'NOT equal'}; `nerf_lego_{method}/decompressed.json`)."]
    (DEFAULT_OUT / "nerf_lego.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nerf_lego", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("command", choices=["train", "compress", "eval", "decompress", "summary"],
                        help="train: train METHOD on lego_200; compress: compress METHOD's run with ns-sinr-compress "
                             "and copy its report into the results; eval: evaluate the compress-then-finetune "
                             "hook's file with ns-sinr-eval; decompress: ns-sinr-decompress METHOD's compressed file "
                             "and evaluate the run with nerfstudio's eval_setup; summary: write nerf_lego.{json,md} "
                             "from every method's results")
    parser.add_argument("--method", choices=sorted(PROTOCOL),
                        help="the scene model to train, compress or evaluate (needed by every command but summary)")
    budgets = ", ".join(f"{name} {protocol['steps']}" for name, protocol in PROTOCOL.items())
    parser.add_argument("--steps", type=int, default=None,
                        help=f"train: override the protocol's step budget (probing; default: the protocol's, "
                             f"{budgets})")
    args = parser.parse_args(argv)
    offline_lpips()
    if args.command == "train":
        train(args.method, args.steps)
    elif args.command == "compress":
        compress(args.method)
    elif args.command == "eval":
        evaluate_hook(args.method)
    elif args.command == "decompress":
        decompress(args.method)
    else:
        summarize()


if __name__ == "__main__":  # nerfacto's parallel data manager spawns workers that re-import main
    main()
