"""Fixtures for the nerfstudio integration: an offline TORCH_HOME, a tiny generated scene, a few
training iterations of each method (trained once per session), and a synthetic tcnn nerfacto run."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from .scene import make_blender_scene

STEPS = 6
# Smaller dictionaries and sparser codes than the defaults: the same code paths, ~6x faster
# coding of vanilla-nerf's two 8x256 MLPs.
FAST_SINR = {"dict_ratio": 4, "s_ratio": 0.2}


@pytest.fixture(scope="session")
def offline_torch_home(tmp_path_factory):
    """LPIPS (inside every nerfstudio model) downloads AlexNet weights at construction; tests have
    no network, so a placeholder file stands in (LPIPS values are then meaningless and are not
    reported)."""
    import torch

    from torch_sinr_nerfstudio.metrics import write_placeholder_alexnet

    home = tmp_path_factory.mktemp("torch_home")
    write_placeholder_alexnet(home)
    previous_env, previous_dir = os.environ.get("TORCH_HOME"), torch.hub.get_dir()
    os.environ["TORCH_HOME"] = str(home)
    torch.hub.set_dir(str(home / "hub"))
    yield home
    torch.hub.set_dir(previous_dir)
    if previous_env is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = previous_env


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    return make_blender_scene(tmp_path_factory.mktemp("scene") / "sphere", size=32)


def tiny_config(method: str, scene: Path, output_dir: Path, steps: int = STEPS):
    """nerfstudio's config of ``method``, shrunk to seconds on a CPU."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    config = copy.deepcopy(all_methods[method])
    config.output_dir = output_dir
    config.experiment_name = "tiny"
    config.timestamp = "run"
    config.max_num_iterations = steps
    config.mixed_precision = False
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    config.steps_per_save = 10**6  # only the final checkpoint
    dm = config.pipeline.datamanager
    dm.data = scene
    dm.dataparser = BlenderDataParserConfig(data=scene)
    dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = 64
    model = config.pipeline.model
    model.eval_num_rays_per_chunk = 1024
    if "nerfacto" in method:
        model.implementation = "torch"
        model.num_nerf_samples_per_ray = 8
        model.num_proposal_samples_per_ray = (16, 8)
        model.log2_hashmap_size = 10
        model.num_levels = 4
        model.max_res = 64
        model.hidden_dim = model.hidden_dim_color = 64
        model.proposal_net_args_list = [
            {"hidden_dim": 16, "log2_hashmap_size": 8, "num_levels": 4, "max_res": 32, "use_linear": False}] * 2
        model.background_color = "white"
        model.disable_scene_contraction = True
        model.near_plane, model.far_plane = 2.0, 6.0
        model.camera_optimizer.mode = "off"
    elif method == "instant-ngp":
        # nerfstudio's instant-ngp has no implementation option: its NerfactoField asks for tcnn and
        # falls back to torch layers where tiny-cuda-nn is not installed (as on this CPU machine)
        model.log2_hashmap_size = 10
        model.max_res = 64
        model.grid_resolution = 16
        model.grid_levels = 1
        model.background_color = "white"
        model.disable_scene_contraction = True
        model.near_plane, model.far_plane = 2.0, 6.0
        model.render_step_size = 0.1  # at most 40 samples a ray between near and far
        # instant-ngp's pipeline sizes each batch to a sample count (DynamicBatchPipeline)
        config.pipeline.target_num_samples, config.pipeline.max_num_samples_per_ray = 1 << 12, 1 << 6
    else:
        model.num_coarse_samples = 8
        model.num_importance_samples = 8
    if method.startswith("sinr-"):
        model.sinr_dict_ratio, model.sinr_s_ratio = FAST_SINR["dict_ratio"], FAST_SINR["s_ratio"]
    return config


def train(config):
    """Train in this process (as ns-train's train_loop does); returns the trainer."""
    import torch.multiprocessing as mp
    from nerfstudio.scripts.train import _set_random_seed

    # nerfacto's parallel data manager sets the process-wide start method to 'spawn' if none is
    # set: put it back, so the rest of the test session is not affected.
    start_method = mp.get_start_method(allow_none=True)
    try:
        _set_random_seed(config.machine.seed)
        config.save_config()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()
    finally:
        mp.set_start_method(start_method, force=True)
    return trainer


