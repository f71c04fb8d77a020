"""Fill the Kodak benchmark's caches on a many-core machine.

``python -m benchmarks.kodak_parallel --configs C2 --workers 16`` fits the missing INRs and
evaluates every missing (image, configuration, variant) unit of ``benchmarks.kodak compress`` in
``--workers`` processes of one torch thread each (the thread count the committed results were
made with), then ``python -m benchmarks.kodak compress ... --only-cached`` summarizes them.

The unit is one variant, not one image, so a 3x128 image's dozen fine-tuning runs spread over
the cores. Workers only compute; the parent process alone writes the per-image caches, so no two
processes write one file. ``--stop-after`` stops starting units after that many seconds, for runs
under a wall-clock limit: what finished is kept, the rest is left for the next run.

``--images-dir DIR`` (with ``--size WxH`` or ``--downscale``) fills the caches of a folder run of
``benchmarks.kodak``: the same options and defaults (benchmarks/runs/FOLDER_NAME/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks import kodak
from benchmarks._common import HelpFormatter


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _fit(image_path: Path, layers: int, width: int, steps: int, downscale: int, cache_dir: Path, device: str) -> str:
    _, record = kodak.fit_protocol(image_path, kodak.inr_config(layers, width), steps, downscale, cache_dir, device)
    return f"{image_path.name} {layers}x{width}: {record['psnr']:.2f} dB"


def _evaluate(image_path: Path, layers: int, width: int, steps: int, downscale: int, cache_dir: Path,
              ft_steps: int, ft_bits: list[int], variants: list[str] | None) -> dict:
    """The fixed methods' entry (``variants`` None) or the points of ``variants``, keyed by variant."""
    model, record = kodak.fit_protocol(image_path, kodak.inr_config(layers, width), steps, downscale, cache_dir)
    image = kodak.load_image(image_path, downscale)
    with tempfile.TemporaryDirectory() as tmp:
        if variants is None:
            return kodak.fixed_entry(model, record, image, ft_steps, ft_bits, Path(tmp))
        return {v: kodak.evaluate_variant(model, image, v, ft_steps, Path(tmp)) for v in variants}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def eval_units(image_path: Path, layers: int, width: int, args) -> list[tuple[Path, list[str] | None]]:
    """What is missing for one fitted INR: (cache file, variants), variants None for the fixed
    methods. The plain uniform variants (no fine-tuning, seconds each) go together."""
    fixed, baseline_file, extra_file = kodak.eval_paths(image_path, kodak.inr_config(layers, width), args.steps,
                                                        args.downscale, args.cache, args.evals, args.finetune_steps,
                                                        args.finetune_bits)
    units: list[tuple[Path, list[str] | None]] = [] if fixed.is_file() else [(fixed, None)]
    for path, variants in ((baseline_file, args.baseline), (extra_file, args.extra)):
        done = _read(path)
        missing = [v for v in variants if v not in done]
        plain = [v for v in missing if v.startswith("uniform:")]
        units += ([(path, plain)] if plain else []) + [(path, [v]) for v in missing if v not in plain]
    return units


def _rank(unit: tuple) -> int:
    return 0 if unit[0] == "fit" else 1 if unit[5] is None else 2


@contextlib.contextmanager
def _workers_end_with_the_parent(*pools: ProcessPoolExecutor):
    """A stopped run (Ctrl-C, ``kill``) ends its workers too: left alone they would finish their unit
    and start others, computing for nobody and slowing whatever runs next."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    except BaseException:
        for pool in pools:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args) -> dict:
    for variant in args.baseline + args.extra:
        kodak.parse_variant(variant)
    paths = args.paths  # resolved by main (kodak.resolve_dataset): Kodak's, or a folder's
    jobs = [(p, layers, width) for layers, width in args.configs for p in paths]
    args.evals.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    common = (args.steps, args.downscale, args.cache)
    counts = {"fitted": 0, "evaluated": 0, "left": 0}
    # Fits first (every unit of an image needs its fit), then the fixed methods (the longest
    # units), then the variants: longest first, so a run cut off by --stop-after or a wall-clock
    # limit loses only short units.
    queue: list[tuple] = []
    for p, layers, width in jobs:
        if not kodak.fit_path(p, kodak.inr_config(layers, width), args.steps, args.downscale, args.cache).is_file():
            queue.append(("fit", p, layers, width))
    fits_pending = {(p, layers, width) for _, p, layers, width in queue}
    for p, layers, width in jobs:
        if (p, layers, width) not in fits_pending:
            queue += [("eval", p, layers, width, file, variants) for file, variants in eval_units(p, layers, width, args)]
    queue.sort(key=_rank)
    context = multiprocessing.get_context("spawn")  # no torch state forked from the parent
    running: dict[Future, tuple] = {}
    bar = tqdm(total=len(queue), unit="unit", desc="kodak units")
    # Fits may run on an accelerator (--fit-device) in their own pool, beside the CPU evaluations.
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_single_thread) as pool, \
            ProcessPoolExecutor(args.fit_workers, mp_context=context, initializer=_single_thread) as fit_pool, \
            _workers_end_with_the_parent(pool, fit_pool):
        while queue or running:
            for unit in list(queue):
                if time.monotonic() - started >= args.stop_after:
                    break
                busy = sum(u[0] == unit[0] for u in running.values())
                if unit[0] == "fit" and busy < args.fit_workers:
                    running[fit_pool.submit(_fit, unit[1], unit[2], unit[3], *common, args.fit_device)] = unit
                elif unit[0] == "eval" and busy < args.workers:
                    running[pool.submit(_evaluate, unit[1], unit[2], unit[3], *common, args.finetune_steps,
                                        args.finetune_bits, unit[5])] = unit
                else:
                    continue
                queue.remove(unit)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                result = future.result()  # a failing unit stops the run with its error
                bar.update()
                if unit[0] == "fit":
                    counts["fitted"] += 1
                    tqdm.write(result)
                    new = [("eval", unit[1], unit[2], unit[3], f, v) for f, v in eval_units(*unit[1:], args)]
                    bar.total += len(new)
                    queue = sorted(queue + new, key=_rank)
                    continue
                counts["evaluated"] += 1
                file, variants = unit[4], unit[5]
                _write(file, result if variants is None else {**_read(file), **result})
    bar.close()
    counts["left"] = len(queue)
    counts["seconds"] = round(time.monotonic() - started)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kodak_parallel", description=__doc__,
                                     formatter_class=HelpFormatter)
    kodak.add_fit_arguments(parser, ["C1"])
    kodak.add_evaluation_arguments(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="CPU processes for the evaluations (default: the number of CPUs, %(default)s here)")
    parser.add_argument("--fit-device", default="cpu", help="where missing fits run, e.g. cuda")
    parser.add_argument("--fit-workers", type=int, default=None, help="processes for fits (default: --workers)")
    parser.add_argument("--stop-after", type=float, default=float("inf"),
                        help="seconds after which no new unit starts (running ones finish; default: no limit)")
    args = parser.parse_args(argv)
    if args.images_dir is None and not args.kodak.is_dir():
        parser.error(f"Kodak directory {args.kodak} not found (pass --kodak DIR)")
    try:  # fills the dataset's defaults: --downscale, --cache, --evals
        args.paths = kodak.resolve_dataset(args).paths
    except kodak.SINRInputError as error:
        parser.error(str(error))
    args.configs = kodak.parse_configs(args.configs)
    args.fit_workers = args.fit_workers or args.workers
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
