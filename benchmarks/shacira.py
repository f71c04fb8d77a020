"""SHACIRA-style image codec, with and without SINR on its decoders.

``python -m benchmarks.shacira`` (default: the shared 5208 x 3588 image) or ``--image PATH``:

1. trains the hash-grid image model (``torch_sinr_shacira``) on random pixel batches of the
   memory-mapped image, with a checkpoint that resumes (``--cache``), under the reduced CPU
   protocol (``--steps``, ``--batch``);
2. writes the SHACIRA-style file (integer latents range-coded with a stored model, decoders at
   float32) and decodes it tile by tile: bytes, bpp, PSNR, and the share of each part;
3. SINR-codes the latent decoder and the MLP with ``torch_sinr.compress`` to a PSNR-drop target
   (``--drop``, default the paper's 0.3 dB; fine-tuning with the latents fixed), writes and
   decodes that file the same way: the decoder part's saving next to the paper's 66% / 0.3 dB;
4. reports peak memory of training and of decoding (total RSS, which counts the memory map's
   resident pages, and anonymous RSS, which does not) and the throughput.

``--gigapixel N`` instead builds an N x N stand-in for a gigapixel scan on disk (the image
mirrored and repeated, written band by band), trains a short budget on it and codes and decodes
it the same way: peak memory and throughput at a size no array in memory could hold on this
machine.

Step 3's ``compress`` also makes the fair uniform baselines (its guard: mixed precision and one
width, same fine-tuning) and its search with SINR on every linear, and keeps the smallest file that
meets the target; the file it keeps is
reported as "sinr" (``pipeline.guard.kept`` names which it is), and every other candidate is
written and decoded in full beside it.

Writes ``shacira_<name>.{json,md}`` and ``shacira_<name>.png`` (crops: original | SHACIRA-style |
the file compress kept) into ``--out`` (default ``benchmarks/runs/shacira``, git-ignored; pass
``--out benchmarks/results`` to refresh the committed results).
"""

from __future__ import annotations

import argparse
import copy
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import HelpFormatter, exit_code, machine_info, md_table, write_results
from torch_sinr.errors import SINRError
from torch_sinr.inr.fitting import key_digest

REPO = Path(__file__).resolve().parents[1]
LARGE = REPO.parent / "shared" / "data" / "large" / "olena-ivanova-jKb0EfemiLk-unsplash.jpg"
CACHE = REPO / "benchmarks" / "cache" / "shacira"
RUNS = REPO / "benchmarks" / "runs" / "shacira"
PAPER = {"decoder_saving": 0.66, "psnr_drop_db": 0.3}  # the paper's supplement S7, on a gigapixel image


