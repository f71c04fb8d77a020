"""Core speed targets: exact OMP vs scikit-learn, SINRLinear forward, whole-model compression.

Run from the repo root::

    python -m benchmarks.core [--out DIR] [--sklearn-python PATH]

Measured side by side in one run, on the same machine:

a. ``torch_sinr.core.coders.omp`` (every exact path: the C++ ``gram`` kernel where it builds,
   ``batch`` and the original ``screen``) vs
   ``sklearn.linear_model.orthogonal_mp`` in both ``precompute`` modes, run by this environment's
   numpy and by a current numpy/scikit-learn (a separate interpreter, by default the venv
   ``benchmarks/cache/sklearn-current``, made with
   ``python -m venv benchmarks/cache/sklearn-current && benchmarks/cache/sklearn-current/bin/pip
   install "numpy>=2.3" "scipy>=1.16" "scikit-learn>=1.7" threadpoolctl``). The baseline is the
   fastest scikit-learn configuration measured. Problems: a seeded 256 x 4096 dictionary with 256
   signals of N(0, 0.05^2) at s = 64 (target: >= 10x, identical supports), and a 64 x 65536
   dictionary (the paper's 16-bit index budget) with 195 signals at s = 29. numpy, scipy and the
   BLAS/OpenMP libraries with their kernels (threadpoolctl) are recorded for every interpreter.
   With a CUDA device, the first problem also runs there.
b. ``SINRLinear`` forward (cached decoded weight, eval, inference_mode) vs ``nn.Linear`` at
   batch 65536, for 256->256 and 64->64, measured alternately. Target: ratio <= 1.05x.
c. ``compress_model`` on an 8 x 256 MLP at s = ceil(0.45 k1), k2 = 4096, 16-bit values
   (target < 2 s) and on a 3 x 64 SIREN at k2 = 65536 (target < 1 s), each with the automatic OMP
   path and with each torch path forced: cold (dictionary and Gram caches cleared) and warm.
   The code memo of ``tensor_codes`` is cleared before every repeat, so nothing is served cached.
d. A 256 x 65536 dictionary (the largest default) with 256 signals at s = 64, run in a child
   process: wall time and OMP's own peak memory against the stated bound.
e. Every OMP path on a ladder of problem sizes: where batch OMP starts to win over screen, and
   what ``method="auto"`` picks (``omp.auto_method``: gram where it runs, else ``omp.BATCH_MIN_WORK``).
c2. One warm ``compress_model`` of the 8 x 256 MLP under the profiler: seconds per phase (named in
   the library with ``record_function``), each phase's multiply-adds and memory traffic, and what
   that work takes at this machine's bf16 GEMM rate and memory bandwidth, measured in the run.

Writes core.json and core.md to ``benchmarks/results/`` (or ``--out``) and prints the tables.
All timings use ``time.perf_counter`` after warm-up runs; reported values are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import torch_sinr
from torch_sinr.core import tensor_codes
from torch_sinr.core.coders import omp, omp_batch, omp_gram
from torch_sinr.core.coders import screening
from torch_sinr.core.dictionary import DictionarySpec, clear_dictionary_cache, get_dictionary
from torch_sinr.format import model_io
from torch_sinr.inr.models import INR, INRConfig
from torch_sinr.core.tensor_codes import relative_error

from ._common import DEFAULT_OUT, HelpFormatter, cpu_model, md_table, publish, time_call, time_call_cpu

NAME = "core"
DESCRIPTION = ("Core speed targets: exact OMP vs scikit-learn orthogonal_mp with a current numpy (target "
               ">= 10x), SINRLinear forward vs nn.Linear at batch 65536 (target <= 1.05x), compress_model on "
               "an 8x256 MLP (target < 2 s) and a 3x64 SIREN at k2 = 65536 (target < 1 s).")

OMP_SPEEDUP_TARGET = 10.0
FORWARD_RATIO_TARGET = 1.05
COMPRESS_SECONDS_TARGET = 2.0
SIREN_SECONDS_TARGET = 1.0
FIXED = {"s_ratio": 0.45, "dict_ratio": 16, "value_bits": 16}  # the fixed settings
SKLEARN_VENV_PYTHON = Path(__file__).resolve().parent / "cache" / "sklearn-current" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "sklearn_worker.py"
_omp_module = sys.modules["torch_sinr.core.coders.omp"]


def numeric_stack() -> dict:
    """This interpreter's numpy/scipy/torch and the BLAS/OpenMP libraries loaded, with kernels."""
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "threadpools": threadpool_info()}


def _blas_line(info: dict) -> str:
    pools = [p for p in info["threadpools"] if p.get("user_api") == "blas"]
    return "; ".join(f"{p['internal_api']} {p.get('version')} ({p.get('architecture')}, {p['num_threads']} threads)"
                     for p in pools) or "no BLAS found"


def _reset_caches(cold: bool) -> None:
    tensor_codes._MEMO.clear()
    model_io.forget_payload()  # every repeat encodes its file: a repeat's model has the same bytes
    if cold:
        clear_dictionary_cache()
        _omp_module._PREPARED.clear()


