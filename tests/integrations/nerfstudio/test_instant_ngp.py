"""nerfstudio's instant-ngp (torch layers) trained on a CPU, then through ns-sinr-compress,
ns-sinr-eval and ns-sinr-decompress.

nerfacc marches instant-ngp's rays with CUDA-only kernels; ``cpu_marching.nerfacc_on_cpu`` has
them in torch (training here), and the plugin renders an instant-ngp it loads through them
(``render_support.enable_cpu_rendering``), so everything that renders works on a CPU: evaluation,
the tables' score, ns-sinr-eval, and nerfstudio's own eval_setup of the decompressed run.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402

from torch_sinr import SINRConfigError  # noqa: E402
from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio.cli import compress_main, eval_main  # noqa: E402
from torch_sinr_nerfstudio.compat import nerfstudio_checkpoint_loading  # noqa: E402
from torch_sinr_nerfstudio.cpu_marching import nerfacc_on_cpu  # noqa: E402
from torch_sinr_nerfstudio.decompress import decompress_run  # noqa: E402
from torch_sinr_nerfstudio.fast_hash import fast_hash_encoding  # noqa: E402
from torch_sinr_nerfstudio.metrics import evaluate, main_psnr  # noqa: E402
from torch_sinr_nerfstudio.render_support import check_can_render, enable_cpu_rendering  # noqa: E402

from .conftest import FAST_SINR, tiny_config, train  # noqa: E402

STEPS = 8
TARGET_BYTES = 40_000


@pytest.fixture(scope="module", autouse=True)
def fused_hash_gather():
    """torch_sinr's fused gather for the field's hash encoding (same function, faster on a CPU)."""
    with fast_hash_encoding():
        yield


@pytest.fixture(scope="module")
def ngp_run(tiny_scene, offline_torch_home, tmp_path_factory):
    """config.yml of a tiny instant-ngp trained STEPS steps by nerfstudio's Trainer on the CPU, and
    the loss of every step."""
    from nerfstudio.engine.trainer import Trainer

    config = tiny_config("instant-ngp", tiny_scene, tmp_path_factory.mktemp("ngp_runs"), steps=STEPS)
    losses = []
    train_iteration = Trainer.train_iteration

    def recording_iteration(trainer, step):
        loss, loss_dict, metrics = train_iteration(trainer, step)
        losses.append(float(loss.detach()))
        return loss, loss_dict, metrics

    with nerfacc_on_cpu(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "train_iteration", recording_iteration)
        train(config)
    return config.get_base_dir() / "config.yml", losses


@pytest.fixture(scope="module")
def ngp_compressed(ngp_run, tmp_path_factory):
    """ns-sinr-compress on the run, evaluated before and after, to a byte target (the CLI path)."""
    out = tmp_path_factory.mktemp("ngp_compressed")
    report = compress_main(["--load-config", str(ngp_run[0]), "--output-dir", str(out), "--target-bytes",
                            str(TARGET_BYTES), "--score-rays", "1024", "--dict-ratio", str(FAST_SINR["dict_ratio"]),
                            "--s-ratio", str(FAST_SINR["s_ratio"])])
    return out / "scene.sinr.safetensors", report


def test_training_on_a_cpu_lowers_the_loss(ngp_run):
    _, losses = ngp_run
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0]


def test_rendered_outputs_are_finite_and_sensible(ngp_run):
    from nerfstudio.utils.eval_utils import eval_setup

    with nerfstudio_checkpoint_loading():
        _, pipeline, _, _ = eval_setup(ngp_run[0], test_mode="test")
    assert enable_cpu_rendering(pipeline.model) and enable_cpu_rendering(pipeline.model)  # once is enough
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    rgb, accumulation, depth = outputs["rgb"], outputs["accumulation"], outputs["depth"]
    assert rgb.shape == (32, 32, 3) and all(torch.isfinite(t).all() for t in (rgb, accumulation, depth))
    assert rgb.min() >= 0 and rgb.max() <= 1 and accumulation.min() >= 0 and accumulation.max() <= 1 + 1e-5
    centre, corner = accumulation[12:20, 12:20].mean(), accumulation[:4, :4].mean()  # the sphere, the background
    assert centre > corner
    seen = accumulation[..., 0] > 0.5
    assert seen.any() and (depth[seen] > 2.0).all() and (depth[seen] < 6.0).all()  # between near and far


def test_compress_evaluates_and_scores_on_a_cpu(ngp_run, ngp_compressed):
    path, report = ngp_compressed
    assert report["method"] == "instant-ngp"
    metrics = report["metrics"]
    assert metrics["before"]["num_eval_images"] == 2 and abs(metrics["psnr_before"] - metrics["psnr_after"]) < 3
    assert report["compressed"]["file_bytes"] == path.stat().st_size <= TARGET_BYTES
    tables = report["tables"]
    assert tables["target_met"] and tables["step"] > 0 and tables["score_after"] is not None
    coded = {layer["name"] for layer in report["layers"]}
    assert {"field.mlp_head.layers.0", "field.mlp_head.layers.1"} <= coded
    kinds = {t["name"]: t["kind"] for t in read_compressed(path).tensors}
    assert kinds["field.mlp_base.model.0.hash_table"] == "stepped"
    # the occupancy grid is the sampler's too: stored once, its bool cells bit for bit
    assert kinds["sampler.occupancy_grid.binaries"] == "alias" and "occupancy_grid.binaries" in kinds


def test_ns_sinr_eval_and_the_decompressed_run_score_the_files_psnr(ngp_run, ngp_compressed, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    path, report = ngp_compressed
    file_psnr = report["metrics"]["psnr_after"]
    result = eval_main(["--load-config", str(ngp_run[0]), "--compressed", str(path),
                        "--output-path", str(tmp_path / "eval.json")])
    assert main_psnr(result["results"]) == file_psnr
    assert json.loads((tmp_path / "eval.json").read_text())["results"]["psnr"] == file_psnr

    decompressed = decompress_run(path, ngp_run[0], tmp_path / "out")
    _, pipeline, checkpoint, step = eval_setup(decompressed.config_path, test_mode="test")
    assert checkpoint == decompressed.checkpoint_path and step == report["step"]
    with nerfstudio_checkpoint_loading():  # nerfstudio's own checkpoint holds numpy scalars
        original = torch.load(next((ngp_run[0].parent / "nerfstudio_models").glob("step-*.ckpt")),
                              weights_only=True)["pipeline"]
    state = torch.load(checkpoint, weights_only=True)["pipeline"]
    assert state.keys() == original.keys()
    coded = [f"_model.{layer['name']}.weight" for layer in report["layers"]]
    assert not any(torch.equal(state[k], original[k]) for k in coded)  # the coded scene, not the original
    assert torch.equal(state["_model.occupancy_grid.binaries"], original["_model.occupancy_grid.binaries"])
    with nerfacc_on_cpu():  # nerfstudio's pipeline as eval_setup returns it, only the marching swapped
        assert main_psnr(evaluate(pipeline)) == file_psnr


def test_an_occupancy_grid_model_without_a_cpu_path_is_refused():
    from nerfacc import OccGridEstimator

    class GridModel(torch.nn.Module):  # not nerfstudio's NGPModel: its rendering is unknown here
        def __init__(self):
            super().__init__()
            self.grid = OccGridEstimator(roi_aabb=[-1, -1, -1, 1, 1, 1], resolution=4)
            self.linear = torch.nn.Linear(2, 2)

    with pytest.raises(SINRConfigError, match=r"evaluation renders the scene.*NGPModel only.*CUDA"):
        check_can_render(GridModel(), "evaluation")
    check_can_render(torch.nn.Linear(2, 2), "evaluation")  # no occupancy grid: renders anywhere
