"""Compressing a trained nerfstudio scene: the field MLPs with SINR, the rest kept dense.

``compress_fields`` works on a live model (used by the command and by the training hook);
``compress_run`` is the whole command: load a run, evaluate, compress, save, evaluate again,
write the report.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from torch_sinr import SINRConfig, SINRConfigError, SINRLinear, compress_model
from torch_sinr.nn.transform import store_dense
from torch_sinr.format import FileReport, decode_state_dict, save_compressed

from . import metrics as ns_metrics
from .compat import check_tcnn_ported
from .pipeline_io import load_trained_pipeline
from .render_support import check_can_render, render_problem
from .state import file_bytes_by_part, metric_keys, scene_view, state_bytes_by_part, sync_children
from .tcnn_scene import tcnn_places

if TYPE_CHECKING:
    from .scene_codec import FinetuneOptions, SceneTarget

COMPRESSED_NAME = "scene.sinr.safetensors"
# The plugin's coding settings: s = 0.45 k1 (measured on lego, benchmarks/results/nerf_lego.md) and
# the library's default dictionary (dictionary.default_k2: 2**16 atoms for these short vectors).
# A 16 k1 dictionary, the plugin's earlier setting, cost a 1400-step nerfacto on lego 2.4 dB on
# training rays (29.54 -> 27.19) where the default costs 0.04 dB.
NERF_S_RATIO = 0.45
NERF_DICT_RATIO = None

# ns-sinr-compress's default target for hash tables: the PSNR drop (dB, on training rays) the
# issue's post-training target allows.
DEFAULT_PSNR_DROP = 0.3

# Keys of our provenance entries in the file's metadata (beside torch_sinr's own).
META_METHOD = "nerfstudio_method"
META_STEP = "nerfstudio_step"
META_CONFIG = "nerfstudio_sinr_config"
# "true" in a file of a tcnn run: its tensors are those of the torch port of tcnn (tcnn_scene), which
# the reader builds even where the config alone does not say tcnn (instant-ngp has no such option)
META_TCNN_PORT = "nerfstudio_tcnn_port"

def field_targets(view: nn.Module) -> str:
    """A regex naming every linear under the scene's nerfstudio Fields (fields and proposal
    networks). A regex, not a list, so torch_sinr's input-layer rule still keeps coordinate
    input layers (fan-in <= input_fan_in_max) dense."""
    from nerfstudio.fields.base_field import Field

    roots = [name for name, m in view.named_modules() if isinstance(m, Field) and name]
    roots = [r for r in roots if not any(r.startswith(o + ".") for o in roots)]
    if not roots:
        raise SINRConfigError("the model has no nerfstudio Field: nothing to compress")
    return "re:(?:" + "|".join(re.escape(r) for r in roots) + r")\..+"

def fields_config(view: nn.Module, config: SINRConfig | None = None) -> SINRConfig:
    """The config ``compress_fields`` codes ``view`` with: the plugin's settings unless given, every
    field linear a target, input layers picked by fan-in alone."""
    config = replace(config or SINRConfig(s_ratio=NERF_S_RATIO, dict_ratio=NERF_DICT_RATIO))
    if config.target_modules == "all-linear":
        config.target_modules = field_targets(view)
    # A scene holds several MLPs, each fed by its own encoding: which linear comes first in the
    # module order says nothing there, so only the fan-in rule picks input layers.
    config.keep_first_linear = False
    return config


def store_fields_uniform(model: nn.Module, bits: int | dict[str, int], config: SINRConfig | None = None, *,
                         method_name: str = "<method>"):
    """The uniform baseline of ``compress_fields``, in place: every linear it would SINR-code keeps
    its weight on a per-tensor uniform grid of ``bits`` (one width, or one per layer name), and
    every other tensor is stored exactly as ``compress_fields`` stores it. Returns ``(view,
    report)``; save with ``save_scene(..., require_codes=False)``."""
    check_tcnn_ported(model, method_name)
    view = scene_view(model)
    config = fields_config(view, config)
    names = compress_model(view, config, dry_run=True).matched
    if not names:
        raise SINRConfigError(f"no field linear to code in {method_name}")
    widths = {name: bits for name in names} if isinstance(bits, int) else dict(bits)
    if set(widths) != set(names):
        raise SINRConfigError(f"bits must name exactly the field linears {sorted(names)}, got {sorted(widths)}")
    pattern = {**config.dense_bits_pattern, **{"re:" + re.escape(name) + r"\.weight": b for name, b in widths.items()}}
    report = store_dense(view, replace(config, dense_bits_pattern=pattern))
    model.sinr_config = view.sinr_config
    return view, report


def compress_fields(model: nn.Module, config: SINRConfig | None = None, *, method_name: str = "<method>",
                    measure_file: bool = True):
    """Compress every nn.Linear of ``model``'s fields and proposal networks, in place.

    Metric modules (LPIPS, ...) are never touched. Returns ``(view, report)``: ``view`` is the
    scene part of the model (see ``state.scene_view``), the module to save and load.
    """
    check_tcnn_ported(model, method_name)
    view = scene_view(model)
    config = fields_config(view, config)
    plan = compress_model(view, config, dry_run=True)
    if not plan.matched:
        raise SINRConfigError(f"no field linear to compress in {method_name}: {plan}")
    report = compress_model(view, config, measure_file=measure_file)
    sync_children(view, model)
    model.sinr_config = view.sinr_config
    return view, report

def save_scene(view: nn.Module, path: Path, *, method_name: str, step: int, require_codes: bool = True) -> FileReport:
    """Write the compressed scene (one .safetensors file) with its nerfstudio provenance
    (``require_codes=False``: a scene with no SINR layer, ``store_fields_uniform``'s baseline)."""
    config = getattr(view, "sinr_config", None)
    metadata = {META_METHOD: method_name, META_STEP: str(int(step)),
                META_CONFIG: json.dumps(config.to_dict() if config else None)}
    if tcnn_places(view):
        metadata[META_TCNN_PORT] = "true"
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_compressed(view, path, metadata=metadata, require_codes=require_codes)

def scene_file_bytes(method_name: str, step: int):
    """A function ``view -> bytes`` of the file ``save_scene`` writes (metadata included)."""
    import tempfile

    def measure(view: nn.Module) -> int:
        with tempfile.TemporaryDirectory() as scratch:
            return save_scene(view, Path(scratch) / COMPRESSED_NAME, method_name=method_name, step=step).file_bytes

    return measure

def check_file_equals_memory(view: nn.Module, path: Path) -> None:
    """The file decodes to exactly the model in memory (so every 'after' figure is the file's)."""
    decoded = decode_state_dict(path)
    modules = dict(view.named_modules())
    state = view.state_dict()
    for key, tensor in decoded.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        current = module.weight if isinstance(module, SINRLinear) and leaf == "weight" else state[key]
        if not torch.equal(tensor.to(current.device, current.dtype), current.detach()):
            raise RuntimeError(f"{path}: {key} decodes to a different tensor than the model holds")

@dataclass
class CompressResult:
    report_path: Path
    compressed_path: Path
    report: dict

def compress_run(load_config: Path, output_dir: Path, config: SINRConfig | None = None, *,
                 evaluate: bool = True, comparison_view: int = 0, target: SceneTarget | None = None,
                 tables: bool = True, finetune: FinetuneOptions | None = None, score_rays: int = 1 << 14,
                 progress: bool = True) -> CompressResult:
    """Load an ns-train run, evaluate, compress it, save, evaluate again, report.

    The field MLPs are coded with SINR; with ``tables`` (the default) every torch hash table is
    quantized level by level for ``target`` (default: within ``DEFAULT_PSNR_DROP`` dB on a fixed
    sample of ``score_rays`` training rays) and entropy-coded; ``finetune`` then trains the coded
    scene a few hundred steps with a rate term (``scene_codec``). Writes into ``output_dir``:
    ``scene.sinr.safetensors``, ``report.json`` and (when evaluating) ``comparison.png``
    (ground truth | before | after for one eval view).
    """
    from .hash_tables import scene_tables
    from .rays import scene_scorer
    from .scene_codec import SceneTarget, code_tables, finetune_scene, settle

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer_config, pipeline, checkpoint, step = load_trained_pipeline(Path(load_config))
    model = pipeline.model
    method = trainer_config.method_name
    check_tcnn_ported(model, method)  # before the (slow) evaluation

    view = scene_view(model)
    original = state_bytes_by_part(view)
    original_dtypes = sorted({str(t.dtype).replace("torch.", "") for t in view.state_dict().values()})
    excluded = metric_keys(model)
    scene = scene_tables(view) if tables else []
    if scene and target is None:
        target = SceneTarget(psnr_drop=DEFAULT_PSNR_DROP)
    # a scene that cannot render here (an occupancy-grid model other than instant-ngp, off CUDA):
    # refuse what renders before anything is done, and score the tables only where the scene renders
    # (a byte target needs no score)
    can_render = render_problem(model) is None
    if evaluate:
        check_can_render(model, "evaluation", "skip it (--skip-eval)")
    if scene and target.psnr_drop is not None:
        check_can_render(model, "the hash tables' PSNR target",
                         "give a byte target alone (--target-bytes) or keep the tables dense (--no-tables)")
    if scene and finetune is not None and finetune.steps:
        check_can_render(model, "fine-tuning", "leave --finetune-steps at 0")

    timings = {}
    before = after = None
    scratch = ns_metrics.scratch_dir()
    before_dir, after_dir = Path(scratch.name) / "before", Path(scratch.name) / "after"
    if evaluate:
        t0 = time.perf_counter()
        before = ns_metrics.evaluate(pipeline, before_dir)
        timings["eval_before"] = time.perf_counter() - t0

    score = score_before = rays = None
    if scene and can_render:
        rays, score, score_before = scene_scorer(model, pipeline.datamanager.train_dataset, score_rays, pipeline.device)
    t0 = time.perf_counter()
    # with tables to code, the file is measured once they are (see compress_model's measure_file)
    view, sinr_report = compress_fields(model, config, method_name=method, measure_file=not scene)
    timings["compress"] = time.perf_counter() - t0
    table_coding = finetune_log = None
    if scene:
        t0 = time.perf_counter()
        measure = scene_file_bytes(method, step)
        table_coding = code_tables(view, scene, target, score, score_before, measure=measure)
        timings["tables"] = time.perf_counter() - t0
        if finetune is not None and finetune.steps:
            t0 = time.perf_counter()
            finetune_log = finetune_scene(model, view, scene, rays, finetune, score=score, progress=progress)
            finetune_log["score_before_settle"] = finetune_log.pop("score_after", None)
            settle(view, scene, table_coding, target, score, measure=measure)  # the fine-tuned scene meets the target or says not
            finetune_log["score_after"] = table_coding.score_after
            timings["finetune"] = time.perf_counter() - t0
    compressed_path = output_dir / COMPRESSED_NAME
    file_report = save_scene(view, compressed_path, method_name=method, step=step)
    check_file_equals_memory(view, compressed_path)
    compressed = file_bytes_by_part(compressed_path, view)

    comparison = None
    if evaluate:
        t0 = time.perf_counter()
        after = ns_metrics.evaluate(pipeline, after_dir)
        timings["eval_after"] = time.perf_counter() - t0
        comparison = ns_metrics.comparison_image(before_dir, after_dir, output_dir / "comparison.png", comparison_view)
    scratch.cleanup()

    original_total = sum(original.values())
    report = {
        "name": "torch_sinr nerfstudio compression",
        "description": "field MLPs coded with SINR, hash tables quantized level by level and entropy-coded "
                       "(unless disabled), every other scene tensor dense; bytes are those of the in-memory "
                       "state (original) and of the file written (compressed)",
        "method": method,
        "load_config": str(load_config),
        "checkpoint": str(checkpoint),
        "checkpoint_file_bytes": Path(checkpoint).stat().st_size,
        "step": int(step),
        "sinr_config": view.sinr_config.to_dict(),
        "original": {"bytes": original_total, "bytes_by_part": original, "dtypes": original_dtypes,
                     "metric_tensors_excluded": len(excluded)},
        "compressed": {"path": str(compressed_path), "file_bytes": file_report.file_bytes,
                       "bytes_by_part": compressed},
        "ratio": original_total / file_report.file_bytes,
        "mlp": {
            "original_bytes": original["mlp"],
            "compressed_bytes": compressed["mlp"],
            "reduction": 1 - compressed["mlp"] / max(1, original["mlp"]),
            "share_of_original_model": original["mlp"] / max(1, original_total),
            "share_of_compressed_file": compressed["mlp"] / file_report.file_bytes,
        },
        "hash_grid_share_of_original_model": original["hash_grid"] / max(1, original_total),
        # a tcnn run: each tcnn place's fused params and what the torch port of it keeps (the
        # "original" bytes above are the port's, which leaves out tcnn's padded output rows)
        "tcnn_port": getattr(model, "sinr_tcnn_port", None),
        "tables": None if table_coding is None else {
            **table_coding.to_dict(), "finetune": finetune_log,
            "original_bytes": original["hash_grid"] + original["proposal_networks"],
            "scoring": f"PSNR on {score_rays} fixed random pixels of the training images"},
        "metrics": None,
        "layers": [asdict(layer) for layer in sinr_report.layers],
        # linears left dense (input layers under torch_sinr's fan-in rule)
        "kept_dense": [n for n, m in view.named_modules() if isinstance(m, nn.Linear)],
        "comparison_png": str(comparison) if comparison else None,
        "seconds": {**timings, "total": time.perf_counter() - started},
    }
    if evaluate:
        report["metrics"] = {
            "before": before, "after": after,
            "psnr_before": ns_metrics.main_psnr(before), "psnr_after": ns_metrics.main_psnr(after),
            "psnr_drop_db": ns_metrics.main_psnr(before) - ns_metrics.main_psnr(after),
            "ssim_before": ns_metrics.main_ssim(before), "ssim_after": ns_metrics.main_ssim(after),
        }
    report_path = output_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2))
    return CompressResult(report_path, compressed_path, report)