class _ForcedMethod:
    """Make ``omp(method="auto")`` take one path, for a side-by-side row."""

    def __init__(self, method: str):
        self.method, self.saved = method, None

    def __enter__(self):
        self.saved = _omp_module.auto_method
        if self.method != "auto":
            _omp_module.auto_method = lambda *args: self.method
        return self

    def __exit__(self, *exc):
        _omp_module.auto_method = self.saved


def _gram_runs(k2: int, s: int) -> bool:
    """Can the gram path run this problem here (kernel built, Gram matrix within its bound)?"""
    return omp_gram.available(k2, s, torch.device("cpu"), 8 * k2 * k2 <= omp_batch.GRAM_MAX_BYTES)


def omp_methods() -> tuple[str, ...]:
    """The exact paths this machine runs: the C++ gram kernel only where it builds."""
    return (("gram",) if omp_gram._kernel() is not None else ()) + ("batch", "screen")


# --- a. OMP vs scikit-learn ------------------------------------------------------------------
def run_sklearn(python: str, a64, signals, s: int, repeats: int, ours_dense) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "dictionary.npy", a64)
        np.save(folder / "signals.npy", np.ascontiguousarray(signals.numpy().T))
        (folder / "problem.json").write_text(json.dumps({"s": s}))
        subprocess.run([python, str(WORKER), str(folder), str(repeats)], check=True)
        info = json.loads((folder / "sklearn.json").read_text())
        for key, mode in info["modes"].items():
            if "skipped" in mode:
                continue
            coef = np.load(folder / f"coef_{key.replace('=', '_')}.npy", allow_pickle=False)
            theirs = torch.from_numpy(np.ascontiguousarray(coef.T))
            same_rows = ((ours_dense != 0) == (theirs != 0)).all(dim=1)
            mode.update({"median_s": statistics.median(mode["times_s"]),
                         "rows_with_identical_support": int(same_rows.sum()),
                         "supports_identical": bool(same_rows.all()),
                         "max_abs_coef_diff": float((ours_dense - theirs).abs().max())})
    return info


def bench_omp(seed: int, k1: int, k2: int, batch: int, s: int, repeats: int, sk_repeats: int,
              pythons: dict[str, str]) -> dict:
    dictionary = get_dictionary(DictionarySpec(seed=seed, k1=k1, k2=k2), "cpu")  # float32
    gen = torch.Generator().manual_seed(seed)
    signals = torch.randn(batch, k1, generator=gen, dtype=torch.float64) * 0.05
    auto = _omp_module.auto_method(batch, k1, k2, s, torch.device("cpu"))

    ours, code = {}, None
    for method in omp_methods():
        if method == "gram" and not _gram_runs(k2, s):
            continue
        omp(dictionary, signals, n_nonzero=s, method=method, progress=False)  # warm-up, Gram included
        times, cpu = [], []
        for _ in range(repeats):
            t, c, result = time_call_cpu(lambda: omp(dictionary, signals, n_nonzero=s, method=method,
                                                     progress=False))
            times.append(t)
            cpu.append(c)
            if method == auto:
                code = result
        ours[method] = {"median_s": statistics.median(times), "times_s": times, "cpu_s": cpu}
    ours_dense = code.to_dense(k2)

    a64 = dictionary.double().numpy()
    sk = {label: run_sklearn(python, a64, signals, s, sk_repeats, ours_dense) for label, python in pythons.items()}
    candidates = [(mode["median_s"], label, key) for label, info in sk.items()
                  for key, mode in info["modes"].items() if "median_s" in mode]
    best_s, best_label, best_key = min(candidates)
    best = sk[best_label]["modes"][best_key]
    result = {
        "problem": {"seed": seed, "k1": k1, "k2": k2, "signals": batch, "signal_std": 0.05, "s": s},
        "auto_method": auto,
        "screen_dtype": str(screening.screen_dtype(torch.device("cpu"))).replace("torch.", ""),
        "ours": ours,
        "ours_median_s": ours[auto]["median_s"],
        "sklearn": sk,
        "sklearn_baseline": f"{best_label}, {best_key}",
        "sklearn_baseline_numpy": sk[best_label]["numpy"],
        "sklearn_baseline_s": best_s,
        "speedup": best_s / ours[auto]["median_s"],
        "speedup_screen_path": best_s / ours["screen"]["median_s"],
        "speedup_by_path": {m: best_s / v["median_s"] for m, v in ours.items()},
        "supports_identical": best["supports_identical"],
        "rows_with_identical_support": best["rows_with_identical_support"],
        "max_abs_coef_diff": best["max_abs_coef_diff"],
        "work": omp_work(batch, k1, k2, s),
    }
    # The bound of this design here: exact OMP that scores every atom every step does the
    # screening GEMM's multiply-adds at least once, at this machine's GEMM rate in the screening
    # precision (bfloat16 on AMX / AVX512-BF16 machines, float32 elsewhere). Stated where the
    # dictionary is screened in one product, the shape timed here; a dictionary screened in
    # chunks (k2 > CHUNK_COLUMNS) keeps each chunk's product in cache, which no one big GEMM shows.
    if k2 <= screening.CHUNK_COLUMNS:
        dtype = screening.screen_dtype(torch.device("cpu"))
        rate = screen_gemm_rate(k1, k2, batch, dtype)
        floor = result["work"]["screen_gemm_madds"] / rate
        result["screen_floor"] = {"gemm_madds_per_s": rate, "seconds": floor, "max_speedup": best_s / floor,
                                  "matrix_units": matrix_units()}
    if torch.cuda.is_available():
        result["cuda"] = bench_omp_cuda(dictionary, signals, s, repeats, code)
    return result


