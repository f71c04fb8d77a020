"""Building a nerfstudio pipeline from a run's config.yml, with or without its checkpoint.

The config.yml that ``ns-train`` writes is a YAML document of Python objects, read with
nerfstudio's own (full) YAML loader: only open configs of runs you made yourself. An instant-ngp
pipeline built here renders off CUDA too (``render_support.enable_cpu_rendering``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import yaml

from .compat import nerfstudio_checkpoint_loading
from .render_support import enable_cpu_rendering

TestMode = Literal["test", "val", "inference"]


def load_trained_pipeline(load_config: Path, test_mode: TestMode = "test"):
    """nerfstudio's ``eval_setup`` (config + latest checkpoint), with nerfstudio's numpy scalars
    allowed by torch's ``weights_only`` loader for exactly the duration of the load; a tcnn run is
    loaded into the torch port of tcnn (``load_tcnn_run``)."""
    from nerfstudio.utils.eval_utils import eval_setup

    if not Path(load_config).is_file():
        raise FileNotFoundError(f"no nerfstudio config at {load_config} (pass the config.yml of an ns-train run)")
    if is_tcnn_run(Path(load_config)):  # nerfstudio would skip its tcnn tensors: convert them to the port
        return load_tcnn_run(Path(load_config), test_mode=test_mode)
    with nerfstudio_checkpoint_loading():
        loaded = eval_setup(Path(load_config), test_mode=test_mode)
    enable_cpu_rendering(loaded[1].model)
    return loaded


def is_tcnn_run(load_config: Path) -> bool:
    """The run's model holds tiny-cuda-nn modules: its config says ``implementation: tcnn``, or,
    for a model config without that option (instant-ngp, whose field takes tcnn wherever
    tinycudann is installed), its latest checkpoint holds tcnn ``params`` tensors."""
    from nerfstudio.configs.experiment_config import ExperimentConfig

    from .tcnn_scene import checkpoint_holds_tcnn_params, latest_checkpoint

    config = yaml.load(Path(load_config).read_text(), Loader=yaml.Loader)
    model = getattr(getattr(config, "pipeline", None), "model", None)
    if hasattr(model, "implementation"):
        return model.implementation == "tcnn"
    if not isinstance(config, ExperimentConfig):
        return False
    try:
        checkpoint, _ = latest_checkpoint(config.get_checkpoint_dir())
    except FileNotFoundError:
        return False  # nerfstudio's own loader says what is missing
    return checkpoint_holds_tcnn_params(checkpoint)


def read_trainer_config(load_config: Path):
    """The ``TrainerConfig`` of an ns-train run's config.yml (nerfstudio's full YAML loader)."""
    from nerfstudio.engine.trainer import TrainerConfig

    load_config = Path(load_config)
    if not load_config.is_file():
        raise FileNotFoundError(f"no nerfstudio config at {load_config} (pass the config.yml of an ns-train run)")
    config = yaml.load(load_config.read_text(), Loader=yaml.Loader)
    if not isinstance(config, TrainerConfig):
        raise ValueError(f"{load_config} is not a nerfstudio TrainerConfig (got {type(config).__name__})")
    return config


def setup_pipeline(config, test_mode: TestMode = "test", device: str | None = None):
    """The pipeline of a ``TrainerConfig`` with freshly initialised weights, as ``eval_setup``
    builds it before it reads the checkpoint (nerfstudio/utils/eval_utils.py, ``eval_setup``)."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.pipelines.base_pipeline import Pipeline

    if config.method_name in all_methods:  # as eval_setup: the datamanager class of the method
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    if not isinstance(pipeline, Pipeline):
        raise ValueError(f"the config of {config.method_name} did not build a nerfstudio Pipeline")
    pipeline.eval()
    enable_cpu_rendering(pipeline.model)
    return pipeline


def build_pipeline(load_config: Path, test_mode: TestMode = "test", device: str | None = None):
    """The pipeline of ``load_config`` with freshly initialised weights (no checkpoint is read).

    Mirrors the first half of nerfstudio's ``eval_setup``; the weights then come from a
    compressed file instead of a checkpoint. Returns ``(config, pipeline)``.
    """
    config = read_trainer_config(load_config)
    return config, setup_pipeline(config, test_mode=test_mode, device=device)


def load_tcnn_run(load_config: Path, test_mode: str = "test", device: str | None = None):
    """nerfstudio's ``eval_setup`` for a tcnn run: the pipeline of its config with the tcnn places
    ported, loaded from its latest checkpoint. Returns ``(config, pipeline, checkpoint, step)``."""
    # lives here, not in tcnn_scene: it builds a pipeline, and tcnn_scene must not import this module
    from .tcnn_scene import latest_checkpoint, load_tcnn_state_, model_state_of, port_tcnn_model

    config, pipeline = build_pipeline(Path(load_config), test_mode=test_mode, device=device)
    port_tcnn_model(pipeline.model)
    checkpoint, step = latest_checkpoint(config.get_checkpoint_dir())
    with nerfstudio_checkpoint_loading():
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    pipeline.model.update_to_step(int(loaded.get("step", step)))
    load_tcnn_state_(pipeline.model, model_state_of(loaded["pipeline"]))
    pipeline.eval()
    return config, pipeline, checkpoint, step
