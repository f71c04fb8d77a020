"""Why the automatic sparsity rule is s = ceil(s_ratio * k1): OMP error depends on s/k1, not k1.

Run from the repo root::

    python -m benchmarks.sparsity_rule [--out DIR]

For Gaussian weight matrices (N(0, 1), seeded, 64 rows of length k1) and the seeded Gaussian
dictionary (k1 x k2), one OMP run with ``track_residual=True`` up to s_max = (k1 - 1) // 2 gives
the relative Frobenius error of every shorter code (OMP is greedy): at step s it is
``sqrt(residual_history[s - 1] / ||W||_F^2)``. Measured for k1 in {32, 64, 128, 256} and
k2/k1 in {4, 8, 16, 32}. The claim under test: the error is set by s/k1 and k2/k1, and depends
on k1 only weakly, so the s that reaches a given error grows (about) linearly with k1. The
"spread" rows (absolute max - min and max / min over k1 at a fixed s/k1) show how weakly: any
residual k1 dependence appears as curves that do not overlap in the plot.

Writes sparsity_rule.json, sparsity_rule.md and sparsity_rule.png to ``benchmarks/results/``
(or ``--out``) and prints the tables.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from torch_sinr.core.coders import omp
from torch_sinr.core.dictionary import DictionarySpec, get_dictionary
from torch_sinr.core.sparsity import auto_sparsity, max_sparsity

from ._common import DEFAULT_OUT, HelpFormatter, cpu_model, md_table, write_results

NAME = "sparsity_rule"
DESCRIPTION = ("Relative Frobenius error of OMP codes of Gaussian weights vs s/k1, for several k1 and "
               "dictionary ratios k2/k1: the error depends on s/k1 and k2/k1, barely on k1, so the s "
               "reaching a given error grows linearly with k1 (the basis of s = ceil(s_ratio * k1)).")

K1S = (32, 64, 128, 256)
DICT_RATIOS = (4, 8, 16, 32)
S_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.45)
TARGET_ERRORS = (0.5, 0.3, 0.2)


def error_curve(seed: int, k1: int, dict_ratio: int, rows: int) -> tuple[list[float], float]:
    """Relative error after s = 1..s_max OMP steps (index s - 1), and the OMP run's seconds."""
    dictionary = get_dictionary(DictionarySpec(seed=seed, k1=k1, k2=dict_ratio * k1), "cpu")
    # One weight matrix per k1 (the same for every dictionary ratio).
    gen = torch.Generator().manual_seed(seed * 1_000_003 + k1)
    weights = torch.randn(rows, k1, generator=gen, dtype=torch.float64)
    t0 = time.perf_counter()
    code = omp(dictionary, weights, n_nonzero=max_sparsity(k1), track_residual=True)
    seconds = time.perf_counter() - t0
    total = float((weights * weights).sum())
    return (code.residual_history.clamp_min(0) / total).sqrt().tolist(), seconds


def error_at_fraction(curve: list[float], k1: int, fraction: float) -> float:
    """Error at s = fraction * k1, linearly interpolated between the integer s around it."""
    x = fraction * k1
    lo = max(1, min(len(curve), math.floor(x)))
    hi = max(1, min(len(curve), math.ceil(x)))
    if lo == hi:
        return curve[lo - 1]
    return curve[lo - 1] + (x - lo) * (curve[hi - 1] - curve[lo - 1])


def smallest_s(curve: list[float], target: float) -> int | None:
    return next((s for s, e in enumerate(curve, start=1) if e <= target), None)


def measure(seed: int, rows: int) -> dict:
    runs = []
    for ratio in DICT_RATIOS:
        for k1 in K1S:
            curve, seconds = error_curve(seed, k1, ratio, rows)
            at_auto = {}
            for r in S_RATIOS:
                s = auto_sparsity(k1, r)
                at_auto[str(r)] = {"s": s, "s_over_k1": s / k1, "rel_error": curve[s - 1]}
            runs.append({
                "k1": k1, "dict_ratio": ratio, "k2": ratio * k1, "rows": rows, "s_max": len(curve),
                "omp_seconds": seconds,
                "rel_error_by_s": curve,
                "at_auto_s": at_auto,
                "at_exact_s_over_k1": {str(r): error_at_fraction(curve, k1, r) for r in S_RATIOS},
                "smallest_s_for_error": {str(e): smallest_s(curve, e) for e in TARGET_ERRORS},
            })
    summary = {}
    for ratio in DICT_RATIOS:
        group = [run for run in runs if run["dict_ratio"] == ratio]
        spread = {}
        for r in S_RATIOS:
            values = [run["at_exact_s_over_k1"][str(r)] for run in group]
            spread[str(r)] = {"min": min(values), "max": max(values), "max_minus_min": max(values) - min(values),
                              "max_over_min": max(values) / min(values)}
        summary[str(ratio)] = spread
    return {"settings": {"seed": seed, "rows": rows, "k1": list(K1S), "dict_ratios": list(DICT_RATIOS),
                         "s_ratios": list(S_RATIOS), "target_errors": list(TARGET_ERRORS),
                         "weights": "N(0, 1)"},
            "runs": runs, "spread_across_k1": summary}


