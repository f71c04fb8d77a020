"""Compress during training, then keep training the scene as compressed.

``SINRHookOptions`` are the model-config fields of the ``sinr-*`` methods; ``SINRHookMixin``
adds to a nerfstudio model two training callbacks:

- after iteration ``sinr_compress_step``: code every field linear with SINR (support and
  quantization grid fixed from then on), make the codes' values trainable, and hand the new
  parameters to the existing optimizers (their schedulers and the state of untouched
  parameters carry on). A scene with torch hash tables (nerfacto) gets them coded too: a step
  for all levels chosen on training rays (``scene_codec.code_tables``), and from then on a rate
  term in the loss (their bits under a learned prior, ``sinr_rate_lambda``). The remaining
  iterations train values and tables through their grids (straight-through), together with
  the rest of the scene (biases, embeddings, ...);
- after training: snap the values to their grid and write the compressed scene. nerfstudio runs
  ``AFTER_TRAIN`` callbacks after it saved its final checkpoint, so the hook writes its own file.

nerfstudio checkpoints saved after the compression step hold SINR codes; resuming training from
one is refused with a clear message (the model is rebuilt with plain linears), and
``ns-sinr-eval`` reads the compressed file, not the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from torch_sinr import SINRConfig, SINRConfigError, SINRLinear
from torch_sinr.nn.storage import requantize_dense_

from .compress import COMPRESSED_NAME, NERF_DICT_RATIO, NERF_S_RATIO, compress_fields, save_scene
from .fast_hash import use_fast_hash_encoding
from .hash_tables import scene_tables
from .rays import scene_scorer
from .scene_codec import SceneTarget, TableRate, code_tables
from .state import file_bytes_by_part, scene_view, state_bytes_by_part


@dataclass
class SINRHookOptions:
    """SINR options of the sinr-* methods (flat, so they read well on the ns-train command line)."""

    sinr_compress_step: Optional[int] = None
    """Iteration after which the field MLPs are compressed (None: half-way through the run)."""
    sinr_s: Optional[int] = None
    """Non-zeros per weight vector (None: sinr-s-ratio times the vector length)."""
    sinr_s_ratio: float = NERF_S_RATIO
    """s = ceil(ratio * k1) when sinr-s is not given."""
    sinr_value_bits: int = 16
    """Bits per non-zero value."""
    sinr_dict_ratio: Optional[int] = NERF_DICT_RATIO
    """Dictionary atoms per weight-vector length (None: the library's default dictionary)."""
    sinr_seed: int = 0
    """Seed of the random dictionary."""
    sinr_dense_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Precision of everything stored dense (hash grids, biases, input layers, ...)."""
    sinr_brotli_quality: int = SINRConfig.brotli_quality
    """Brotli quality of the file's streams (0..11; the library's default, chosen by measurement)."""
    sinr_output: Optional[Path] = None
    """Compressed file written after training (None: <run dir>/sinr/scene.sinr.safetensors)."""
    sinr_tables: bool = True
    """Code the torch hash tables too (nerfacto): quantized level by level at the compression step,
    then trained through their steps with a rate term."""
    sinr_table_psnr_drop: float = 0.3
    """The table step chosen at the compression step: the largest within this PSNR drop (dB, on
    training rays); the remaining iterations win it back."""
    sinr_rate_lambda: float = 1e-4
    """Weight of the tables' estimated bits per entry in the loss after the compression step."""
    sinr_score_rays: int = 4096
    """Training pixels the table step is chosen on."""

    def sinr_config(self) -> SINRConfig:
        return SINRConfig(s=self.sinr_s, s_ratio=self.sinr_s_ratio, value_bits=self.sinr_value_bits,
                          dict_ratio=self.sinr_dict_ratio, seed=self.sinr_seed, dense_dtype=self.sinr_dense_dtype,
                          brotli_quality=self.sinr_brotli_quality, trainable=True).validate()


def rebind_optimizers(optimizers, pipeline) -> None:
    """Point each nerfstudio optimizer at its param group's current parameters.

    Parameters that survived compression keep their optimizer state; the replaced linears'
    weights leave the optimizer, the SINR values (and the new bias tensors) join it fresh.
    """
    groups = pipeline.get_param_groups()
    for name, optimizer in optimizers.optimizers.items():
        if name not in groups:
            continue
        if len(optimizer.param_groups) != 1:
            raise SINRConfigError(f"optimizer '{name}' has {len(optimizer.param_groups)} param groups; "
                                  f"the SINR hook supports nerfstudio's one group per optimizer")
        params = list(groups[name])
        keep = {id(p) for p in params}
        for p in list(optimizer.state):
            if id(p) not in keep:
                del optimizer.state[p]
        optimizer.param_groups[0]["params"] = params
        optimizers.parameters[name] = params


