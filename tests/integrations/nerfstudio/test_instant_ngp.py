"""nerfstudio's instant-ngp (torch layers) through ns-sinr-compress, ns-sinr-eval and
ns-sinr-decompress on a CPU.

instant-ngp marches rays with nerfacc's CUDA-only kernels, so on a CPU no training step and no
render can run (``render_support``): the run here is nerfstudio's initialised instant-ngp saved by
nerfstudio's own ``Trainer.save_checkpoint``, it is coded to a byte target (which needs no
render), everything that renders is refused with the fix, and the decompressed run's field is
compared with the file's, output for output, where rendering would need CUDA.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402

from torch_sinr import SINRConfig, SINRConfigError  # noqa: E402
from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio import compress_run, load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.cli import compress_main, eval_main  # noqa: E402
from torch_sinr_nerfstudio.compat import nerfstudio_checkpoint_loading  # noqa: E402
from torch_sinr_nerfstudio.decompress import decompress_run  # noqa: E402

from .conftest import FAST_SINR, tiny_config  # noqa: E402

TARGET_BYTES = 40_000


@pytest.fixture(scope="module")
def ngp_run(tiny_scene, offline_torch_home, tmp_path_factory):
    """config.yml of a tiny instant-ngp run, written by nerfstudio's Trainer (no training step)."""
    from nerfstudio.scripts.train import _set_random_seed

    config = tiny_config("instant-ngp", tiny_scene, tmp_path_factory.mktemp("ngp_runs"))
    _set_random_seed(config.machine.seed)
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.save_checkpoint(0)
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="module")
def ngp_compressed(ngp_run, tmp_path_factory):
    """ns-sinr-compress on the run, to a byte target and without evaluation (the CLI path)."""
    out = tmp_path_factory.mktemp("ngp_compressed")
    report = compress_main(["--load-config", str(ngp_run), "--output-dir", str(out), "--skip-eval",
                            "--target-bytes", str(TARGET_BYTES), "--dict-ratio", str(FAST_SINR["dict_ratio"]),
                            "--s-ratio", str(FAST_SINR["s_ratio"])])
    return out / "scene.sinr.safetensors", report


def field_outputs(pipeline, count: int = 512) -> dict:
    """The field at fixed random points and directions inside the scene box."""
    from nerfstudio.cameras.rays import Frustums, RaySamples

    generator = torch.Generator().manual_seed(0)
    positions = (torch.rand(count, 3, generator=generator) * 2 - 1) * 1.4  # Blender's box is [-1.5, 1.5]^3
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    ones = torch.ones(count, 1)
    samples = RaySamples(frustums=Frustums(origins=positions, directions=directions, starts=0 * ones, ends=0 * ones,
                                           pixel_area=ones),
                         camera_indices=torch.zeros(count, 1, dtype=torch.long))
    with torch.no_grad():
        return {name.value: tensor for name, tensor in pipeline.model.field(samples).items()}


def test_compress_codes_the_field_and_its_table_to_a_byte_target(ngp_compressed):
    path, report = ngp_compressed
    assert report["method"] == "instant-ngp" and report["metrics"] is None
    assert report["compressed"]["file_bytes"] == path.stat().st_size <= TARGET_BYTES
    tables = report["tables"]
    assert tables["target_met"] and tables["step"] > 0 and tables["score_after"] is None  # no render on a CPU
    coded = {layer["name"] for layer in report["layers"]}
    assert {"field.mlp_head.layers.0", "field.mlp_head.layers.1"} <= coded
    kinds = {t["name"]: t["kind"] for t in read_compressed(path).tensors}
    assert kinds["field.mlp_base.model.0.hash_table"] == "stepped"
    # the occupancy grid is the sampler's too: stored once, its bool cells bit for bit
    assert kinds["sampler.occupancy_grid.binaries"] == "alias" and "occupancy_grid.binaries" in kinds


def test_what_renders_is_refused_with_the_fix(ngp_run, ngp_compressed, tmp_path, capsys):
    with pytest.raises(SINRConfigError, match=r"PSNR target renders the scene.*CUDA.*--target-bytes"):
        compress_run(ngp_run, tmp_path / "default", SINRConfig(**FAST_SINR), evaluate=False)
    with pytest.raises(SINRConfigError, match=r"evaluation renders the scene.*CUDA-only.*--skip-eval"):
        compress_run(ngp_run, tmp_path / "evaluated", SINRConfig(**FAST_SINR), tables=False)
    assert not list(tmp_path.rglob("*.safetensors"))
    with pytest.raises(SystemExit) as info:
        eval_main(["--load-config", str(ngp_run), "--compressed", str(ngp_compressed[0]),
                   "--output-path", str(tmp_path / "eval.json")])
    assert info.value.code == 2
    assert "evaluation renders the scene" in capsys.readouterr().err and not (tmp_path / "eval.json").exists()


def test_decompressed_run_loads_in_nerfstudio_with_the_files_field(ngp_run, ngp_compressed, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    path, report = ngp_compressed
    result = decompress_run(path, ngp_run, tmp_path / "out")
    _, pipeline, checkpoint, step = eval_setup(result.config_path, test_mode="test")
    assert checkpoint == result.checkpoint_path and step == 0
    with nerfstudio_checkpoint_loading():  # nerfstudio's own checkpoint holds numpy scalars
        original = torch.load(ngp_run.parent / "nerfstudio_models" / "step-000000000.ckpt",
                              weights_only=True)["pipeline"]
    state = torch.load(checkpoint, weights_only=True)["pipeline"]
    assert state.keys() == original.keys()
    coded = [f"_model.{layer['name']}.weight" for layer in report["layers"]]
    assert not any(torch.equal(state[k], original[k]) for k in coded)  # the coded scene, not the original
    assert torch.equal(state["_model.occupancy_grid.binaries"], original["_model.occupancy_grid.binaries"])

    _, from_file = load_compressed_pipeline(ngp_run, path)
    decompressed, plugin = field_outputs(pipeline), field_outputs(from_file)
    assert set(decompressed) == {"density", "rgb"}
    assert all(torch.equal(decompressed[k], plugin[k]) for k in decompressed)
    assert json.loads(json.dumps(report["tables"]["target"])) == {"psnr_drop": None, "bytes": TARGET_BYTES}
