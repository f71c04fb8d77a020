"""Compress during training, then keep training the scene as compressed.

``SINRHookOptions`` are the model-config fields of the ``sinr-*`` methods; ``SINRHookMixin``
adds to a nerfstudio model two training callbacks:

- after iteration ``sinr_compress_step``: code every field linear with SINR (support and
  quantization grid fixed from then on), make the codes' values trainable, and hand the new
  parameters to the existing optimizers (their schedulers and the state of untouched
  parameters carry on). The remaining iterations train the values through the quantizer
  (straight-through), together with the rest of the scene (hash grids, biases, ...);
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

from torch import nn

from torch_sinr import SINRConfig, SINRConfigError, SINRLinear
from torch_sinr.storage import requantize_dense_

from .compress import COMPRESSED_NAME, NERF_DICT_RATIO, NERF_S_RATIO, compress_fields, save_scene
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
    sinr_dict_ratio: int = NERF_DICT_RATIO
    """Dictionary atoms per weight-vector length (k2 = ratio * k1)."""
    sinr_seed: int = 0
    """Seed of the random dictionary."""
    sinr_dense_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Precision of everything stored dense (hash grids, biases, input layers, ...)."""
    sinr_brotli_quality: int = 11
    """Brotli quality of the file's streams (0..11)."""
    sinr_output: Optional[Path] = None
    """Compressed file written after training (None: <run dir>/sinr/scene.sinr.safetensors)."""

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
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.save),
        ]

    def method_name(self) -> str:
        return self.trainer_config.method_name if self.trainer_config else "<method>"

    def compress(self, step: int) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        self.original_bytes = state_bytes_by_part(scene_view(self.model))
        self.view, self.report = compress_fields(self.model, self.model.config.sinr_config(),
                                                 method_name=self.method_name())
        for layer in _sinr_layers(self.model):
            layer.quantize_aware = True  # train through the grid the file will use
        if self.attributes.optimizers is not None:
            rebind_optimizers(self.attributes.optimizers, self.attributes.pipeline)
        CONSOLE.print(f"[bold green]SINR: compressed {len(self.report.layers)} field linears after step {step}; "
                      f"training their values from here on")

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
        requantize_dense_(self.view)  # parameters trained freely since compression: back on a grid
        path = self.output_path()
        file_report = save_scene(self.view, path, method_name=self.method_name(), step=step)
        summary = {
            "method": self.method_name(), "step": step, "compressed_after_step": self.compress_step(),
            "compressed_path": str(path), "file_bytes": file_report.file_bytes,
            "original_bytes_by_part": self.original_bytes,
            "file_bytes_by_part": file_bytes_by_part(path, self.view),
            "sinr_config": self.view.sinr_config.to_dict(),
        }
        (path.parent / "hook_report.json").write_text(json.dumps(summary, indent=2))
        CONSOLE.print(f"[bold green]SINR: wrote {path} ({file_report.file_bytes} bytes)")


def _sinr_layers(model: nn.Module) -> list[SINRLinear]:
    return list({id(m): m for m in model.modules() if isinstance(m, SINRLinear)}.values())


class SINRHookMixin:
    """Mixed into a nerfstudio Model: adds the SINR training hook to its callbacks."""

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
