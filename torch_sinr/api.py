"""The model-level verbs: code a model's layers (``nn``) and measure the file it will be (``format``).

``compress_model`` sits above both rooms: ``nn.transform.code_model`` swaps the linears and knows
nothing of files; ``format.model_io`` checks every tensor can be stored and measures the bytes
``save_compressed`` would write. ``tune`` and the CLI call it from here.
"""

from __future__ import annotations

import time

from torch import nn
from torch.profiler import record_function

from .format.model_io import check_storable, fill_file_bytes
from .nn.config import SINRConfig
from .nn.report import CompressionReport, TargetPlan
from .nn.transform import code_model, decompress_model, plan_targets

__all__ = ["compress_model", "decompress_model", "plan_targets"]


def compress_model(model: nn.Module, config: SINRConfig | None = None, *, dry_run: bool = False,
                   progress: bool | None = None, measure_file: bool = True) -> CompressionReport | TargetPlan:
    """Replace the targeted ``nn.Linear`` modules of ``model`` by ``SINRLinear``, in place.

    Returns a :class:`CompressionReport` (or, with ``dry_run``, the :class:`TargetPlan` and no
    change). Every check and all coding happen before the first module is replaced.
    ``measure_file=False`` skips encoding the file to report its bytes (the report's file bytes
    stay 0): for callers that change other tensors' storage before they save, where measuring
    now would encode, e.g., 67 MB of float32 hash tables with Brotli for nothing.
    """
    config = (config or SINRConfig()).validate()
    if dry_run:
        return plan_targets(model, config)
    report = code_model(model, config, progress=progress, check=check_storable)
    if measure_file:
        started = time.perf_counter()
        with record_function("sinr.measure_file"):  # named for the profiler (benchmarks.core)
            fill_file_bytes(model, report)
        report.seconds += time.perf_counter() - started  # the report's time is the whole call's
    return report
