"""Helpers shared by the benchmarks: machine description, timing, and writing results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every benchmark's ``--help``: the description as written, and each option's default.

    An option's help gets " (default: ...)" appended unless it already says what its default is
    (it has the word "default"), the option is a flag, or its default is None; a path inside the
    repository is shown relative to the repository root.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if re.search(r"\bdefault\b", text, re.IGNORECASE) or action.nargs == 0 or action.default is None:
            return text
        return super()._get_help_string(action)

    def _expand_help(self, action: argparse.Action) -> str:
        default = action.default
        if isinstance(default, Path):
            try:
                action.default = default.resolve().relative_to(REPO)
            except ValueError:
                pass
        try:
            return super()._expand_help(action)
        finally:
            action.default = default


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import numpy
    import torch

    import torch_sinr

    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": torch.cuda.is_available(),
        "numpy_version": numpy.__version__,
        "torch_sinr_version": torch_sinr.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        # Other processes on the machine skew timings: the 1/5/15-minute load averages when the
        # results were written (compare with cpu_count).
        "load_average_at_write": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import sklearn

        info["sklearn_version"] = sklearn.__version__
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas_threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def time_call(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of ``fn`` takes (perf_counter), and what it returned."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_call_cpu(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds and process CPU seconds (all threads) of one call of ``fn``, and its result.

    CPU / wall near the number of threads used means the call had the cores to itself; much
    less means other processes were competing for them.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, out


def timed_median(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float], object]:
    """Median seconds of ``repeats`` calls after ``warmup`` untimed calls; all times; last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t, out = time_call(fn)
        times.append(t)
    return statistics.median(times), times, out


def md_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path | str, name: str, description: str, results: dict, markdown: str) -> dict:
    """Write ``name``.json and ``name``.md into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "description": description, "machine": machine_info(), "results": results}
    json_path = out / f"{name}.json"
    md_path = out / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return {"json": str(json_path), "markdown": str(md_path)}


def publish(out_dir: Path | str, name: str, description: str, results: dict, markdown: str) -> dict:
    """``write_results``, then print the markdown and where it went (what every benchmark ends with)."""
    paths = write_results(out_dir, name, description, results, markdown)
    print(markdown)
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return paths


def exit_code(run: Callable[[object], object], args) -> int:
    """Run a benchmark's ``run(args)``: 0, or 1 with the one-line message of a SINRError."""
    import sys

    from torch_sinr.errors import SINRError

    try:
        run(args)
    except SINRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