@pytest.fixture(scope="session")
def trained_runs(tiny_scene, offline_torch_home, tmp_path_factory) -> dict[str, Path]:
    """config.yml of a few iterations of vanilla-nerf and nerfacto (torch) on the tiny scene."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("vanilla-nerf", "nerfacto"):
        config = tiny_config(method, tiny_scene, out)
        train(config)
        runs[method] = config.get_base_dir() / "config.yml"
    return runs


@pytest.fixture(scope="session")
def compressed_runs(trained_runs, tmp_path_factory):
    """compress_run (evaluating before and after) on each trained run, once per session."""
    from torch_sinr import SINRConfig
    from torch_sinr_nerfstudio import compress_run

    out = tmp_path_factory.mktemp("compressed")
    return {method: compress_run(config, out / method, SINRConfig(**FAST_SINR))
            for method, config in trained_runs.items()}


TCNN_STEP = 10


def _fill_like_a_trained_scene(model, generator):
    """Random tables and weights at scales that make a visible scene (tcnn's own init is near zero):
    the density outputs (row 0 of the field's base network and of each proposal MLP) read the
    non-negative hidden units with positive weights, so the scene is dense enough to be seen
    (nerfacto scales densities by average_init_density = 0.01) and its density follows the grids."""
    import torch

    from torch_sinr_nerfstudio.tcnn_port import TcnnHashGrid, TcnnNetwork
    from torch_sinr_nerfstudio.tcnn_scene import tcnn_places

    with torch.no_grad():
        for path, port in tcnn_places(model):
            for module in port.modules():
                if isinstance(module, TcnnHashGrid):
                    module.hash_table.normal_(0.0, 0.5, generator=generator)
                elif isinstance(module, TcnnNetwork):
                    for layer in module.layers:
                        layer.weight.normal_(0.0, 1.5 / layer.in_features**0.5, generator=generator)
                    if path == "field.mlp_base.model" or path.startswith("proposal_networks."):
                        module.layers[-1].weight[0].uniform_(0.2, 0.5, generator=generator)


def write_synthetic_tcnn_run(config, seed: int = 0):
    """Save ``config`` and a checkpoint of its model as nerfstudio writes it with tcnn: tcnn's fused
    ``params`` tensors (written from a ported model filled at random, with junk in tcnn's padded
    output rows, which tcnn never reads), the empty params of the unused Frequency encoding, and
    the rest as the pipeline builds it. Returns ``(config.yml path, model state in tcnn's layout)``."""
    import torch

    from torch_sinr_nerfstudio.pipeline_io import build_pipeline
    from torch_sinr_nerfstudio.tcnn_port import TcnnNetwork
    from torch_sinr_nerfstudio.tcnn_scene import port_tcnn_model, tcnn_places, tcnn_state

    config.save_config()
    path = config.get_base_dir() / "config.yml"
    _, pipeline = build_pipeline(path, device="cpu")
    model = pipeline.model
    port_tcnn_model(model)
    _fill_like_a_trained_scene(model, torch.Generator().manual_seed(seed))
    state = tcnn_state(model)
    for place, port in tcnn_places(model):
        network = port if isinstance(port, TcnnNetwork) else getattr(port, "network", None)
        if network is not None and network.dropped_params:  # never read by tcnn: must not matter
            end = network.n_params
            state[f"{place}.params"][end - network.dropped_params:end] = 7.0
    pipeline_state = {k: v for k, v in pipeline.state_dict().items() if not k.startswith("_model.")}
    pipeline_state.update({f"_model.{k}": v for k, v in state.items()})
    checkpoints = config.get_checkpoint_dir()
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({"step": TCNN_STEP, "pipeline": pipeline_state, "optimizers": {}, "scalers": {}},
               checkpoints / f"step-{TCNN_STEP:09d}.ckpt")
    return path, state


@pytest.fixture(scope="session")
def tcnn_run(tiny_scene, offline_torch_home, tmp_path_factory):
    """A nerfacto run configured for tcnn whose checkpoint holds tcnn's fused ``params`` tensors
    (``write_synthetic_tcnn_run``): ``(config.yml path, model state, model config)``."""
    config = tiny_config("nerfacto", tiny_scene, tmp_path_factory.mktemp("tcnn"))
    config.pipeline.model.implementation = "tcnn"
    path, state = write_synthetic_tcnn_run(config)
    return path, state, config.pipeline.model
