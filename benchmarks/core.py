"""Core speed targets: batched OMP vs scikit-learn, SINRLinear forward, whole-model compression.

Run from the repo root::

    python -m benchmarks.core [--out DIR]

Three measurements, in one run, on the same machine:

a. ``torch_sinr.coders.omp`` vs ``sklearn.linear_model.orthogonal_mp`` (the faster of
   ``precompute=False`` / ``precompute=True``) on one problem: a seeded 256 x 4096 dictionary,
   256 signals of N(0, 0.05^2), s = 64. Target: >= 10x faster, with identical supports.
b. ``SINRLinear`` forward (cached decoded weight, eval, inference_mode) vs ``nn.Linear`` at
   batch 65536, for 256->256 and 64->64, measured alternately. Target: ratio <= 1.05x.
c. ``compress_model`` on an 8 x 256 MLP with ``SINRConfig()``: cold (dictionary cache cleared,
   so it includes dictionary generation) and warm. Target: < 2 s. Also two faster settings.

Writes core.json and core.md to ``benchmarks/results/`` (or ``--out``) and prints the tables.
All timings use ``time.perf_counter`` after warm-up runs; reported values are medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

import torch_sinr
from torch_sinr.coders import omp
from torch_sinr.dictionary import DictionarySpec, clear_dictionary_cache, get_dictionary
from torch_sinr.tensor_codes import relative_error

from ._common import DEFAULT_OUT, cpu_model, md_table, time_call, time_call_cpu, write_results

NAME = "core"
DESCRIPTION = ("Core speed targets: batched OMP vs sklearn orthogonal_mp (target >= 10x), SINRLinear "
               "forward vs nn.Linear at batch 65536 (target <= 1.05x), compress_model on an 8x256 MLP "
               "(target < 2 s).")

OMP_SPEEDUP_TARGET = 10.0
FORWARD_RATIO_TARGET = 1.05
COMPRESS_SECONDS_TARGET = 2.0


# --- a. OMP vs scikit-learn ------------------------------------------------------------------
def bench_omp(seed: int, k1: int, k2: int, batch: int, s: int, repeats: int, sk_repeats: int) -> dict:
    import numpy as np
    from sklearn.linear_model import orthogonal_mp

    dictionary = get_dictionary(DictionarySpec(seed=seed, k1=k1, k2=k2), "cpu")  # float32
    gen = torch.Generator().manual_seed(seed)
    signals = torch.randn(batch, k1, generator=gen, dtype=torch.float64) * 0.05

    omp(dictionary, signals, n_nonzero=s)  # warm-up
    ours_times, ours_cpu, code = [], [], None
    for _ in range(repeats):
        t, c, code = time_call_cpu(lambda: omp(dictionary, signals, n_nonzero=s))
        ours_times.append(t)
        ours_cpu.append(c)
    ours_median = statistics.median(ours_times)
    ours_dense = code.to_dense(k2)

    a64 = np.ascontiguousarray(dictionary.double().numpy())
    y = np.ascontiguousarray(signals.numpy().T)  # (k1, B)
    sk = {}
    for precompute in (False, True):
        # Warm-up on a few signals (BLAS thread pools, and the Gram product's code paths).
        orthogonal_mp(a64, y[:, :4], n_nonzero_coefs=s, precompute=precompute)
        times, cpu, coef = [], [], None
        for _ in range(sk_repeats):
            t, c, coef = time_call_cpu(lambda: orthogonal_mp(a64, y, n_nonzero_coefs=s, precompute=precompute))
            times.append(t)
            cpu.append(c)
        theirs = torch.from_numpy(np.ascontiguousarray(coef.T))  # (B, k2)
        same_rows = ((ours_dense != 0) == (theirs != 0)).all(dim=1)
        sk[f"precompute={precompute}"] = {
            "precompute": precompute,
            "median_s": statistics.median(times),
            "times_s": times,
            "cpu_s": cpu,
            "rows_with_identical_support": int(same_rows.sum()),
            "supports_identical": bool(same_rows.all()),
            "max_abs_coef_diff": float((ours_dense - theirs).abs().max()),
            "max_abs_coef": float(theirs.abs().max()),
        }
    best_key = min(sk, key=lambda k: sk[k]["median_s"])
    best = sk[best_key]
    return {
        "problem": {"seed": seed, "k1": k1, "k2": k2, "signals": batch, "signal_std": 0.05, "s": s},
        "ours_median_s": ours_median,
        "ours_min_s": min(ours_times),
        "ours_times_s": ours_times,
        "ours_cpu_s": ours_cpu,
        "sklearn": sk,
        "sklearn_baseline": best_key,
        "sklearn_baseline_s": best["median_s"],
        "speedup": best["median_s"] / ours_median,
        "supports_identical": best["supports_identical"],
        "rows_with_identical_support": best["rows_with_identical_support"],
        "max_abs_coef_diff": best["max_abs_coef_diff"],
    }


# --- b. SINRLinear forward vs nn.Linear -------------------------------------------------------
def bench_forward(seed: int, features: int, batch: int, repeats: int, warmup: int = 3) -> dict:
    torch.manual_seed(seed)
    linear = nn.Linear(features, features).eval()
    sinr = torch_sinr.SINRLinear.from_linear(linear).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, features, generator=gen)
    times = {"nn.Linear": [], "SINRLinear": []}
    modules = {"nn.Linear": linear, "SINRLinear": sinr}
    with torch.inference_mode():
        for _ in range(warmup):  # the first SINRLinear call decodes and caches its weight
            for m in modules.values():
                m(x)
        cached = sinr._cache is not None
        for i in range(repeats):
            order = ("nn.Linear", "SINRLinear") if i % 2 == 0 else ("SINRLinear", "nn.Linear")
            for key in order:
                t, _ = time_call(lambda: modules[key](x))
                times[key].append(t)
        out_equal = torch.equal(sinr(x), nn.functional.linear(x, sinr.weight, sinr.bias))
    lin_med = statistics.median(times["nn.Linear"])
    sinr_med = statistics.median(times["SINRLinear"])
    paired = [b / a for a, b in zip(times["nn.Linear"], times["SINRLinear"])]
    return {
        "shape": f"{features}->{features}",
        "batch": batch,
        "repeats": repeats,
        "s": sinr.spec.s,
        "k2": sinr.spec.k2,
        "weight_rel_error": relative_error(linear.weight.detach(), sinr.weight.detach()),
        "weight_cached": cached,
        "output_matches_F_linear_of_cached_weight": out_equal,
        "linear_median_s": lin_med,
        "sinr_median_s": sinr_med,
        "ratio": sinr_med / lin_med,
        "paired_ratio_median": statistics.median(paired),
        "linear_times_s": times["nn.Linear"],
        "sinr_times_s": times["SINRLinear"],
    }


# --- c. compress_model on an 8x256 MLP --------------------------------------------------------
def build_mlp(seed: int, width: int = 256, hidden_layers: int = 8, d_in: int = 3, d_out: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(d_in, width)]
    for _ in range(hidden_layers - 1):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    layers += [nn.ReLU(), nn.Linear(width, d_out)]
    return nn.Sequential(*layers)


def bench_compress(seed: int, label: str, config_kwargs: dict, repeats: int) -> dict:
    clear_dictionary_cache()  # before the first repeat only: it is the cold one
    times, cpu, reports = [], [], []
    for _ in range(repeats):
        model = build_mlp(seed)  # a fresh model each repeat, built outside the timing
        config = torch_sinr.SINRConfig(**config_kwargs)
        t, c, report = time_call_cpu(lambda: torch_sinr.compress_model(model, config, progress=False))
        times.append(t)
        cpu.append(c)
        reports.append(report)
    report = reports[-1]
    errors = [layer.rel_error for layer in report.layers]
    warm = times[1:]
    return {
        "label": label,
        "config": config_kwargs,
        "coded_layers": len(report.layers),
        "layers": [{"name": l.name, "shape": list(l.shape), "mode": l.mode, "s": l.s, "k2": l.k2,
                    "rel_error": l.rel_error} for l in report.layers],
        "cold_s": times[0],
        "warm_median_s": statistics.median(warm) if warm else None,
        "warm_min_s": min(warm) if warm else None,
        "times_s": times,
        "cpu_s": cpu,
        "cpu_over_wall": [c / t for c, t in zip(cpu, times)],
        "mean_rel_error": sum(errors) / len(errors),
        "compression_ratio": report.ratio,
    }


# --- report ------------------------------------------------------------------------------------
def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _cpu_wall(cpu: list[float], wall: list[float]) -> str:
    return f"{statistics.median(c / t for c, t in zip(cpu, wall)):.2f}"


def render(results: dict) -> str:
    a = results["omp"]
    p = a["problem"]
    parts = [f"# Core speed targets\n\nMachine: {cpu_model()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. 1-minute load average at start / end: "
             f"{results['load_average']['start'][0]:.2f} / {results['load_average']['end'][0]:.2f} "
             f"on {os.cpu_count()} CPUs (other processes skew timings).\n"]

    rows = [["OMP speedup vs sklearn orthogonal_mp "
             f"({p['signals']} signals, k1={p['k1']}, k2={p['k2']}, s={p['s']})",
             f"{a['speedup']:.1f}x", f">= {OMP_SPEEDUP_TARGET:g}x", _yes(a["speedup"] >= OMP_SPEEDUP_TARGET)],
            ["OMP supports identical to sklearn",
             f"{a['rows_with_identical_support']}/{p['signals']} rows", "all rows",
             _yes(a["supports_identical"])]]
    for f in results["forward"]:
        rows.append([f"SINRLinear / nn.Linear forward time, {f['shape']}, batch {f['batch']}",
                     f"{f['ratio']:.3f}x", f"<= {FORWARD_RATIO_TARGET:g}x",
                     _yes(f["ratio"] <= FORWARD_RATIO_TARGET)])
    default = results["compress"][0]
    rows.append(["compress_model 8x256 MLP, SINRConfig(), warm (median)",
                 f"{default['warm_median_s']:.2f} s", f"< {COMPRESS_SECONDS_TARGET:g} s",
                 _yes(default["warm_median_s"] < COMPRESS_SECONDS_TARGET)])
    rows.append(["compress_model 8x256 MLP, SINRConfig(), cold (incl. dictionary generation)",
                 f"{default['cold_s']:.2f} s", f"< {COMPRESS_SECONDS_TARGET:g} s",
                 _yes(default["cold_s"] < COMPRESS_SECONDS_TARGET)])
    parts.append("## Targets\n\n" + md_table(["Target", "Measured", "Target value", "Met"], rows))

    omp_rows = [["torch_sinr omp (batched)", f"{a['ours_median_s'] * 1e3:.1f}",
                 f"median of {len(a['ours_times_s'])}", _cpu_wall(a["ours_cpu_s"], a["ours_times_s"]), "-", "-"]]
    for key, v in a["sklearn"].items():
        omp_rows.append([f"sklearn orthogonal_mp {key}" + (" (baseline)" if key == a["sklearn_baseline"] else ""),
                         f"{v['median_s'] * 1e3:.1f}", f"median of {len(v['times_s'])}",
                         _cpu_wall(v["cpu_s"], v["times_s"]),
                         f"{v['rows_with_identical_support']}/{p['signals']}", f"{v['max_abs_coef_diff']:.2e}"])
    parts.append("## a. OMP vs scikit-learn\n\n" + md_table(
        ["Coder", "Time (ms)", "Repeats", "CPU s / wall s", "Rows with identical support", "Max |coef diff|"],
        omp_rows)
        + f"\n\nSpeedup over the faster sklearn mode: {a['speedup']:.1f}x. CPU s / wall s: process CPU time "
          "over wall time (median over repeats); well below the threads in use means other processes "
          "competed for the cores.")

    fwd_rows = [[f["shape"], f["batch"], f"{f['linear_median_s'] * 1e3:.2f}", f"{f['sinr_median_s'] * 1e3:.2f}",
                 f"{f['ratio']:.3f}", f"{f['paired_ratio_median']:.3f}", f["repeats"], f["s"], f["k2"]]
                for f in results["forward"]]
    parts.append("## b. Forward, eval + inference_mode (cached weight), alternating measurements\n\n" + md_table(
        ["Layer", "Batch", "nn.Linear (ms)", "SINRLinear (ms)", "Ratio of medians", "Median paired ratio",
         "Repeats each", "s", "k2"], fwd_rows))

    comp_rows = [[c["label"], c["coded_layers"], f"{c['cold_s']:.2f}", f"{c['warm_median_s']:.2f}",
                  len(c["times_s"]) - 1, _cpu_wall(c["cpu_s"], c["times_s"]), f"{c['mean_rel_error']:.4f}",
                  f"{c['compression_ratio']:.2f}x"]
                 for c in results["compress"]]
    parts.append("## c. compress_model on an 8x256 MLP\n\n" + md_table(
        ["Config", "Coded layers", "Cold (s)", "Warm median (s)", "Warm repeats", "CPU s / wall s",
         "Mean rel. weight error", "Compression ratio"], comp_rows)
        + "\n\nCold: dictionary cache cleared first (includes dictionary generation). Warm: later repeats, "
          "each on a freshly built model.")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=DESCRIPTION)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-repeats", type=int, default=5, help="timed runs of our OMP (median)")
    parser.add_argument("--sklearn-repeats", type=int, default=2, help="timed runs of each sklearn mode")
    parser.add_argument("--forward-repeats", type=int, default=25, help="timed forwards of each module")
    parser.add_argument("--forward-batch", type=int, default=65536)
    parser.add_argument("--compress-repeats", type=int, default=3, help="first is cold, the rest warm")
    args = parser.parse_args(argv)
    if args.omp_repeats < 1 or args.sklearn_repeats < 1 or args.forward_repeats < 1 or args.compress_repeats < 2:
        parser.error("repeats must be >= 1 (--compress-repeats >= 2: one cold, at least one warm)")

    started = time.perf_counter()
    results: dict = {}
    load = {"start": list(os.getloadavg())}
    results["omp"] = bench_omp(args.seed, k1=256, k2=4096, batch=256, s=64,
                               repeats=args.omp_repeats, sk_repeats=args.sklearn_repeats)
    load["after_omp"] = list(os.getloadavg())
    results["forward"] = [bench_forward(args.seed, f, args.forward_batch, args.forward_repeats) for f in (256, 64)]
    load["after_forward"] = list(os.getloadavg())
    results["compress"] = [
        bench_compress(args.seed, "SINRConfig()", {}, args.compress_repeats),
        bench_compress(args.seed, "SINRConfig(dict_ratio=8)", {"dict_ratio": 8}, args.compress_repeats),
        bench_compress(args.seed, "SINRConfig(dict_ratio=4, s_ratio=0.35)", {"dict_ratio": 4, "s_ratio": 0.35},
                       args.compress_repeats),
    ]
    load["end"] = list(os.getloadavg())
    results["load_average"] = load
    default = results["compress"][0]
    results["targets"] = {
        "omp_speedup": {"measured": results["omp"]["speedup"], "target": f">= {OMP_SPEEDUP_TARGET}",
                        "met": results["omp"]["speedup"] >= OMP_SPEEDUP_TARGET},
        "omp_supports_identical": {"measured": results["omp"]["rows_with_identical_support"],
                                   "target": "all rows", "met": results["omp"]["supports_identical"]},
        **{f"forward_ratio_{f['shape']}": {"measured": f["ratio"], "target": f"<= {FORWARD_RATIO_TARGET}",
                                           "met": f["ratio"] <= FORWARD_RATIO_TARGET}
           for f in results["forward"]},
        "compress_mlp_warm_s": {"measured": default["warm_median_s"], "target": f"< {COMPRESS_SECONDS_TARGET}",
                                "met": default["warm_median_s"] < COMPRESS_SECONDS_TARGET},
        "compress_mlp_cold_s": {"measured": default["cold_s"], "target": f"< {COMPRESS_SECONDS_TARGET}",
                                "met": default["cold_s"] < COMPRESS_SECONDS_TARGET},
    }
    results["settings"] = vars(args)
    results["total_seconds"] = time.perf_counter() - started
    markdown = render(results)
    paths = write_results(args.out, NAME, DESCRIPTION, results, markdown)
    print(markdown)
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return results


if __name__ == "__main__":
    main()
