"""The way out: a compressed scene file back into a standard nerfstudio run directory.

``decompress_run`` builds the pipeline of the run's config.yml, loads the file into it the way
``ns-sinr-eval`` does (``load.load_into_model``: method and keys checked, nothing changed on a
mismatch), and writes what ``ns-train`` would have written:

    <output_dir>/<experiment_name>/<method>/<timestamp>/config.yml
    <output_dir>/<experiment_name>/<method>/<timestamp>/nerfstudio_models/step-<step:09d>.ckpt

so nerfstudio's own ``eval_setup`` (and ``ns-viewer``, ``ns-render``, ``ns-export``, ``ns-eval``,
which all go through it) loads it unchanged. What that loader reads, and so what the checkpoint
holds (nerfstudio/utils/eval_utils.py, ``eval_load_checkpoint``; pipelines/base_pipeline.py,
``VanillaPipeline.load_pipeline`` and ``Pipeline.load_state_dict``):

- ``ckpt["step"]``, passed to ``model.update_to_step``: the step the file records;
- ``ckpt["pipeline"]``: every ``_model.<key>`` of the model's dense state dict, loaded with
  ``strict=True`` first. SINR-coded linears are written as their decoded dense weights (the very
  tensor ``SINRLinear.forward`` multiplies with), every other scene tensor as the file decodes it,
  cast to the model's dtype; the metric modules (LPIPS' AlexNet) as the freshly built model holds
  them, which is what nerfstudio itself builds them from.

A tcnn run (a file made through the torch port of tcnn, ``tcnn_scene``) comes back in tcnn's
layout: each tcnn module's one ``params`` tensor (float32, tcnn's order; ``tcnn_scene.tcnn_state``)
where the port has its tensors, a SINR-coded layer as its decoded weight inside them, and the
config keeps the run's tcnn implementation. With tinycudann installed, nerfstudio's own loader
reads it into tcnn's modules; without it, the plugin's loader (``pipeline_io.load_tcnn_run``)
reads it into the port, which computes from it exactly what it computes from the file.

The checkpoint holds tensors and an int only, so ``torch.load``'s ``weights_only`` default reads it
with no allow-list. It holds no optimizer, scheduler or grad-scaler state (the compressed file
does not: compression discards it), so it renders, exports and evaluates but cannot resume
training (nerfstudio's ``Trainer._load_checkpoint`` needs ``ckpt["optimizers"]``).

The config is the original run's, with ``output_dir`` pointing at the new directory, any
``load_dir`` / ``load_step`` / ``load_checkpoint`` cleared, and the dataset path replaced when
``data`` is given: nerfstudio builds every pipeline from its dataset (camera count, scene box),
so the dataset must be on the machine that decompresses and later renders.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from torch_sinr import SINRFormatError, SINRInputError, SINRLinear
from torch_sinr.format import read_compressed

from .compress import META_METHOD, META_STEP
from .load import is_tcnn_scene, load_into_model
from .pipeline_io import read_trainer_config, setup_pipeline
from .tcnn_scene import port_tcnn_model, tcnn_state

@dataclass
class DecompressResult:
    config_path: Path
    checkpoint_path: Path
    method: str
    step: int
    keys: int  # tensors in the checkpoint's pipeline state


def _data_path(config) -> Path:
    """The dataset the pipeline is built from: the datamanager's ``data`` when set (ns-train sets
    it), else the dataparser's (nerfstudio/data/datamanagers/base_datamanager.py)."""
    datamanager = config.pipeline.datamanager
    return Path(datamanager.data if getattr(datamanager, "data", None) is not None else datamanager.dataparser.data)


def _set_data_path(config, data: Path) -> None:
    datamanager = config.pipeline.datamanager
    if hasattr(datamanager, "data"):
        datamanager.data = data
    datamanager.dataparser.data = data


def _check_inputs(compressed: Path, load_config: Path, output_dir: Path, overwrite: bool) -> dict:
    """Refuse bad input before anything is built or written; returns the file's metadata."""
    if not compressed.is_file():
        raise SINRInputError(f"no compressed scene at {compressed}")
    if not load_config.is_file():
        raise SINRInputError(f"no nerfstudio config at {load_config} (pass the config.yml of the run the file was "
                             "made from; it travels with the compressed file)")
    if output_dir.exists() and not output_dir.is_dir():
        raise SINRInputError(f"{output_dir} exists and is not a directory")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise SINRInputError(f"{output_dir} is not empty (pass --overwrite to write into it anyway)")
    metadata = read_compressed(compressed).metadata  # SINRFormatError on a corrupt or foreign file
    step = metadata.get(META_STEP)
    if META_METHOD not in metadata or step is None or not step.isdigit():
        raise SINRFormatError(f"{compressed} records no nerfstudio method and step (metadata {sorted(metadata)}): "
                              "it was not written by ns-sinr-compress or a sinr-* method")
    return metadata