def _floor_line(a: dict) -> str:
    floor = a.get("screen_floor")
    if floor is None:  # not stated (screened in chunks), or results from before it was measured
        return ""
    units = ", ".join(floor["matrix_units"]) or "none"
    return (f" At this machine's {a['screen_dtype']} GEMM rate at the screening shape "
            f"({floor['gemm_madds_per_s'] / 1e9:.1f} G multiply-adds/s; matrix/bf16 CPU flags: {units}), the "
            f"screening GEMM alone takes {floor['seconds'] * 1e3:.0f} ms: the torch paths, which multiply the "
            f"residuals by the dictionary every step, cannot be more than {floor['max_speedup']:.1f}x the fastest "
            f"scikit-learn here. The gram path does not form that product (it updates the correlations from the "
            f"Gram matrix, k2 x t multiply-adds per row and step).")


def bench_omp_cuda(dictionary, signals, s: int, repeats: int, cpu_code) -> dict:
    out = {"device": torch.cuda.get_device_name()}
    a, w = dictionary.cuda(), signals.cuda()
    for method in ("batch", "screen"):
        omp(a, w, n_nonzero=s, method=method, progress=False)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            code = omp(a, w, n_nonzero=s, method=method, progress=False)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out[method] = {"median_s": statistics.median(times), "times_s": times,
                       "supports_equal_cpu": bool(torch.equal(code.indices.cpu().sort(1).values,
                                                              cpu_code.indices.sort(1).values))}
    return out


