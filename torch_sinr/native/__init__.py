"""Small C++ kernels for the CPU paths where torch's per-op passes cost most, built on first use.

``load("hashgrid")`` compiles ``hashgrid.cpp`` (beside this file) with the system C++ compiler
into a per-user cache and returns it as a ``ctypes.CDLL``, or None when it cannot be built (no
compiler, a failed build, ``TORCH_SINR_NATIVE=0``); ``why_not("hashgrid")`` then says why. Callers
keep their pure-torch path for None, so the library works without a compiler, only slower.

Why ctypes and not a torch C++ extension: the kernels take raw float/int64 pointers and include
no torch header, so a build takes about a second instead of half a minute, and nothing depends
on torch's C++ ABI.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["load", "why_not", "cache_dir", "FLAGS"]

_SOURCES = Path(__file__).parent
# -ffp-contract=off: the compiler fuses no multiply-add the source does not ask for, so float
# sums round as torch's ops do (the kernels promise the torch path's exact numbers).
# -march=native: built where it runs (the cache key holds the CPU's name). -fopenmp: the
# library needs libgomp.so.1, which resolves to the one torch loaded first (same soname), so the
# kernels run on torch's thread pool.
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-std=c++17", "-shared", "-fPIC", "-fopenmp")
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_why: dict[str, str] = {}


def cache_dir() -> Path:
    """Where built kernels are kept: ``$TORCH_SINR_CACHE`` or ``~/.cache/torch_sinr``, then ``native``."""
    root = os.environ.get("TORCH_SINR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "torch_sinr")
    return Path(root) / "native"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build(name: str) -> ctypes.CDLL:
    source = _SOURCES / f"{name}.cpp"
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    text = source.read_bytes()
    # the build is keyed by the source, the flags, the compiler and the CPU (-march=native)
    key = hashlib.sha256(b"\0".join([text, " ".join(FLAGS).encode(), compiler.encode(),
                                     platform.machine().encode(), _cpu_name().encode()])).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            result = subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed on {source.name}: {result.stderr.strip()[-2000:]}")
            os.replace(built, target)  # atomic: a concurrent process sees the whole file or none
    return ctypes.CDLL(str(target))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load(name: str) -> ctypes.CDLL | None:
    """The built kernel library ``name``, or None when it cannot be built here (see ``why_not``)."""
    with _lock:
        if name not in _loaded:
            if os.environ.get("TORCH_SINR_NATIVE", "1") == "0":
                _loaded[name], _why[name] = None, "TORCH_SINR_NATIVE=0"
            else:
                try:
                    _loaded[name] = _build(name)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    _loaded[name], _why[name] = None, str(exc)
        return _loaded[name]


def why_not(name: str) -> str | None:
    """Why ``load(name)`` returned None (None if it was not asked for, or loaded)."""
    return _why.get(name)
