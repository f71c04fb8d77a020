"""CPU speed of ``torch_sinr.inr.hashgrid.HashGrid`` against nerfstudio's pure-torch ``HashEncoding``.

Run from the repo root::

    python -m benchmarks.hashgrid_speed [--out DIR]

Both encode random points of [0, 1]^3 (nerfstudio's ``HashEncoding`` expects [0, 1] too; it does
not check) on the nerfacto field configuration: 16 levels, 2**19 rows per hashed level, 2 features
per row, resolutions 16..2048. Both interpolate trilinearly over 8 corners with the same cells per
level (``floor(16 * b**l)``), so given the same table values they compute the same features: the
benchmark checks that first, copying nerfstudio's table into a HashGrid (its coarse levels through
nerfstudio's hash). The difference in storage: nerfstudio hashes every level into 2**19 rows
(16 * 2**19 rows in all), HashGrid stores the 5 coarsest levels dense (6,098,925 rows).

Timed, on the CPU with torch's default thread count (``--threads`` overrides it), for N = 2**16
and 2**18 points: one training step, ``out = encoding(x)`` then ``out.sum().backward()``. "forward"
is the first part (with autograd recording, as in training), "forward+backward" the whole step. The two implementations alternate
(and swap order every repeat); medians of 5 repeats after one warm-up step per size. Process CPU
seconds are recorded next to wall seconds: CPU / wall well below the thread count means other
processes were competing for the cores.

Second section (``benchmarks/_hashgrid_shacira.py``): the SHACIRA-style image model on its
large-image configuration, side by side in the same run: inference of 2**20 random positions by
the previous path, the new one (``ImageModel.decode``) and the MLP alone (the bound), and training
(pixels per second, loss after the same steps) by the previous and the fused path.
Writes hashgrid_speed.json and hashgrid_speed.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import os
import statistics
import time

import torch

from torch_sinr.inr.hashgrid import HashGrid, HashGridConfig, hash_coords

from . import _hashgrid_shacira as shacira
from ._common import DEFAULT_OUT, HelpFormatter, cpu_model, md_table, publish

NAME = "hashgrid_speed"
DESCRIPTION = ("CPU time of one forward and one forward+backward of torch_sinr.inr.hashgrid.HashGrid and of "
               "nerfstudio's torch HashEncoding on the nerfacto field configuration (3-D, 16 levels, "
               "log2 T = 19, 2 features, resolutions 16..2048), for 2**16 and 2**18 random points; and the "
               "SHACIRA-style image model's inference (previous path, torch ops, the C++ kernel, MLP alone) and training "
               "(previous, fused) on its large-image configuration.")

CONFIG = HashGridConfig(dims=3, levels=16, log2_table=19, latent_dim=2, min_res=16, max_res=2048)
SIZES = (2**16, 2**18)
REPEATS = 5
WARMUP = 1
AGREEMENT_POINTS = 4096


def nerfstudio_encoding() -> tuple[torch.nn.Module | None, str]:
    """nerfstudio's HashEncoding on CONFIG (torch implementation), or None and why not."""
    try:
        from nerfstudio.field_components.encodings import HashEncoding
    except ImportError as exc:
        return None, f"nerfstudio not installed ({exc})"
    try:
        version = importlib.metadata.version("nerfstudio")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    encoding = HashEncoding(num_levels=CONFIG.levels, min_res=CONFIG.min_res, max_res=CONFIG.max_res,
                            log2_hashmap_size=CONFIG.log2_table, features_per_level=CONFIG.latent_dim,
                            implementation="torch")
    return encoding, version


