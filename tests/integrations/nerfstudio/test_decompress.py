"""ns-sinr-decompress: a compressed scene back into a run directory that nerfstudio's own
``eval_setup`` loads, rendering exactly what the plugin's loader renders from the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402
import yaml  # noqa: E402

from torch_sinr import SINRFormatError, SINRInputError  # noqa: E402
from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio import SceneMismatchError, load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.cli import decompress_main  # noqa: E402
from torch_sinr_nerfstudio.compat import nerfstudio_checkpoint_loading  # noqa: E402
from torch_sinr_nerfstudio.decompress import decompress_run  # noqa: E402


def eval_setup(config_path):
    from nerfstudio.utils.eval_utils import eval_setup as nerfstudio_eval_setup

    # no numpy allow-list here: the decompressed checkpoint must load under torch's plain weights_only
    return nerfstudio_eval_setup(config_path, test_mode="test")


def render_test_view(pipeline) -> dict[str, torch.Tensor]:
    camera = pipeline.datamanager.eval_dataset.cameras[0:1].to(pipeline.device)
    return pipeline.model.get_outputs_for_camera(camera)


def rgb_key(method: str) -> str:
    return "rgb_fine" if "vanilla-nerf" in method else "rgb"


@pytest.mark.parametrize("method", ["vanilla-nerf", "nerfacto"])
def test_decompressed_run_loads_in_nerfstudio_and_renders_the_file(trained_runs, compressed_runs, tmp_path, method):
    compressed = compressed_runs[method].compressed_path
    result = decompress_run(compressed, trained_runs[method], tmp_path / "out")
    step = int(read_compressed(compressed).metadata["nerfstudio_step"])
    # the layout ns-train writes: <output>/<experiment>/<method>/<timestamp>/{config.yml,nerfstudio_models/}
    assert result.config_path == tmp_path / "out" / "tiny" / method / "run" / "config.yml"
    assert result.checkpoint_path == result.config_path.parent / "nerfstudio_models" / f"step-{step:09d}.ckpt"

    # Exactly the keys, shapes and dtypes of nerfstudio's own checkpoint of the run, and nothing else.
    original = max((trained_runs[method].parent / "nerfstudio_models").glob("*.ckpt"))
    with nerfstudio_checkpoint_loading():
        original_state = torch.load(original, map_location="cpu", weights_only=True)["pipeline"]
    state = torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)
    assert set(state) == {"step", "pipeline"} and state["step"] == step
    assert state["pipeline"].keys() == original_state.keys() and result.keys == len(original_state)
    assert all(state["pipeline"][k].shape == v.shape and state["pipeline"][k].dtype == v.dtype
               for k, v in original_state.items())

    # nerfstudio's eval_setup loads it unchanged; its render equals the plugin's render of the file,
    # bit for bit (the dense weight is the tensor SINRLinear.forward multiplies with)
    _, ns_pipeline, checkpoint, loaded_step = eval_setup(result.config_path)
    assert checkpoint == result.checkpoint_path and loaded_step == step
    assert not any(type(m).__name__ == "SINRLinear" for m in ns_pipeline.modules())
    _, sinr_pipeline = load_compressed_pipeline(trained_runs[method], compressed)
    decompressed, from_file = render_test_view(ns_pipeline), render_test_view(sinr_pipeline)
    key = rgb_key(method)
    assert decompressed[key].shape == (32, 32, 3)
    assert torch.equal(decompressed[key], from_file[key])
    assert torch.equal(decompressed["accumulation" if method == "nerfacto" else "accumulation_fine"],
                       from_file["accumulation" if method == "nerfacto" else "accumulation_fine"])
    # ... and holds the compressed scene, not the original checkpoint copied through: every coded
    # linear's weight is its decoded SINR approximation
    coded = [f"_model.{layer['name']}.weight" for layer in compressed_runs[method].report["layers"]]
    assert coded and not any(torch.equal(state["pipeline"][k], original_state[k]) for k in coded)


def test_command_data_override_and_refusals(trained_runs, compressed_runs, tiny_scene, tmp_path, capsys):
    compressed = compressed_runs["nerfacto"].compressed_path
    config = trained_runs["nerfacto"]
    out = tmp_path / "out"

    def run(*extra: str, file=compressed, load_config=config):
        return decompress_main(["--compressed", str(file), "--load-config", str(load_config),
                                "--output-dir", str(out), *extra])

    def refused(match: str, **kwargs) -> None:
        with pytest.raises(SystemExit) as info:
            run(**kwargs)
        assert info.value.code == 2
        assert match in capsys.readouterr().err

    # bad input is refused before anything is written
    refused("no compressed scene at", file=tmp_path / "missing.safetensors")
    refused("no nerfstudio config at", load_config=tmp_path / "missing.yml")
    corrupt = tmp_path / "corrupt.sinr.safetensors"
    data = bytearray(compressed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(SINRFormatError):
        decompress_run(corrupt, config, out)
    refused("error:", file=corrupt)
    with pytest.raises(SceneMismatchError, match="made from a 'vanilla-nerf' run"):  # a file of another run
        decompress_run(compressed_runs["vanilla-nerf"].compressed_path, config, out)
    with pytest.raises(SINRInputError, match="pass its location with --data"):
        decompress_run(compressed, config, out, data=tmp_path / "nowhere")
    assert not out.exists()

    # the dataset moved: --data points the written config at its new place
    moved = shutil.copytree(tiny_scene, tmp_path / "moved_scene")
    summary = run("--data", str(moved))
    written = yaml.load(open(summary["config"]).read(), Loader=yaml.Loader)
    assert written.pipeline.datamanager.data == moved and written.pipeline.datamanager.dataparser.data == moved
    assert written.load_dir is None and written.output_dir == out.resolve()
    assert summary["checkpoint"].endswith(f"step-{summary['step']:09d}.ckpt")
    capsys.readouterr()

    refused("is not empty (pass --overwrite")
    # --overwrite replaces the run; a checkpoint of a later step would otherwise be the one loaded
    stale = out / "tiny" / "nerfacto" / "run" / "nerfstudio_models" / "step-999999999.ckpt"
    shutil.copy(summary["checkpoint"], stale)
    again = run("--overwrite")
    assert not stale.exists() and again["checkpoint"] == summary["checkpoint"]
    _, pipeline, checkpoint, _ = eval_setup(out / "tiny" / "nerfacto" / "run" / "config.yml")
    assert str(checkpoint) == summary["checkpoint"]


def test_setup_declares_the_command():
    # the installed entry points are those of the checkout pip installed; setup.py is this one's
    import torch_sinr_nerfstudio.cli as cli

    setup_py = (Path(__file__).parents[3] / "setup.py").read_text()
    assert '"ns-sinr-decompress=torch_sinr_nerfstudio.cli:decompress_main"' in setup_py
    assert callable(cli.decompress_main)