class SINRTrainingHook:
    """The two callbacks of one training run (see the module docstring)."""

    def __init__(self, model: nn.Module, attributes) -> None:
        self.model = model
        self.attributes = attributes
        self.view: nn.Module | None = None
        self.report = None
        self.original_bytes = None
        self.tables: list = []
        self.table_coding = None
        self.rate: TableRate | None = None

    @property
    def trainer_config(self):
        trainer = self.attributes.trainer
        return trainer.config if trainer is not None else None

    def compress_step(self) -> int:
        """The iteration after which to compress: ``sinr_compress_step``, or half-way through
        this run's iterations (a resumed run counts from its checkpoint's step)."""
        trainer = self.attributes.trainer
        step = self.model.config.sinr_compress_step
        if trainer is None:
            if step is None:
                raise SINRConfigError("sinr-compress-step is not set and the trainer is unknown")
            return step
        first = getattr(trainer, "_start_step", 0)
        last = first + trainer.config.max_num_iterations - 1
        if step is None:
            step = first + trainer.config.max_num_iterations // 2
        if not first <= step < last:
            raise SINRConfigError(f"sinr-compress-step={step} must be in [{first}, {last}): this run trains "
                                  f"iterations {first}..{last}, and some must follow the compression")
        return step

    def callbacks(self) -> list:
        from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

        return [
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.compress,
                             iters=(self.compress_step(),)),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.step_rate,
                             update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.save),
        ]

    def method_name(self) -> str:
        return self.trainer_config.method_name if self.trainer_config else "<method>"

    def compress(self, step: int) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        options = self.model.config
        self.original_bytes = state_bytes_by_part(scene_view(self.model))
        tables = scene_tables(scene_view(self.model)) if options.sinr_tables else []
        score = score_before = None
        if tables:
            if self.attributes.pipeline is None:
                raise SINRConfigError("coding hash tables in training needs the pipeline (its training images)")
            _, score, score_before = scene_scorer(self.model, self.attributes.pipeline.datamanager.train_dataset,
                                                  options.sinr_score_rays)
        self.view, self.report = compress_fields(self.model, options.sinr_config(), method_name=self.method_name(),
                                                 measure_file=not tables)
        for layer in _sinr_layers(self.model):
            layer.quantize_aware = True  # train through the grid the file will use
        message = f"compressed {len(self.report.layers)} field linears"
        if tables:
            self.tables = tables
            self.table_coding = code_tables(self.view, tables, SceneTarget(psnr_drop=options.sinr_table_psnr_drop),
                                            score, score_before)
            use_fast_hash_encoding(self.model)  # the forward that reads the tables through their steps
            for t in tables:
                t.encoding.sinr_quantize_aware = True
            self.rate = TableRate(tables).to(self.model.device)
            self.rate_optimizer = torch.optim.Adam(self.rate.parameters(), lr=1e-2)
            self.rate_generator = torch.Generator().manual_seed(step)
            message += (f" and {len(tables)} hash tables (step {self.table_coding.step:.3g}; training-ray PSNR "
                        f"{score_before:.2f} -> {self.table_coding.score_after:.2f} dB)")
        if self.attributes.optimizers is not None:
            rebind_optimizers(self.attributes.optimizers, self.attributes.pipeline)
        CONSOLE.print(f"[bold green]SINR: {message} after step {step}; training them as coded from here on")

    def rate_loss(self) -> torch.Tensor | None:
        """The tables' rate term (after the compression step, while training), else None."""
        if self.rate is None or not self.model.training:
            return None
        return self.model.config.sinr_rate_lambda * self.rate.bits_per_entry(4096, self.rate_generator)

    def step_rate(self, step: int) -> None:
        """Fit the rate's prior to the tables (its gradient came with the scene's backward)."""
        if self.rate is not None:
            self.rate_optimizer.step()
            self.rate_optimizer.zero_grad(set_to_none=True)

    def output_path(self) -> Path:
        if self.model.config.sinr_output is not None:
            return Path(self.model.config.sinr_output)
        return self.attributes.trainer.base_dir / "sinr" / COMPRESSED_NAME

    def save(self, step: int) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        if self.view is None:
            CONSOLE.print(f"[bold yellow]SINR: training stopped at step {step}, before the compression step "
                          f"{self.compress_step()}; no compressed file written")
            return
        for layer in _sinr_layers(self.model):
            layer.quantize_aware = False
            layer.snap_to_grid_()
        for t in self.tables:
            t.encoding.sinr_quantize_aware = False
        requantize_dense_(self.view)  # parameters trained freely since compression (tables too): back on a grid
        path = self.output_path()
        file_report = save_scene(self.view, path, method_name=self.method_name(), step=step)
        summary = {
            "method": self.method_name(), "step": step, "compressed_after_step": self.compress_step(),
            "compressed_path": str(path), "file_bytes": file_report.file_bytes,
            "original_bytes_by_part": self.original_bytes,
            "file_bytes_by_part": file_bytes_by_part(path, self.view),
            "sinr_config": self.view.sinr_config.to_dict(),
            "tables": self.table_coding.to_dict() if self.table_coding is not None else None,
        }
        (path.parent / "hook_report.json").write_text(json.dumps(summary, indent=2))
        CONSOLE.print(f"[bold green]SINR: wrote {path} ({file_report.file_bytes} bytes)")


def _sinr_layers(model: nn.Module) -> list[SINRLinear]:
    return list({id(m): m for m in model.modules() if isinstance(m, SINRLinear)}.values())


class SINRHookMixin:
    """Mixed into a nerfstudio Model: adds the SINR training hook to its callbacks, and its rate
    term to the loss."""

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        hook = getattr(self, "_sinr_hook", None)
        rate = hook.rate_loss() if hook is not None else None
        if rate is not None:
            loss_dict["sinr_rate"] = rate
        return loss_dict

    def get_training_callbacks(self, training_callback_attributes):
        callbacks = super().get_training_callbacks(training_callback_attributes)
        self._sinr_hook = SINRTrainingHook(self, training_callback_attributes)
        return callbacks + self._sinr_hook.callbacks()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        coded = [k for k in state_dict if k.endswith((".values", ".indices"))]
        if coded and not _sinr_layers(self):
            # Not a RuntimeError: nerfstudio would catch that and retry with strict=False.
            raise SINRConfigError(
                f"this checkpoint was saved after the SINR compression step ({len(coded)} SINR tensors, e.g. "
                f"{coded[0]!r}); resuming or evaluating it with nerfstudio is not supported. Resume from a "
                f"checkpoint before the compression step, or evaluate the compressed file with ns-sinr-eval.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