def grid_from_nerfstudio(table: torch.Tensor) -> HashGrid:
    """A HashGrid holding nerfstudio's features: hashed levels take its level's rows as they are,
    dense levels take, for every vertex, the row nerfstudio's hash picks for it."""
    grid = HashGrid(CONFIG)
    rows_per_level = 2**CONFIG.log2_table
    with torch.no_grad():
        for level, (res, dense) in enumerate(zip(CONFIG.resolutions(), CONFIG.dense_levels())):
            start = level * rows_per_level
            if dense:
                v = torch.tensor(list(itertools.product(range(res), repeat=3)), dtype=torch.int64)
                grid.latents[grid.rows(level, v)] = table[hash_coords(v, CONFIG.log2_table) + start]
            else:
                offset = int(grid.offsets[level])
                grid.latents[offset:offset + rows_per_level] = table[start:start + rows_per_level]
    return grid


def agreement(nerfstudio: torch.nn.Module) -> float:
    """Largest |HashGrid - nerfstudio| over random points once both hold the same features."""
    grid = grid_from_nerfstudio(nerfstudio.hash_table.detach())
    x = torch.rand(AGREEMENT_POINTS, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((grid(x) - nerfstudio(x)).abs().max())


def training_step(module: torch.nn.Module, x: torch.Tensor) -> dict:
    """Wall seconds of the forward and of forward+backward of one step, and its process CPU seconds."""
    module.zero_grad(set_to_none=True)
    c0, t0 = time.process_time(), time.perf_counter()
    out = module(x)
    t1 = time.perf_counter()
    out.sum().backward()
    t2, c1 = time.perf_counter(), time.process_time()
    return {"forward_s": t1 - t0, "step_s": t2 - t0, "cpu_s": c1 - c0}


def measure(nerfstudio: torch.nn.Module | None) -> dict:
    ours = HashGrid(CONFIG)
    modules = {"hashgrid": ours} if nerfstudio is None else {"hashgrid": ours, "nerfstudio": nerfstudio}
    runs = {}
    for n in SIZES:
        x = torch.rand(n, 3, generator=torch.Generator().manual_seed(n))
        times = {name: [] for name in modules}
        for repeat in range(WARMUP + REPEATS):
            # alternate, and swap who goes first, so drifting load hits both alike
            order = list(modules) if repeat % 2 == 0 else list(reversed(modules))
            for name in order:
                step = training_step(modules[name], x)
                if repeat >= WARMUP:
                    times[name].append(step)
        per_impl = {}
        for name, steps in times.items():
            per_impl[name] = {
                "forward_median_s": statistics.median(s["forward_s"] for s in steps),
                "step_median_s": statistics.median(s["step_s"] for s in steps),
                "cpu_over_wall": sum(s["cpu_s"] for s in steps) / sum(s["step_s"] for s in steps),
                "steps": steps,
            }
        run = {"points": n, **per_impl}
        if "nerfstudio" in per_impl:
            ns, ours = per_impl["nerfstudio"], per_impl["hashgrid"]
            run["ratio_forward"] = ns["forward_median_s"] / ours["forward_median_s"]
            run["ratio_step"] = ns["step_median_s"] / ours["step_median_s"]
        runs[str(n)] = run
        print(f"N = {n}: done", flush=True)
    return runs


def render(results: dict) -> str:
    ns_ok = results["nerfstudio"]["available"]
    rows = []
    for run in results.get("runs", {}).values():
        for label, key, ratio in (("forward", "forward_median_s", "ratio_forward"),
                                  ("forward+backward", "step_median_s", "ratio_step")):
            ours = run["hashgrid"][key] * 1e3
            theirs = f"{run['nerfstudio'][key] * 1e3:.0f}" if ns_ok else "n/a"
            rows.append([f"2^{run['points'].bit_length() - 1}", label, f"{ours:.0f}", theirs,
                         f"**{run[ratio]:.2f}x**" if ns_ok else "n/a"])
    m = results["machine_summary"]
    cpu_ratio = "; ".join(f"2^{run['points'].bit_length() - 1}: " + ", ".join(
        f"{name} {run[name]['cpu_over_wall']:.2f}" for name in ("hashgrid", "nerfstudio") if name in run)
        for run in results.get("runs", {}).values())
    lines = [
        "# Hash-grid encoding speed on CPU: torch_sinr HashGrid vs nerfstudio HashEncoding (torch)",
        "",
        f"*Generated by `python -m benchmarks.hashgrid_speed`.* {DESCRIPTION}",
        "",
        md_table(["points", "pass", "HashGrid (ms)", "nerfstudio (ms)", "nerfstudio / HashGrid"], rows),
        "",
        f"- Machine: {m['cpu_model']}, torch {m['torch_version']}, {m['threads']} threads; median of "
        f"{REPEATS} repeats after {WARMUP} warm-up step, the two alternating. \"forward\" is timed inside the "
        "training step (autograd recording).",
        f"- Process CPU / wall seconds ({m['threads']} threads): {cpu_ratio}; load average at start "
        f"{m['load_average_at_start']}.",
    ]
    if ns_ok:
        lines += [
            f"- nerfstudio {results['nerfstudio']['version']}. Same function: with nerfstudio's table copied in, "
            f"the largest difference over {AGREEMENT_POINTS} random points is "
            f"{results['nerfstudio']['max_abs_difference']:.2e}.",
            "- Both interpolate over 8 corners per level. nerfstudio hashes every level (no dense coarse "
            f"levels): {results['nerfstudio']['rows']:,} table rows against HashGrid's "
            f"{results['hashgrid']['rows']:,} ({results['hashgrid']['dense_levels']} dense levels).",
        ]
    else:
        lines.append(f"- {results['nerfstudio']['version']}: only HashGrid was timed.")
    if "shacira" in results:
        lines += ["", render_shacira(results)]
    lines.append(f"- Total benchmark time {results['total_seconds']:.0f} s.")
    return "\n".join(lines)


def render_shacira(results: dict) -> str:
    inf, tr, m = results["shacira"]["inference"], results["shacira"]["training"], results["machine_summary"]
    paths = inf["paths"]
    labels = {"previous": "previous path (model forward, no_grad, 2^18-point tiles)",
              "torch": "`ImageModel.decode`, grid by torch ops (no compiler)",
              "new": "`ImageModel.decode`, grid by the C++ kernel",
              "grid_alone_torch": "grid alone, torch ops (`HashGrid` without gradient)",
              "grid_alone_new": "grid alone, C++ kernel (`HashGrid` without gradient)"}
    labels.update({f"mlp_alone_{c}": f"MLP alone, 2^{c.bit_length() - 1}-row chunks" for c in shacira.MLP_CHUNKS})
    bound = paths[inf["mlp_bound"]]["points_per_s"]
    rows = [[labels[name], f"{run['points_per_s'] / 1e6:.3f}", f"{run['median_wall_s'] * 1e3:.0f}",
             f"{run['points_per_s'] / bound:.2f}", f"{run['cpu_over_wall']:.2f}"] for name, run in paths.items()]
    c = inf["model_config"]
    train_rows = [[path, f"{tr[path]['pixels_per_s'] / 1e3:.1f}", f"{tr[path]['final_mse']:.6f}",
                   f"{tr[path]['final_psnr']:.3f}", f"{tr[path]['final_bits_per_latent']:.4f}"]
                  for path in ("previous", "new")]
    return "\n".join([
        "## SHACIRA-style image model: inference and training paths",
        "",
        f"Large-image configuration: {c['levels']} levels, log2 T = {c['log2_table']}, resolutions "
        f"{c['min_res']}..{c['max_res']}, {inf['latents']:,} latents, latent decoder 1 -> {c['features']}, "
        f"MLP {c['levels'] * c['features']} -> {c['hidden']} x {c['hidden_layers']} -> 3; float32, "
        f"{m['threads']} threads, 2^{inf['points'].bit_length() - 1} random positions, median of {inf['repeats']} "
        "repeats after a warm-up, the paths alternating (order reversed every repeat).",
        "",
        md_table(["path", "M points/s", "ms", "/ MLP alone", "CPU / wall"], rows),
        "",
        f"- Fastest path ({labels[inf['fastest']]}) / previous path: **{inf['new_over_previous']:.2f}x** "
        f"(target >= 5x); / MLP alone: **{inf['new_over_mlp']:.2f}** (target >= 0.70; torch ops: "
        f"{inf['torch_over_mlp']:.2f}, previous: {inf['previous_over_mlp']:.2f}); / torch ops: "
        f"{inf['new_over_torch']:.2f}x. Decode folds the latent decoder into the MLP's first linear "
        f"({c['levels']} -> {c['hidden']} instead of {c['levels'] * c['features']} -> {c['hidden']}), so its MLP "
        "costs less than the MLP-alone bound's.",
        f"- The C++ kernel: {_kernel_line(inf)}",
        f"- Largest |new - previous| over {shacira.AGREEMENT_POINTS} points: "
        f"{inf['max_abs_difference_new_vs_previous']:.2e} (the fold sums in another order; the grid's features "
        "are bit-identical, tests/inr/hashgrid/test_fast.py and test_native.py). Kernel and torch ops decode "
        f"bit-identical here: {'yes' if inf['new_equals_torch'] else 'NO'}.",
        "",
        f"Training on {tr['image']} ({tr['shape'][1]} x {tr['shape'][0]}), {tr['steps']} steps of "
        f"{tr['batch']:,} pixels (the reduced CPU protocol: 90% soft rounding, then hard), same seed; "
        "median of 2 runs per path, alternating:",
        "",
        md_table(["path", "k pixels/s", "MSE after the steps", "PSNR (dB)", "bits / latent"], train_rows),
        "",
        f"- Fused / previous: **{tr['new_over_previous']:.2f}x** pixels per second. Previous: soft rounding as an "
        "autograd transform of the gathered rows, Adam; new: rounding fused into the gather and one scatter, "
        "fused Adam (`train(fused=True)`).",
        f"- Load average at the start of the run {m['load_average_at_start']}, at the end {m['load_average_at_end']}.",
    ])


def _kernel_line(inf: dict) -> str:
    kernel = inf["native_kernel"]
    if not kernel["built"]:
        return f"not built here ({kernel['why_not']}); every path above is torch ops."
    return (f"built by torch_sinr.native with `{' '.join(kernel['flags'])}`, float32 on torch's OpenMP threads "
            "(no AMX or other matrix unit: gathers and scalar/AVX2 arithmetic).")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hashgrid_speed", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own default, as the results record)")
    parser.add_argument("--sections", choices=("all", "nerfacto", "shacira"), default="all",
                        help="which comparisons to run")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    torch.manual_seed(0)
    load = [round(x, 2) for x in os.getloadavg()]
    nerfstudio, version = nerfstudio_encoding()
    ns_info = {"available": nerfstudio is not None, "version": version}
    if nerfstudio is not None:
        ns_info["rows"] = int(nerfstudio.hash_table.shape[0])
        ns_info["max_abs_difference"] = agreement(nerfstudio)
    results = {
        "config": CONFIG.to_dict(),
        "sizes": list(SIZES),
        "repeats": REPEATS,
        "warmup": WARMUP,
        "machine_summary": {"cpu_model": cpu_model(), "torch_version": torch.__version__,
                            "threads": torch.get_num_threads(), "load_average_at_start": load},
        "hashgrid": {"rows": sum(CONFIG.level_sizes()), "dense_levels": sum(CONFIG.dense_levels())},
        "nerfstudio": ns_info,
    }
    if args.sections in ("all", "nerfacto"):
        results["runs"] = measure(nerfstudio)
    if args.sections in ("all", "shacira"):
        results["shacira"] = {"inference": shacira.measure_inference()}
        print("SHACIRA inference: done", flush=True)
        results["shacira"]["training"] = shacira.measure_training()
        print("SHACIRA training: done", flush=True)
    results["machine_summary"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = time.perf_counter() - started
    markdown = render(results)
    publish(args.out, NAME, DESCRIPTION, results, markdown)
    return results


if __name__ == "__main__":
    main()