def _checkpoint_state(pipeline) -> dict[str, torch.Tensor]:
    """``pipeline``'s state in the layout of nerfstudio's checkpoint of the run: a model ported
    from tcnn with its tcnn places as tcnn ``params`` (``tcnn_scene.tcnn_state``)."""
    state = pipeline.state_dict()
    if not getattr(pipeline.model, "sinr_tcnn_port", None):
        return state
    prefix = "_model."  # VanillaPipeline keeps its model as ``_model``
    state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    state.update({prefix + k: v for k, v in tcnn_state(pipeline.model).items()})
    return state


def _dense_state(pipeline, dense_keys: dict[str, tuple[torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """``pipeline``'s state (a compressed scene loaded into it) under the keys, shapes and dtypes
    of ``dense_keys`` (those of the same pipeline before loading): a SINR-coded linear's
    ``weight`` is its decoded dense weight."""
    modules = dict(pipeline.named_modules())
    loaded = _checkpoint_state(pipeline)
    state = {}
    for key, (shape, dtype) in dense_keys.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if isinstance(module, SINRLinear) and leaf == "weight":
            value = module.weight.detach()
        elif key in loaded:
            value = loaded[key]
        else:
            raise SINRFormatError(f"the loaded scene has no tensor for {key!r}")
        if value.shape != shape:
            raise SINRFormatError(f"{key}: decoded shape {tuple(value.shape)}, the model's {tuple(shape)}")
        state[key] = value.to("cpu", dtype).clone().contiguous()
    return state


def _write_atomically(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``: a failure leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decompress_run(compressed: Path, load_config: Path, output_dir: Path, *, data: Path | None = None,
                   overwrite: bool = False, device: str = "cpu") -> DecompressResult:
    """Write a standard nerfstudio run directory for the compressed scene (module docstring)."""
    compressed, load_config, output_dir = Path(compressed), Path(load_config), Path(output_dir)
    metadata = _check_inputs(compressed, load_config, output_dir, overwrite)
    step = int(metadata[META_STEP])
    try:
        config = read_trainer_config(load_config)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        raise SINRInputError(f"cannot read {load_config} as an ns-train config: {exc}") from None
    if data is not None:
        _set_data_path(config, Path(data))
    dataset = _data_path(config)
    if not dataset.exists():
        raise SINRInputError(f"the dataset {dataset} the config names is not here: nerfstudio builds the pipeline from "
                             "it (camera count, scene box); pass its location with --data")
    written = copy.deepcopy(config)  # building the pipeline edits the config it is given

    pipeline = setup_pipeline(config, test_mode="inference", device=device)
    if is_tcnn_scene(pipeline.model, metadata):  # the layout to write is the ported model's, in tcnn's terms
        port_tcnn_model(pipeline.model)
    dense_keys = {k: (v.shape, v.dtype) for k, v in _checkpoint_state(pipeline).items()}
    load_into_model(pipeline.model, compressed, method_name=config.method_name)
    state = _dense_state(pipeline, dense_keys)

    # where nerfstudio's eval_setup looks: config.get_checkpoint_dir() under output_dir
    written.output_dir = output_dir.resolve()
    written.load_dir = written.load_step = written.load_checkpoint = None
    run_dir = written.get_base_dir()
    checkpoint_dir = written.get_checkpoint_dir()
    checkpoint_path = checkpoint_dir / f"step-{step:09d}.ckpt"
    _write_atomically(checkpoint_path, lambda tmp: torch.save({"step": step, "pipeline": state}, tmp))
    # eval_setup loads the highest step in the folder (--overwrite): another checkpoint there would win
    for stale in checkpoint_dir.glob("step-*.ckpt"):
        if stale != checkpoint_path:
            stale.unlink()
    # as TrainerConfig.save_config (nerfstudio/configs/experiment_config.py) writes it
    config_path = run_dir / "config.yml"
    _write_atomically(config_path, lambda tmp: tmp.write_text(yaml.dump(written), "utf8"))
    return DecompressResult(config_path, checkpoint_path, config.method_name, step, len(state))