def omp_work(batch: int, k1: int, k2: int, s: int) -> dict:
    """Multiply-adds and memory traffic of each OMP path, summed over the s steps: what the
    timings should be read against (the screening GEMM is compute-bound; the per-row float64
    state is read from memory every step)."""
    sum_t = s * (s - 1) / 2
    sum_t2 = sum(t * t for t in range(s))
    return {
        "screen_gemm_madds": batch * k1 * k2 * s,
        "screen_path_basis_bytes": 2 * 8 * batch * k1 * sum_t,  # Q (B x t x k1 float64), read twice a step
        "batch_path_triangular_bytes": 2 * 8 * batch * sum_t2,  # L^-1 (B x t x t float64), read twice a step
        "batch_path_residual_madds": batch * k1 * (sum_t + s),  # r = w - A_I x, CSR
        "candidate_pass_bytes": 3 * 4 * batch * k2 * s,  # float32 |A^T r|: write, block max, read
        "gram_path_madds": batch * k2 * (k1 + sum_t),  # A^T w (float64), then alpha a step (omp_gram, float32)
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


# --- c. compress_model ------------------------------------------------------------------------
def build_mlp(seed: int, width: int = 256, hidden_layers: int = 8, d_in: int = 3, d_out: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(d_in, width)]
    for _ in range(hidden_layers - 1):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    layers += [nn.ReLU(), nn.Linear(width, d_out)]
    return nn.Sequential(*layers)


def build_siren(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return INR(INRConfig(hidden_features=64, hidden_layers=3))


MODELS = {"8x256 MLP": build_mlp, "3x64 SIREN": build_siren}


def bench_compress(seed: int, model_name: str, label: str, config_kwargs: dict, method: str, repeats: int) -> dict:
    times, cpu, reports = [], [], []
    for i in range(repeats):
        model = MODELS[model_name](seed)  # a fresh model each repeat, built outside the timing
        config = torch_sinr.SINRConfig(**config_kwargs)
        _reset_caches(cold=i == 0)
        with _ForcedMethod(method):
            t, c, report = time_call_cpu(lambda: torch_sinr.compress_model(model, config, progress=False))
        times.append(t)
        cpu.append(c)
        reports.append(report)
    report = reports[-1]
    errors = [layer.rel_error for layer in report.layers]
    warm = times[1:]
    return {
        "model": model_name,
        "label": label,
        "method": method,
        "config": config_kwargs,
        "coded_layers": len(report.layers),
        "layers": [{"name": l.name, "shape": list(l.shape), "mode": l.mode, "s": l.s, "k2": l.k2,
                    "rel_error": l.rel_error} for l in report.layers],
        "cold_s": times[0],
        "warm_median_s": statistics.median(warm),
        "times_s": times,
        "cpu_s": cpu,
        "mean_rel_error": sum(errors) / len(errors),
        "compression_ratio": report.ratio,
    }


# --- c2. where the 8x256 MLP's time goes ---------------------------------------------------------
PHASES = {"sinr_omp.gram": "OMP in correlation space (C++ kernel): A^T w, then A^T r = A^T w - G[:, I] beta a step",
          "sinr_omp.select": "OMP selection: screening GEMM (bfloat16 or float32), |A^T r| passes, float64 re-scoring",
          "sinr_omp.cholesky": "OMP Cholesky growth: G[I, new], the two L^-1 products",
          "sinr_omp.residual": "OMP coefficients and residual r = w - A_I x (CSR)",
          "sinr.measure_file": "measuring the file: Brotli q11 of every stream, range coding"}


def screen_gemm_rate(k1: int, k2: int, batch: int, dtype: torch.dtype, repeats: int = 20) -> float:
    """Multiply-adds per second of one screening GEMM, (batch x k1) @ (k1 x k2), in ``dtype``: the
    fastest of ``repeats`` (what the machine can do, the number a bound needs; a median of a few
    ~5 ms products moved 1.6x between two idle runs here)."""
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(batch, k1, generator=gen).to(dtype)
    a = torch.randn(k1, k2, generator=gen).to(dtype)
    _, times, _ = _median_time(lambda: r @ a, repeats)
    return batch * k1 * k2 / min(times)


def matrix_units() -> list[str]:
    """The CPU's matrix / bfloat16 extensions (/proc/cpuinfo flags): what bfloat16 screening can use."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":", 1)[1].split() if f.startswith("amx") or f in ("avx512_bf16", "avx512f"))


def machine_rates(k1: int, k2: int, batch: int, repeats: int = 5) -> dict:
    """What this machine sustains for the two resources OMP is bound by: GEMM at the screening
    shape in the screening precision OMP uses here, and memory bandwidth (a 256 MiB float64 copy,
    read + write)."""
    dtype = screening.screen_dtype(torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(2**25, dtype=torch.float64, generator=gen)
    dst = torch.empty_like(src)
    copy, _, _ = _median_time(lambda: dst.copy_(src), repeats)
    return {"screen_gemm_madds_per_s": screen_gemm_rate(k1, k2, batch, dtype, repeats),
            "screen_dtype": str(dtype).replace("torch.", ""), "copy_bytes_per_s": 2 * src.numel() * 8 / copy,
            "gemm_shape": [batch, k1, k2]}


def _median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    fn()
    times, out = [], None
    for _ in range(repeats):
        t, out = time_call(fn)
        times.append(t)
    return statistics.median(times), times, out


def bench_breakdown(seed: int) -> dict:
    """One warm compress_model of the 8x256 MLP under the profiler: seconds per phase (the phases
    are named with record_function in the library), next to each phase's work and what that work
    takes at this machine's measured GEMM rate and memory bandwidth."""
    from torch.profiler import ProfilerActivity, profile

    config = torch_sinr.SINRConfig(**FIXED)
    torch_sinr.compress_model(build_mlp(seed), config, progress=False)  # warm: dictionary, Gram
    model = build_mlp(seed)
    _reset_caches(cold=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        report = torch_sinr.compress_model(model, config, progress=False)
        total = time.perf_counter() - start
    events = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in PHASES}
    big = max(report.layers, key=lambda l: l.shape[0] * l.shape[1])
    k1, k2, s = big.shape[1], big.k2, big.s
    batch = sum(l.shape[0] for l in report.layers if l.shape[1] == k1 and l.mode == "row" and l.tied_to is None)
    work = omp_work(batch, k1, k2, s)
    work["residual_gather_bytes"] = 8 * work["batch_path_residual_madds"]  # float64 atoms read per multiply-add
    rates = machine_rates(k1, k2, batch)
    bw, gemm = rates["copy_bytes_per_s"], rates["screen_gemm_madds_per_s"]
    at_rate = {
        "sinr_omp.select": work["screen_gemm_madds"] / gemm + work["candidate_pass_bytes"] / bw,
        "sinr_omp.cholesky": work["batch_path_triangular_bytes"] / bw,
        "sinr_omp.residual": work["residual_gather_bytes"] / bw,
    }
    # Save after measuring: served from the payload the measurement encoded (same bytes).
    with tempfile.TemporaryDirectory() as tmp:
        save_s, _ = time_call(lambda: torch_sinr.save_compressed(model, Path(tmp) / "m.safetensors"))
    return {"model": "8x256 MLP", "config": FIXED, "total_s": total, "phases_s": events,
            "phases_at_machine_rate_s": at_rate, "omp_problem": {"signals": batch, "k1": k1, "k2": k2, "s": s},
            "work": work, "machine": rates, "file_bytes": report.file_bytes, "save_after_s": save_s,
            "note": "profiler on: phase times include its overhead (a few %)"}


# --- d. the largest default dictionary, in a child process ------------------------------------
_CHILD = """
import json, sys, time, torch
from torch_sinr.core.coders import omp
from torch_sinr.core.dictionary import DictionarySpec, get_dictionary
omp_module = sys.modules["torch_sinr.core.coders.omp"]

def status(key):  # kB -> MiB, from the kernel's accounting of this process
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

k1, k2, batch, s = map(int, sys.argv[1:5])
a = get_dictionary(DictionarySpec(seed=0, k1=k1, k2=k2), "cpu")
w = torch.randn(batch, k1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.05
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS: the peak below is OMP's own
start = time.perf_counter()
code = omp(a, w, n_nonzero=s, progress=False)
seconds = time.perf_counter() - start
peak = status("VmHWM")
prepared = omp_module.prepared(a, torch.device("cpu")).nbytes() / 2**20
print(json.dumps({"seconds": seconds, "rss_before_omp_mib": before, "rss_peak_during_omp_mib": peak,
                  "omp_peak_increase_mib": peak - before, "prepared_dictionary_mib": prepared,
                  "counts_ok": bool((code.counts == s).all())}))
"""


def bench_large_dictionary(k1: int = 256, k2: int = 65536, batch: int = 256, s: int = 64) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(k1), str(k2), str(batch), str(s)], check=True,
                         capture_output=True, text=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    padded = -(-k2 // screening.BLOCK) * screening.BLOCK
    # the Gram matrix in float64 and the correlation-space kernel's float32 copy of it
    gram_bytes = 12 * k2 * k2 if 8 * k2 * k2 <= omp_batch.GRAM_MAX_BYTES else 0
    bound = 12 * k1 * padded + 8 * k2 + gram_bytes + omp_batch.CHUNK_BYTES + 16 * batch * s
    rows = omp_batch.rows_per_chunk(k1, k2, s, gram_bytes > 0, 2)
    return {"problem": {"k1": k1, "k2": k2, "signals": batch, "s": s}, **measured,
            "bound_mib": bound / 2**20, "rows_per_chunk": rows,
            "bound_formula": "12 k1 k2 bytes (float64 atoms + the screening copy, at most float32) + 12 k2^2 "
                             "(Gram and its float32 copy, only when the Gram's 8 k2^2 <= 256 MiB) + 256 MiB of per-row state (CHUNK_BYTES) + the codes"}


# --- e. where batch OMP starts to win ---------------------------------------------------------
CROSSOVER_PROBLEMS = [(16, 64, 1024, 8), (16, 64, 1024, 29), (64, 64, 1024, 29), (256, 64, 1024, 29),
                      (512, 64, 1024, 29), (128, 128, 2048, 58), (195, 64, 4096, 29), (256, 128, 2048, 58),
                      (128, 256, 4096, 116), (64, 64, 65536, 29)]


def bench_crossover(repeats: int) -> list[dict]:
    rows = []
    for batch, k1, k2, s in CROSSOVER_PROBLEMS:
        a = get_dictionary(DictionarySpec(seed=0, k1=k1, k2=k2), "cpu")
        w = torch.randn(batch, k1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.05
        medians = {}
        for method in omp_methods():
            if method == "gram" and not _gram_runs(k2, s):
                continue
            omp(a, w, n_nonzero=s, method=method, progress=False)
            medians[method] = statistics.median(
                time_call(lambda: omp(a, w, n_nonzero=s, method=method, progress=False))[0] for _ in range(repeats))
        rows.append({"problem": {"signals": batch, "k1": k1, "k2": k2, "s": s}, "work": batch * k2 * s,
                     "batch_s": medians["batch"], "screen_s": medians["screen"], "gram_s": medians.get("gram"),
                     "faster": min(medians, key=medians.get),
                     "auto": _omp_module.auto_method(batch, k1, k2, s, torch.device("cpu"))})
    return rows


# --- report ------------------------------------------------------------------------------------
def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _cpu_wall(cpu: list[float], wall: list[float]) -> str:
    return f"{statistics.median(c / t for c, t in zip(cpu, wall)):.2f}"


def _problem(p: dict) -> str:
    return f"{p['signals']} signals, k1={p['k1']}, k2={p['k2']}, s={p['s']}"


def native_info() -> dict:
    """Whether the OMP kernel was built here, and how (the gram path's rows rest on it)."""
    from torch_sinr import native

    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        vector = sorted(f for f in flags.split(":", 1)[1].split() if f in ("avx2", "fma", "avx512f"))
    except (OSError, StopIteration):
        vector = []
    return {"omp_gram_built": omp_gram._kernel() is not None, "why_not": native.why_not("omp_gram"),
            "flags": list(native.FLAGS), "cpu_vector_flags": vector}


def _kernel_line(info: dict | None) -> str:
    if info is None:  # results from before the gram path
        return ""
    if not info["omp_gram_built"]:
        return f"OMP gram kernel: not built ({info['why_not']})."
    return (f"OMP gram kernel (torch_sinr/native/omp_gram.cpp): float32 correlations with a float64 rescoring of every "
            f"atom within their error bound (float64 decisions), OpenMP over signals, built with "
            f"`{' '.join(info['flags'])}` (CPU vector flags: {', '.join(info['cpu_vector_flags']) or 'none'}).")


def render(results: dict) -> str:
    stack = results["stack"]
    # the measuring machine, as recorded (render may run elsewhere, e.g. from a results file)
    parts = [f"# Core speed targets\n\nMachine: {results.get('cpu_model', cpu_model())}, torch {torch.__version__} "
             f"({stack['this']['torch_cpu_capability']}), {torch.get_num_threads()} threads. "
             f"1-minute load average at start / end: {results['load_average']['start'][0]:.2f} / "
             f"{results['load_average']['end'][0]:.2f} on {os.cpu_count()} CPUs (other processes skew timings). "
             f"{_kernel_line(results.get('native'))}\n"]
    stack_rows = [[label, info["numpy"], info["scipy"], info.get("sklearn", "-"), _blas_line(info)]
                  for label, info in stack.items()]
    parts.append("Numeric stacks (threadpoolctl):\n\n" + md_table(
        ["Interpreter", "numpy", "scipy", "scikit-learn", "BLAS (kernel)"], stack_rows))

    rows = []
    for a in results["omp"]:
        rows.append([f"OMP speedup vs the fastest sklearn orthogonal_mp ({_problem(a['problem'])})",
                     f"{a['speedup']:.1f}x", f">= {OMP_SPEEDUP_TARGET:g}x", _yes(a["speedup"] >= OMP_SPEEDUP_TARGET)])
        rows.append([f"OMP supports identical to sklearn ({_problem(a['problem'])})",
                     f"{a['rows_with_identical_support']}/{a['problem']['signals']} rows", "all rows",
                     _yes(a["supports_identical"])])
    for f in results["forward"]:
        rows.append([f"SINRLinear / nn.Linear forward time, {f['shape']}, batch {f['batch']}",
                     f"{f['ratio']:.3f}x", f"<= {FORWARD_RATIO_TARGET:g}x", _yes(f["ratio"] <= FORWARD_RATIO_TARGET)])
    for c in results["compress"]:
        if c["method"] != "auto":
            continue
        target = COMPRESS_SECONDS_TARGET if c["model"] == "8x256 MLP" else SIREN_SECONDS_TARGET
        for kind in ("warm_median_s", "cold_s"):
            rows.append([f"compress_model {c['model']}, {c['label']}, {'warm (median)' if kind == 'warm_median_s' else 'cold'}",
                         f"{c[kind]:.2f} s", f"< {target:g} s", _yes(c[kind] < target)])
    parts.append("## Targets\n\n" + md_table(["Target", "Measured", "Target value", "Met"], rows))

    for a in results["omp"]:
        p = a["problem"]
        omp_rows = []
        for method, v in a["ours"].items():
            omp_rows.append([f"torch_sinr omp, method={method}" + (" (auto)" if method == a["auto_method"] else ""),
                             f"{v['median_s'] * 1e3:.1f}", f"median of {len(v['times_s'])}",
                             _cpu_wall(v["cpu_s"], v["times_s"]), "-", "-"])
        for label, info in a["sklearn"].items():
            for key, v in info["modes"].items():
                name = f"sklearn orthogonal_mp {key}, numpy {info['numpy']} ({label})"
                if "skipped" in v:
                    omp_rows.append([name, "skipped: " + v["skipped"], "-", "-", "-", "-"])
                    continue
                if f"{label}, {key}" == a["sklearn_baseline"]:
                    name += " (baseline)"
                omp_rows.append([name, f"{v['median_s'] * 1e3:.1f}", f"median of {len(v['times_s'])}",
                                 _cpu_wall(v["cpu_s"], v["times_s"]),
                                 f"{v['rows_with_identical_support']}/{p['signals']}", f"{v['max_abs_coef_diff']:.2e}"])
        if "cuda" in a:
            for method in ("batch", "screen"):
                v = a["cuda"][method]
                omp_rows.append([f"torch_sinr omp on {a['cuda']['device']}, method={method}", f"{v['median_s'] * 1e3:.1f}",
                                 f"median of {len(v['times_s'])}", "-",
                                 "same as CPU" if v["supports_equal_cpu"] else "DIFFERENT from CPU", "-"])
        w = a["work"]
        parts.append(f"## a. OMP vs scikit-learn: {_problem(p)}\n\n" + md_table(
            ["Coder", "Time (ms)", "Repeats", "CPU s / wall s", "Rows with identical support", "Max |coef diff|"],
            omp_rows)
            + f"\n\nScreening precision: {a['screen_dtype']}. Speedup over the fastest scikit-learn: "
              f"{a['speedup']:.1f}x (by path: " + ", ".join(f"{m} {v:.1f}x" for m, v in a.get(
                  "speedup_by_path", {"screen": a["speedup_screen_path"]}).items()) + "). Work: screening "
              f"GEMM {w['screen_gemm_madds'] / 1e9:.2f} G multiply-adds; float64 state read per run: "
              f"{w['screen_path_basis_bytes'] / 2**30:.2f} GiB (screen path's basis) vs "
              f"{w['batch_path_triangular_bytes'] / 2**30:.2f} GiB (batch path's L^-1); candidate passes over "
              f"|A^T r|: {w['candidate_pass_bytes'] / 2**30:.2f} GiB."
            + _floor_line(a))

    fwd_rows = [[f["shape"], f["batch"], f"{f['linear_median_s'] * 1e3:.2f}", f"{f['sinr_median_s'] * 1e3:.2f}",
                 f"{f['ratio']:.3f}", f"{f['paired_ratio_median']:.3f}", f["repeats"], f["s"], f["k2"]]
                for f in results["forward"]]
    parts.append("## b. Forward, eval + inference_mode (cached weight), alternating measurements\n\n" + md_table(
        ["Layer", "Batch", "nn.Linear (ms)", "SINRLinear (ms)", "Ratio of medians", "Median paired ratio",
         "Repeats each", "s", "k2"], fwd_rows))

    comp_rows = [[c["model"], c["label"], c["method"], c["coded_layers"], f"{c['cold_s']:.2f}", f"{c['warm_median_s']:.2f}",
                  len(c["times_s"]) - 1, _cpu_wall(c["cpu_s"], c["times_s"]), f"{c['mean_rel_error']:.4f}",
                  f"{c['compression_ratio']:.2f}x"]
                 for c in results["compress"]]
    parts.append("## c. compress_model\n\n" + md_table(
        ["Model", "Config", "OMP path", "Coded layers", "Cold (s)", "Warm median (s)", "Warm repeats",
         "CPU s / wall s", "Mean rel. weight error", "Compression ratio"], comp_rows)
        + "\n\nCold: dictionary, Gram and code caches cleared first (includes dictionary generation). Warm: later "
          "repeats, each on a freshly built model, code memo cleared. OMP path auto = what the library chooses.")

    br = results["breakdown"]
    w, p, m = br["work"], br["omp_problem"], br["machine"]
    # results written before the rate was measured in the screening precision hold the bfloat16 one
    gemm_rate, gemm_dtype = m.get("screen_gemm_madds_per_s", m.get("bf16_gemm_madds_per_s")), m.get("screen_dtype",
                                                                                                   "bfloat16")
    work_text = {
        "sinr_omp.gram": f"{w.get('gram_path_madds', 0) / 1e9:.1f} G multiply-adds (float32 but A^T w)",
        "sinr_omp.select": f"{w['screen_gemm_madds'] / 1e9:.0f} G {gemm_dtype} multiply-adds + "
                           f"{w['candidate_pass_bytes'] / 1e9:.1f} GB of |A^T r| passes",
        "sinr_omp.cholesky": f"{w['batch_path_triangular_bytes'] / 1e9:.1f} GB of float64 L^-1 read",
        "sinr_omp.residual": f"{w['batch_path_residual_madds'] / 1e9:.2f} G multiply-adds gathering "
                             f"{w['residual_gather_bytes'] / 1e9:.1f} GB of float64 atoms",
        "sinr.measure_file": f"{br['file_bytes']} bytes written",
    }
    phase_rows = [[PHASES[k], f"{br['phases_s'].get(k, 0.0):.2f}", work_text[k],
                   f"{br['phases_at_machine_rate_s'][k]:.2f}" if k in br["phases_at_machine_rate_s"] else "-"]
                  for k in PHASES if k in br["phases_s"] or not k.startswith("sinr_omp")]
    accounted = sum(br["phases_s"].values())
    phase_rows.append(["everything else (planning, quantizing, reports)", f"{br['total_s'] - accounted:.2f}", "-", "-"])
    at_rate = sum(br['phases_at_machine_rate_s'].values())
    # the rates model the batch path's phases; where the Gram kernel ran instead, they are what it replaced
    rate_text = (f"{at_rate:.2f} (the batch path's OMP phases, which the Gram kernel replaced in this run)"
                 if "sinr_omp.gram" in br["phases_s"] else f"{at_rate:.2f} (OMP only)")
    phase_rows.append(["**compress_model total (profiler on)**", f"**{br['total_s']:.2f}**", "-", rate_text])
    parts.append("## c2. Where the 8x256 MLP's time goes (one warm run under the profiler)\n\n" + md_table(
        ["Phase", "Measured (s)", "Work", "Work at this machine's rates (s)"], phase_rows)
        + f"\n\nOMP problem: {_problem(p)}. Machine rates measured in this run: {gemm_dtype} GEMM "
          f"{gemm_rate / 1e9:.0f} G multiply-adds/s at {m['gemm_shape'][0]} x {m['gemm_shape'][1]} "
          f"x {m['gemm_shape'][2]}; memory copy {m['copy_bytes_per_s'] / 1e9:.1f} GB/s (read + write). "
          f"save_compressed right after compress_model: {br['save_after_s'] * 1e3:.0f} ms (it reuses the payload "
          f"that compress_model measured). {br['note']}. The residual's atoms (k2 x k1 float64) are mostly "
          "served from cache, so its measured time can undercut its bandwidth figure; the selection and "
          "Cholesky figures are what this machine needs for that work at least.")

    big = results["large_dictionary"]
    parts.append("## d. Largest default dictionary, bounded memory (child process)\n\n" + md_table(
        ["Problem", "Time (s)", "RSS before OMP (MiB)", "Peak during OMP (MiB)", "OMP's peak increase (MiB)",
         "Prepared dictionary (MiB)", "Stated bound (MiB)", "Within bound", "Rows per chunk"],
        [[_problem(big["problem"]), f"{big['seconds']:.2f}", f"{big['rss_before_omp_mib']:.0f}",
          f"{big['rss_peak_during_omp_mib']:.0f}", f"{big['omp_peak_increase_mib']:.0f}",
          f"{big['prepared_dictionary_mib']:.0f}", f"{big['bound_mib']:.0f}",
          _yes(big["omp_peak_increase_mib"] <= big["bound_mib"]), big["rows_per_chunk"]]])
        + f"\n\nBound on OMP's own memory: {big['bound_formula']}. The peak is the kernel's VmHWM, reset "
          "just before OMP starts (the dictionary itself is generated before).")
    cross = results["crossover"]
    parts.append("## e. OMP paths by problem size (what `method=\"auto\"` picks)\n\n" + md_table(
        ["Problem", "B k2 s", "gram (ms)", "batch (ms)", "screen (ms)", "Faster", "auto picks"],
        [[_problem(c["problem"]), f"{c['work']:.2e}",
          f"{c['gram_s'] * 1e3:.1f}" if c.get("gram_s") is not None else "-", f"{c['batch_s'] * 1e3:.1f}",
          f"{c['screen_s'] * 1e3:.1f}", c["faster"], c["auto"]] for c in cross])
        + f"\n\nauto picks gram where its kernel builds and the Gram matrix fits; otherwise batch from B k2 s >= "
          f"{_omp_module.BATCH_MIN_WORK:.2e}.")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random dictionaries, signals and models measured")
    parser.add_argument("--omp-repeats", type=int, default=5, help="timed runs of our OMP (median)")
    parser.add_argument("--sklearn-repeats", type=int, default=2, help="timed runs of each sklearn mode")
    parser.add_argument("--forward-repeats", type=int, default=25, help="timed forwards of each module")
    parser.add_argument("--forward-batch", type=int, default=65536,
                        help="rows per forward in the SINRLinear vs nn.Linear timing")
    parser.add_argument("--compress-repeats", type=int, default=3,
                        help="timed compress_model runs of each model and OMP path: the first cold, the rest warm")
    parser.add_argument("--sklearn-python", default=str(SKLEARN_VENV_PYTHON),
                        help="an interpreter with a current numpy and scikit-learn for the baseline "
                             "(default: the venv benchmarks/cache/sklearn-current; see the module docstring)")
    args = parser.parse_args(argv)
    if args.omp_repeats < 1 or args.sklearn_repeats < 1 or args.forward_repeats < 1 or args.compress_repeats < 2:
        parser.error("repeats must be >= 1 (--compress-repeats >= 2: one cold, at least one warm)")
    pythons = {"this environment": sys.executable}
    if Path(args.sklearn_python).exists():
        pythons["current numpy"] = args.sklearn_python
    else:
        print(f"warning: {args.sklearn_python} not found: the baseline is this environment's scikit-learn only "
              "(see the module docstring to make the current-numpy venv)", file=sys.stderr)

    started = time.perf_counter()
    results: dict = {"stack": {"this": numeric_stack()}}
    load = {"start": list(os.getloadavg())}
    results["cpu_model"] = cpu_model()
    results["native"] = native_info()
    results["omp"] = [
        bench_omp(args.seed, k1=256, k2=4096, batch=256, s=64, repeats=args.omp_repeats,
                  sk_repeats=args.sklearn_repeats, pythons=pythons),
        bench_omp(args.seed, k1=64, k2=65536, batch=195, s=29, repeats=args.omp_repeats,
                  sk_repeats=args.sklearn_repeats, pythons=pythons),
    ]
    for label, info in results["omp"][0]["sklearn"].items():
        results["stack"][label] = {k: info[k] for k in ("python", "numpy", "scipy", "sklearn", "threadpools")}
    load["after_omp"] = list(os.getloadavg())
    results["forward"] = [bench_forward(args.seed, f, args.forward_batch, args.forward_repeats) for f in (256, 64)]
    load["after_forward"] = list(os.getloadavg())
    fixed_label = "s = ceil(0.45 k1), k2 = 16 k1, 16-bit"
    siren_label = "s = ceil(0.45 k1), k2 = 65536, 16-bit"
    siren = {"s_ratio": 0.45, "k2": 65536, "value_bits": 16}
    results["compress"] = [
        bench_compress(args.seed, "8x256 MLP", fixed_label, FIXED, method, args.compress_repeats)
        for method in ("auto", "batch", "screen")
    ] + [
        bench_compress(args.seed, "3x64 SIREN", siren_label, siren, method, args.compress_repeats)
        for method in ("auto", "batch", "screen")
    ]
    results["breakdown"] = bench_breakdown(args.seed)
    load["after_compress"] = list(os.getloadavg())
    results["large_dictionary"] = bench_large_dictionary()
    results["crossover"] = bench_crossover(args.omp_repeats)
    load["end"] = list(os.getloadavg())
    results["load_average"] = load
    targets = {}
    for a in results["omp"]:
        key = f"{a['problem']['k1']}x{a['problem']['k2']}"
        targets[f"omp_speedup_{key}"] = {"measured": a["speedup"], "target": f">= {OMP_SPEEDUP_TARGET}",
                                         "met": a["speedup"] >= OMP_SPEEDUP_TARGET}
        targets[f"omp_supports_identical_{key}"] = {"measured": a["rows_with_identical_support"],
                                                    "target": "all rows", "met": a["supports_identical"]}
    for f in results["forward"]:
        targets[f"forward_ratio_{f['shape']}"] = {"measured": f["ratio"], "target": f"<= {FORWARD_RATIO_TARGET}",
                                                  "met": f["ratio"] <= FORWARD_RATIO_TARGET}
    for c in results["compress"]:
        if c["method"] == "auto":
            limit = COMPRESS_SECONDS_TARGET if c["model"] == "8x256 MLP" else SIREN_SECONDS_TARGET
            for kind in ("warm_median_s", "cold_s"):
                targets[f"compress_{c['model'].replace(' ', '_')}_{kind}"] = {
                    "measured": c[kind], "target": f"< {limit}", "met": c[kind] < limit}
    results["targets"] = targets
    results["settings"] = vars(args)
    results["total_seconds"] = time.perf_counter() - started
    markdown = render(results)
    publish(args.out, NAME, DESCRIPTION, results, markdown)
    return results


if __name__ == "__main__":
    main()
