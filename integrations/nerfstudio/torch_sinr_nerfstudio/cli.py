"""ns-sinr-compress, ns-sinr-eval and ns-sinr-decompress (nerfstudio-style commands, tyro options).

They are guarded by ``if __name__ == "__main__"`` when run as modules: nerfacto's parallel data
manager starts worker processes, which re-import the main module on spawn platforms.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from torch_sinr import SINRConfig, SINRError

from .compat import require_nerfstudio
from .compress import NERF_DICT_RATIO, NERF_S_RATIO

PART_LABELS = {"hash_grid": "hash tables", "mlp": "MLPs", "proposal_networks": "proposal networks", "other": "other"}


@dataclass
class CompressCommand:
    """Compress a trained nerfstudio run: field MLPs with SINR, hash tables level by level to a
    target; evaluate before and after."""

    load_config: Path
    """config.yml of the ns-train run (its latest checkpoint is loaded)."""
    output_dir: Path
    """Where scene.sinr.safetensors, report.json and comparison.png are written."""
    s: Optional[int] = None
    """Non-zeros per weight vector (None: s-ratio times the vector length, or target-error)."""
    s_ratio: float = NERF_S_RATIO
    """s = ceil(ratio * k1) when neither s nor target-error is given."""
    target_error: Optional[float] = None
    """Smallest s reaching this relative weight error, per layer."""
    value_bits: int = 16
    """Bits per non-zero value (2..16, or 32 for raw float32)."""
    dict_ratio: Optional[int] = NERF_DICT_RATIO
    """Dictionary atoms per weight-vector length (None: the library's default dictionary)."""
    seed: int = 0
    """Seed of the random dictionary."""
    dense_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Precision of everything stored dense (hash grids, biases, input layers, ...)."""
    input_fan_in_max: int = 16
    """Linears with at most this fan-in are coordinate input layers and stay dense."""
    brotli_quality: int = SINRConfig.brotli_quality
    """Brotli quality of the file's streams (0..11; the library's default, chosen by measurement)."""
    skip_eval: bool = False
    """Do not evaluate (no PSNR/SSIM in the report)."""
    tables: bool = True
    """Quantize and entropy-code the hash tables (else they stay dense at dense-dtype)."""
    target_psnr_drop: Optional[float] = None
    """Hash tables: the smallest file within this PSNR drop (dB, on training rays); default 0.3 when
    no target-bytes is given."""
    target_bytes: Optional[int] = None
    """Hash tables: the best scene whose whole file fits this many bytes."""
    finetune_steps: int = 0
    """Then train the coded scene this many steps (tables through their steps, a rate term)."""
    finetune_rays: int = 1024
    """Rays per fine-tuning step."""
    rate_lambda: float = 1e-4
    """Weight of the tables' estimated bits per entry in the fine-tuning loss."""
    score_rays: int = 1 << 14
    """Training pixels the PSNR target is measured on (a fixed random sample)."""

    def sinr_config(self) -> SINRConfig:
        return SINRConfig(s=self.s, s_ratio=self.s_ratio, target_error=self.target_error, value_bits=self.value_bits,
                          dict_ratio=self.dict_ratio, seed=self.seed, dense_dtype=self.dense_dtype,
                          input_fan_in_max=self.input_fan_in_max, brotli_quality=self.brotli_quality).validate()

    def main(self) -> dict:
        from .compress import compress_run

        from .scene_codec import FinetuneOptions, SceneTarget

        target = None
        if self.target_psnr_drop is not None or self.target_bytes is not None:
            target = SceneTarget(psnr_drop=self.target_psnr_drop, bytes=self.target_bytes)
        finetune = FinetuneOptions(steps=self.finetune_steps, rays=self.finetune_rays, rate_lambda=self.rate_lambda)
        result = compress_run(self.load_config, self.output_dir, self.sinr_config(), evaluate=not self.skip_eval,
                              target=target, tables=self.tables, finetune=finetune, score_rays=self.score_rays)
        report = result.report
        mlp = report["mlp"]
        print(f"{report['method']}: model {report['original']['bytes']} B -> file {report['compressed']['file_bytes']} B "
              f"({report['ratio']:.2f}x); field MLPs {mlp['original_bytes']} B -> {mlp['compressed_bytes']} B "
              f"({100 * mlp['reduction']:.1f}% smaller, {100 * mlp['share_of_original_model']:.1f}% of the model)")
        before, after = report["original"]["bytes_by_part"], report["compressed"]["bytes_by_part"]
        print("bytes by part: " + ", ".join(f"{PART_LABELS[p]} {before[p]} -> {after[p]}" for p in PART_LABELS)
              + f", container {after['container']}")
        if report["tables"]:
            t = report["tables"]
            scores = ("; not scored (the scene cannot render here)" if t["score_after"] is None else
                      f"; training-ray PSNR {t['score_before']:.3f} -> {t['score_after']:.3f} dB"
                      + (f", {t['finetune']['score_after']:.3f} dB after {t['finetune']['steps']} fine-tuning steps"
                         if t["finetune"] and t["finetune"].get("steps") else ""))
            print(f"hash tables: step {t['step']:.3g}, target {t['target']} "
                  f"{'met' if t['target_met'] else 'NOT met'}" + scores)
        if report["metrics"]:
            m = report["metrics"]
            print(f"PSNR {m['psnr_before']:.3f} -> {m['psnr_after']:.3f} dB, SSIM {m['ssim_before']:.4f} -> "
                  f"{m['ssim_after']:.4f}")
        print(f"wrote {result.compressed_path} and {result.report_path}")
        return report


