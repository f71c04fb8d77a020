"""ns-sinr-decompress on a tcnn run: the compressed file of a tcnn nerfacto (made through the torch
port of tcnn) comes back as the run directory nerfstudio writes with tcnn, its checkpoint in tcnn's
``params`` layout and its config still tcnn, and the plugin's loader of tcnn runs renders it
exactly as ns-sinr-eval's loader renders the file."""

from __future__ import annotations

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402
import yaml  # noqa: E402

from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio.cli import compress_main  # noqa: E402
from torch_sinr_nerfstudio.decompress import decompress_run  # noqa: E402
from torch_sinr_nerfstudio.load import load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.pipeline_io import load_trained_pipeline  # noqa: E402
from torch_sinr_nerfstudio.tcnn_scene import tcnn_state  # noqa: E402

from .conftest import FAST_SINR, TCNN_STEP  # noqa: E402
from .test_decompress import render_test_view  # noqa: E402

TARGET_BYTES = 16_000


def test_decompressed_tcnn_run_has_tcnns_layout_and_renders_the_file(tcnn_run, tmp_path):
    path, _, _ = tcnn_run
    # the whole scene (MLPs by SINR, the tcnn grids stepped) to a byte target: no render needed to code it
    report = compress_main(["--load-config", str(path), "--output-dir", str(tmp_path / "scene"), "--skip-eval",
                            "--target-bytes", str(TARGET_BYTES), "--score-rays", "256", "--s-ratio",
                            str(FAST_SINR["s_ratio"]), "--dict-ratio", str(FAST_SINR["dict_ratio"])])
    compressed = tmp_path / "scene" / "scene.sinr.safetensors"
    assert report["tables"]["target_met"] and report["compressed"]["file_bytes"] <= TARGET_BYTES and report["layers"]
    kinds = {t["name"]: t["kind"] for t in read_compressed(compressed).tensors}
    assert kinds["field.mlp_base.model.encoding.hash_table"] == "stepped"
    assert read_compressed(compressed).metadata["nerfstudio_tcnn_port"] == "true"

    result = decompress_run(compressed, path, tmp_path / "decoded")
    assert result.checkpoint_path.name == f"step-{TCNN_STEP:09d}.ckpt"
    # the checkpoint nerfstudio writes with tcnn: the same keys, shapes and dtypes, nothing else
    original = torch.load(max((path.parent / "nerfstudio_models").glob("*.ckpt")), weights_only=True)["pipeline"]
    written = torch.load(result.checkpoint_path, weights_only=True)
    assert set(written) == {"step", "pipeline"} and written["step"] == TCNN_STEP
    state = written["pipeline"]
    assert state.keys() == original.keys()
    assert all(state[k].shape == v.shape and state[k].dtype == v.dtype for k, v in original.items())
    assert state["_model.field.position_encoding.tcnn_encoding.params"].numel() == 0
    # the compressed scene, not the original copied through (coded MLPs and stepped grids live in params)
    params = [k for k in original if k.endswith(".params") and original[k].numel()]
    assert params and not any(torch.equal(state[k], original[k]) for k in params)
    # the run's config, still tcnn
    config = yaml.load(result.config_path.read_text(), Loader=yaml.Loader)
    assert config.pipeline.model.implementation == "tcnn" and config.method_name == "nerfacto"

    # read back as a freshly trained tcnn run (the plugin's loader of tcnn checkpoints, into the port)
    _, decoded, checkpoint, step = load_trained_pipeline(result.config_path)
    assert checkpoint == result.checkpoint_path and step == TCNN_STEP
    assert not any(type(m).__name__ == "SINRLinear" for m in decoded.model.modules())
    back = {f"_model.{k}": v for k, v in tcnn_state(decoded.model).items()}
    assert all(torch.equal(back[k], state[k]) for k in params)  # params -> port -> params, exactly
    # ... and renders exactly what ns-sinr-eval's loader renders from the file: the port reads a
    # decoded SINR weight at tcnn's parameter precision, as it reads the same values from params
    _, from_file = load_compressed_pipeline(path, compressed)
    assert any(type(m).__name__ == "SINRLinear" for m in from_file.model.modules())
    a, b = render_test_view(decoded), render_test_view(from_file)
    assert a["rgb"].shape == (32, 32, 3) and a["accumulation"].max() > 0.1  # a visible scene
    assert all(torch.equal(a[k], b[k]) for k in ("rgb", "accumulation", "depth"))