def render(results: dict) -> str:
    runs = results["runs"]
    rows = results["settings"]["rows"]
    parts = [f"# Sparsity rule: OMP relative error vs s/k1\n\nMachine: {cpu_model()}, torch {torch.__version__}. "
             f"Gaussian N(0, 1) weights, {rows} rows per k1; seeded Gaussian dictionary k1 x (ratio * k1); "
             "relative Frobenius error ||W - W_hat||_F / ||W||_F of the unquantized OMP codes.\n"]
    for ratio in DICT_RATIOS:
        group = [run for run in runs if run["dict_ratio"] == ratio]
        header = ["k1"] + [f"s/k1={r:g}" for r in S_RATIOS]
        exact = [[run["k1"]] + [f"{run['at_exact_s_over_k1'][str(r)]:.4f}" for r in S_RATIOS] for run in group]
        spread = results["spread_across_k1"][str(ratio)]
        exact.append(["spread: max - min"] + [f"{spread[str(r)]['max_minus_min']:.4f}" for r in S_RATIOS])
        exact.append(["spread: max / min"] + [f"{spread[str(r)]['max_over_min']:.2f}" for r in S_RATIOS])
        auto = [[run["k1"]] + [f"{run['at_auto_s'][str(r)]['rel_error']:.4f} (s={run['at_auto_s'][str(r)]['s']})"
                               for r in S_RATIOS] for run in group]
        reach = [[run["k1"]] + [
            "-" if run["smallest_s_for_error"][str(e)] is None else
            f"{run['smallest_s_for_error'][str(e)]} ({run['smallest_s_for_error'][str(e)] / run['k1']:.3f})"
            for e in TARGET_ERRORS] for run in group]
        parts.append(
            f"## k2/k1 = {ratio}\n\n"
            "Relative error at s = (s/k1) * k1 (linear interpolation between integer s):\n\n"
            + md_table(header, exact)
            + "\n\nRelative error at the s the library picks, s = ceil(s_ratio * k1) capped at 2s < k1:\n\n"
            + md_table(["k1"] + [f"s_ratio={r:g}" for r in S_RATIOS], auto)
            + "\n\nSmallest s reaching a relative error (s/k1 in parentheses; - = not reached with 2s < k1):\n\n"
            + md_table(["k1"] + [f"error <= {e:g}" for e in TARGET_ERRORS], reach))
    return "\n\n".join(parts) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), sharex=True, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, ratio in zip(axes.flat, DICT_RATIOS):
        for color, k1 in zip(colors, K1S):
            run = next(r for r in results["runs"] if r["k1"] == k1 and r["dict_ratio"] == ratio)
            curve = run["rel_error_by_s"]
            xs = [s / k1 for s in range(1, len(curve) + 1)]
            ax.plot(xs, curve, color=color, lw=1.6, label=f"k1 = {k1}")
        for r in S_RATIOS:
            ax.axvline(r, color="0.55", lw=0.8, ls="--", zorder=0)
        ax.set_title(f"k2/k1 = {ratio}")
        ax.grid(True, axis="y", color="0.9")
        ax.set_xlim(0, 0.5)
        ax.set_ylim(0, 1.02)
    for ax in axes[1]:
        ax.set_xlabel("s / k1 (non-zeros per weight vector / vector length)")
    for ax in axes[:, 0]:
        ax.set_ylabel("relative error ||W - W_hat||_F / ||W||_F")
    axes[0, 0].legend(loc="upper right")
    fig.suptitle(f"OMP on Gaussian weights ({results['settings']['rows']} rows): error vs s/k1, "
                 "one panel per dictionary ratio\n(dashed lines: the s/k1 values tabulated in sparsity_rule.md)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sparsity_rule", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dictionaries and of the Gaussian weights")
    parser.add_argument("--rows", type=int, default=64, help="weight vectors (rows of length k1) per k1")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be >= 1")

    started = time.perf_counter()
    results = measure(args.seed, args.rows)
    results["total_seconds"] = time.perf_counter() - started
    markdown = render(results)
    paths = write_results(args.out, NAME, DESCRIPTION, results, markdown)
    png = Path(args.out) / f"{NAME}.png"
    plot(results, png)
    print(markdown)
    print(f"wrote {paths['json']}, {paths['markdown']} and {png}")
    return results


if __name__ == "__main__":
    main()