@dataclass
class EvalCommand:
    """Load a SINR-compressed scene into the pipeline of its run's config and evaluate it."""

    load_config: Path
    """config.yml of the ns-train run the file was made from."""
    compressed: Path
    """The .safetensors file written by ns-sinr-compress or by a sinr-* method."""
    output_path: Path = Path("sinr_eval.json")
    """JSON file for the metrics."""
    render_output_path: Optional[Path] = None
    """Folder for the rendered eval images (none saved if unset)."""

    def main(self) -> dict:
        from .load import file_provenance, load_compressed_pipeline
        from .metrics import evaluate

        config, pipeline = load_compressed_pipeline(self.load_config, self.compressed)
        metrics = evaluate(pipeline, self.render_output_path)
        result = {"method": config.method_name, "load_config": str(self.load_config),
                  "compressed": str(self.compressed), "file_bytes": self.compressed.stat().st_size,
                  "provenance": file_provenance(self.compressed), "results": metrics}
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path.write_text(json.dumps(result, indent=2))
        print(json.dumps(metrics, indent=2))
        print(f"wrote {self.output_path}")
        return result


@dataclass
class DecompressCommand:
    """Turn a SINR-compressed scene back into a standard nerfstudio run directory (config.yml and
    nerfstudio_models/step-N.ckpt) that ns-viewer, ns-render, ns-export and ns-eval load as it is."""

    compressed: Path
    """The .safetensors file written by ns-sinr-compress or by a sinr-* method."""
    load_config: Path
    """config.yml of the ns-train run the file was made from (it travels with the file)."""
    output_dir: Path
    """Where the run is written: <output-dir>/<experiment>/<method>/<timestamp>/, as ns-train does."""
    data: Optional[Path] = None
    """The dataset, where it is on this machine (default: the path in the config)."""
    overwrite: bool = False
    """Write into a non-empty output-dir (an older checkpoint of the same run is replaced)."""

    def main(self) -> dict:
        from .decompress import decompress_run

        result = decompress_run(self.compressed, self.load_config, self.output_dir, data=self.data,
                                overwrite=self.overwrite)
        print(f"{result.method}, step {result.step}: wrote {result.checkpoint_path} ({result.keys} tensors) "
              f"and {result.config_path}")
        print(f"view it with: ns-viewer --load-config {result.config_path}")
        return {"config": str(result.config_path), "checkpoint": str(result.checkpoint_path),
                "method": result.method, "step": result.step, "keys": result.keys}


def _run(command_type, argv):
    require_nerfstudio()
    import tyro

    command = tyro.cli(command_type, args=argv)
    try:
        return command.main()
    except SINRError as exc:  # bad input: say what, without a traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def compress_main(argv: list[str] | None = None) -> dict:
    return _run(CompressCommand, argv)


def eval_main(argv: list[str] | None = None) -> dict:
    return _run(EvalCommand, argv)


def decompress_main(argv: list[str] | None = None) -> dict:
    return _run(DecompressCommand, argv)


if __name__ == "__main__":
    compress_main()