class MemoryWatch:
    """Peak total RSS (the kernel's VmHWM, reset at start) and peak anonymous RSS (sampled every
    50 ms: file-backed pages of a memory map count in RSS but are the page cache's to drop)."""

    def __init__(self) -> None:
        self.peak_anon_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status(key: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon"))
            self._stop.wait(0.05)

    def __enter__(self) -> "MemoryWatch":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon"))
        self.peak_rss_kib = self._status("VmHWM")

    def record(self) -> dict:
        return {"peak_rss_mib": self.peak_rss_kib / 1024, "peak_anon_mib": self.peak_anon_kib / 1024}


def _parts(entries: list[dict], model) -> dict[str, float]:
    names = model.parts()
    out = {part: 0.0 for part in names}
    for entry in entries:
        for part, keys in names.items():
            if entry["name"] in keys:
                out[part] += entry["bytes"]
    return out


def crops_png(path: Path, source, images: list[tuple[str, np.ndarray]], size: int = 256) -> None:
    from matplotlib.figure import Figure

    r0, c0 = (source.height - size) // 2, (source.width - size) // 2
    fig = Figure(figsize=(4 * (len(images) + 1), 4.3))
    axes = fig.subplots(1, len(images) + 1)
    panels = [("original", source.pixels)] + images
    for ax, (title, pixels) in zip(axes, panels):
        ax.imshow(np.asarray(pixels[r0:r0 + size, c0:c0 + size]), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def checkpoint_path(cache: Path, name: str, source, model_config, train_config) -> Path:
    """Where the training of ``source`` under these settings is checkpointed (keyed by all of them,
    so another setting never resumes from it); other benchmarks reuse the trained model through it."""
    key = {"image": source.name, "shape": [source.height, source.width], "model": model_config.to_dict(),
           "train": train_config.to_dict()}
    return cache / "checkpoints" / f"{name}-{key_digest(key)}.pt"


def run(args: argparse.Namespace) -> dict:
    from torch_sinr.format import save_compressed
    from torch_sinr_shacira import (ImageModel, ImageModelConfig, PixelSource, RateModel, TrainConfig,
                                    compress_decoders, decode_image, prepare_for_coding, tile_image, train,
                                    write_baseline)
    from torch_sinr_shacira.train import CPU_TRAINING

    torch.set_num_threads(args.threads)
    cache, out = Path(args.cache), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image_path = Path(args.image)
    if not image_path.exists():
        raise SINRError(f"image not found: {image_path} (the shared data lives next to the repository: "
                        f"../shared/data; or pass --image)")
    source = PixelSource.open(image_path, cache / "images")
    name = args.name or image_path.stem.split("-")[0]
    if args.gigapixel:
        source = tile_image(source, cache / "images" / f"{name}-tiled-{args.gigapixel}.npy", args.gigapixel,
                            args.gigapixel)
        name = f"{name}_{args.gigapixel}"
    overrides = {k: v for k, v in (("levels", args.levels), ("log2_table", args.log2_table),
                                   ("hidden", args.hidden)) if v is not None}
    model_config = ImageModelConfig.for_image(source.height, source.width, **overrides)
    train_config = replace(CPU_TRAINING, **{k: v for k, v in (("steps", args.steps), ("batch", args.batch),
                                                               ("rate_lambda", args.rate_lambda)) if v is not None})
    checkpoint = checkpoint_path(cache, name, source, model_config, train_config)
    torch.manual_seed(train_config.seed)
    model, rate = ImageModel(model_config), RateModel(model_config.latent_dim)
    print(f"{source.name}: {source.height} x {source.width}, {model.grid.latents.shape[0]:,} latents, "
          f"MLP {sum(p.numel() for p in model.mlp.parameters()):,} parameters", flush=True)
    with MemoryWatch() as train_memory:
        record = train(model, source, train_config, rate=rate, checkpoint=checkpoint, progress=args.progress)
    trained_steps = record["steps"] - record["resumed_from"]
    results = {"image": {"name": source.name, "height": source.height, "width": source.width,
                         "memmap_mib": source.pixels.nbytes / 2**20},
               "model": model_config.to_dict(), "train": {**train_config.to_dict(), "seconds_this_run": record["seconds"],
                                                          "steps_this_run": trained_steps,
                                                          "pixels_per_s": trained_steps * train_config.batch
                                                          / max(record["seconds"], 1e-9),
                                                          "memory": train_memory.record(),
                                                          "last": record["history"][-1] if record["history"] else None},
               "paper": PAPER, "drop_target_db": args.drop}
    if args.train_only:  # the training's memory and throughput alone (e.g. from a fresh --cache)
        written = write_results(out, f"shacira_{name}_training", __doc__.splitlines()[0], results,
                                markdown_training(results))
        print(markdown_training(results))
        print(f"wrote {written['json']} and {written['markdown']}")
        return results
    prepare_for_coding(model)
    files = {}
    with MemoryWatch() as watch:
        started = time.perf_counter()
        baseline_path = cache / "files" / f"shacira_{name}_baseline.safetensors"  # the files: 1 MB each, not results
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        write_baseline(model, baseline_path)
        decoded = decode_image(baseline_path, ImageModel(model_config), source, cache / f"{name}-baseline.npy",
                               tile=args.tile)
        seconds = time.perf_counter() - started
    files["shacira"] = {"bytes": decoded["file_bytes"], "psnr": decoded["psnr"],
                        "parts": _parts(decoded["entries"], model), "decode_seconds": seconds,
                        "decode_pixels_per_s": source.n_pixels / seconds, "decode_memory": watch.record()}
    latents = model.grid.latents.detach()
    files["shacira"]["latent_bits_estimated"] = rate.estimated_bits(latents)
    coded = copy.deepcopy(model)
    result = compress_decoders(coded, source, drop_db=args.drop, steps=args.finetune_steps, progress=args.progress)
    # the file compress keeps ("sinr": the search's own file, or a uniform baseline that beat it,
    # result.baseline["kept"]), then every other candidate the guard made, each decoded in full
    kept = (result.baseline or {}).get("kept", "search")
    others = [(label, candidate) for label, candidate in result.candidates.items() if label != kept]
    for label, candidate in [("sinr", coded), *others]:
        slug = label.replace(" ", "_")
        path = cache / "files" / f"shacira_{name}_{slug}.safetensors"
        save_compressed(candidate, path)
        with MemoryWatch() as watch:
            started = time.perf_counter()
            decoded_file = decode_image(path, ImageModel(model_config), source,
                                        cache / f"{name}-{slug}.npy" if label == "sinr" else None, tile=args.tile)
            seconds = time.perf_counter() - started
        files[label] = {"bytes": decoded_file["file_bytes"], "psnr": decoded_file["psnr"],
                        "parts": _parts(decoded_file["entries"], model), "decode_seconds": seconds,
                        "decode_pixels_per_s": source.n_pixels / seconds, "decode_memory": watch.record()}
        print(f"{label}: {files[label]['bytes']:,} B, {files[label]['psnr']:.3f} dB, decoded in {seconds:.0f} s",
              flush=True)
    files["sinr"]["pipeline"] = {"score_before": result.reference_score, "score_after": result.score,
                                 "config": result.config.to_dict(), "finetune_steps": result.finetune_steps,
                                 "guard": result.baseline}
    for entry in files.values():
        entry["bpp"] = 8 * entry["bytes"] / source.n_pixels
        entry["decoder_bytes"] = entry["parts"]["latent decoder"] + entry["parts"]["mlp"]
    results["files"] = files
    if "sinr" in files:
        base, sinr = files["shacira"], files["sinr"]
        results["decoder_saving"] = 1 - sinr["decoder_bytes"] / base["decoder_bytes"]
        results["psnr_drop_db"] = base["psnr"] - sinr["psnr"]
        results["total_saving"] = 1 - sinr["bytes"] / base["bytes"]
        results["target_met"] = (results["decoder_saving"] >= PAPER["decoder_saving"]
                                 and results["psnr_drop_db"] <= PAPER["psnr_drop_db"])
    latent_entry = files["shacira"]["parts"]["latents"]
    results["latent_rate_check"] = {"estimated_bytes": files["shacira"]["latent_bits_estimated"] / 8,
                                    "file_bytes": latent_entry,
                                    "ratio": latent_entry / max(files["shacira"]["latent_bits_estimated"] / 8, 1e-9)}
    panels = [("SHACIRA-style, %.2f dB, %.3f bpp" % (files["shacira"]["psnr"], files["shacira"]["bpp"]),
               np.load(cache / f"{name}-baseline.npy", mmap_mode="r"))]
    if "sinr" in files:
        panels.append(("%s, %.2f dB, %.3f bpp" % (file_label("sinr", files["sinr"]), files["sinr"]["psnr"],
                                                  files["sinr"]["bpp"]),
                       np.load(cache / f"{name}-sinr.npy", mmap_mode="r")))
    crops_png(out / f"shacira_{name}.png", source, panels)
    text = markdown(results, machine_info())
    written = write_results(out, f"shacira_{name}", __doc__.splitlines()[0], results, text)
    print(text)
    print(f"wrote {written['json']}, {written['markdown']} and shacira_{name}.png in {out}")
    return results


def _training_line(results: dict) -> str:
    img, train_rec = results["image"], results["train"]
    mem = train_rec["memory"]
    if not train_rec["steps_this_run"]:
        return (f"Training: none this run (the model was resumed from a finished checkpoint of {train_rec['steps']} "
                f"steps of {train_rec['batch']} pixels; `--train-only` measures its throughput).")
    return (f"Training: {train_rec['steps_this_run']} steps of {train_rec['batch']} pixels in "
            f"{train_rec['seconds_this_run']:.0f} s ({train_rec['pixels_per_s']:.0f} pixels/s) this run, "
            f"peak RSS {mem['peak_rss_mib']:.0f} MiB (anonymous {mem['peak_anon_mib']:.0f} MiB; the image's "
            f"memory map is {img['memmap_mib']:.0f} MiB).")


def markdown_training(results: dict) -> str:
    img = results["image"]
    return "\n".join([f"# SHACIRA-style training on {img['name']} ({img['width']} x {img['height']})", "",
                      "*Generated by `python -m benchmarks.shacira --train-only`; not edited by hand.*", "",
                      _training_line(results), ""])


def psnr_change(drop_db: float, digits: int = 3) -> str:
    """A PSNR drop (before minus after) as the signed change it is: 0.012 -> "-0.012 dB", -0.075 -> "+0.075 dB"."""
    change = round(-drop_db, digits) + 0.0  # + 0.0: no "-0.000"
    return f"{change:+.{digits}f} dB"


def kept_name(entry: dict) -> str | None:
    """Which candidate compress kept ("search": its own SINR / per-layer file, SINR on every
    layer, or a uniform baseline); None for a run from before the guard, whose file is the search's."""
    guard = entry.get("pipeline", {}).get("guard")
    return None if guard is None else guard.get("kept", "search")


def file_label(label: str, entry: dict) -> str:
    """A results file's name as tables show it: the kept file says which candidate it is."""
    kept = kept_name(entry) if label == "sinr" else None
    return label if kept is None else f"compress (kept: {kept})"


def markdown(results: dict, machine: dict | None = None) -> str:
    img, train_rec = results["image"], results["train"]
    lines = [f"# SHACIRA-style codec on {img['name']} ({img['width']} x {img['height']})", "",
             "*Generated by `python -m benchmarks.shacira`; not edited by hand.*", ""]
    rows = []
    for label, entry in results["files"].items():
        label = file_label(label, entry)
        p = entry["parts"]
        total = max(entry["bytes"], 1)
        rows.append([label, entry["bytes"], f"{entry['bpp']:.4f}", f"{entry['psnr']:.2f}",
                     f"{p['latents']:.0f} ({100 * p['latents'] / total:.1f}%)",
                     f"{p['latent decoder']:.0f} ({100 * p['latent decoder'] / total:.2f}%)",
                     f"{p['mlp']:.0f} ({100 * p['mlp'] / total:.1f}%)"])
    lines += [md_table(["file", "bytes", "bpp", "PSNR (dB)", "latents", "latent decoder", "MLP"], rows), ""]
    if "decoder_saving" in results:
        lines += [f"{file_label('sinr', results['files']['sinr'])} on the decoders: decoder part "
                  f"{100 * results['decoder_saving']:.1f}% smaller, PSNR "
                  f"{psnr_change(results['psnr_drop_db'])} (the paper, on a gigapixel image: "
                  f"{100 * PAPER['decoder_saving']:.0f}% smaller, PSNR {psnr_change(PAPER['psnr_drop_db'], 1)}); "
                  f"whole file {100 * results['total_saving']:.2f}% smaller. Target met: "
                  f"{'yes' if results['target_met'] else 'no'}.", ""]
    check = results["latent_rate_check"]
    lines += [f"Latents: the learned prior estimates {check['estimated_bytes']:.0f} B; the range coder with its "
              f"stored histogram writes {check['file_bytes']:.0f} B ({check['ratio']:.3f}x).", ""]
    lines += [_training_line(results), ""]
    for label, entry in results["files"].items():
        label = file_label(label, entry)
        m = entry["decode_memory"]
        rate = img["height"] * img["width"] / max(entry["decode_seconds"], 1e-9)
        lines += [f"Decoding the {label} file tile by tile: {entry['decode_seconds']:.0f} s "
                  f"({rate / 1e6:.2f} M pixels/s, PSNR accumulated), peak RSS "
                  f"{m['peak_rss_mib']:.0f} MiB (anonymous {m['peak_anon_mib']:.0f} MiB)."]
    if machine is not None:  # the times above are this machine's, at this thread count and load
        load = machine.get("load_average_at_write") or [float("nan")]
        lines += ["", f"Machine: {machine['cpu_model']}, {machine['torch_threads']} torch thread(s) of "
                      f"{machine['cpu_count']} cores, load average {load[0]:.1f} when the results were written."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shacira", description=__doc__,
                                     formatter_class=HelpFormatter)
    train, shape = _protocol_defaults()
    parser.add_argument("--image", type=Path, default=LARGE,
                        help="the image to code: an image file PIL reads, or an HxWx3 uint8 .npy")
    parser.add_argument("--name", default=None, help="results are named shacira_<name> (default: from the image)")
    parser.add_argument("--gigapixel", type=int, default=None, help="build an N x N tiled stand-in and run on it")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (default: the reduced CPU protocol's, {train['steps']})")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"random pixels per training step (default: the reduced CPU protocol's, {train['batch']})")
    parser.add_argument("--rate-lambda", type=float, default=None,
                        help="weight of the latents' rate term in the training loss (default: the reduced CPU "
                             f"protocol's, {train['rate_lambda']})")
    parser.add_argument("--levels", type=int, default=None,
                        help=f"hash-grid levels (default: the model's, {shape['levels']})")
    parser.add_argument("--log2-table", type=int, default=None,
                        help=f"log2 of the hash-table rows per level (default: the model's, {shape['log2_table']})")
    parser.add_argument("--hidden", type=int, default=None,
                        help=f"width of the MLP's hidden layers (default: the model's, {shape['hidden']})")
    parser.add_argument("--drop", type=float, default=PAPER["psnr_drop_db"],
                        help="PSNR-drop target for SINR (dB; the paper's)")
    parser.add_argument("--finetune-steps", type=int, default=300,
                        help="fine-tuning steps of the SINR-coded decoders (latents fixed)")
    parser.add_argument("--tile", type=int, default=512, help="side in pixels of the tiles the image is decoded by")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="cache folder: memory-mapped images, training checkpoints, written files, decoded images")
    parser.add_argument("--out", type=Path, default=RUNS,
                        help="folder the results go to (default: %(default)s; benchmarks/results refreshes the "
                             "committed results)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (default: torch's own count, %(default)s here)")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or resume) and report the training alone: shacira_<name>_training.{json,md}")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the training and fine-tuning progress bars (shown by default)")
    return exit_code(run, parser.parse_args(argv))


def _protocol_defaults() -> tuple[dict, dict]:
    """What --steps/--batch/--rate-lambda and --levels/--log2-table/--hidden default to, for the help."""
    try:
        from torch_sinr_shacira import ImageModelConfig
        from torch_sinr_shacira.train import CPU_TRAINING
    except ImportError:  # torch_sinr_shacira is installed with the integration; run() says so when it is missing
        unknown = "see torch_sinr_shacira"
        return dict.fromkeys(("steps", "batch", "rate_lambda"), unknown), \
            dict.fromkeys(("levels", "log2_table", "hidden"), unknown)
    return CPU_TRAINING.to_dict(), ImageModelConfig().to_dict()


if __name__ == "__main__":
    sys.exit(main())
