"""tcnn nerfacto scenes through the torch port: a synthetic tcnn-shaped checkpoint (the exact
``params`` tensors nerfstudio creates with tcnn, for a reduced config) is loaded, checked against
tcnn's function written from its rules, compressed by ns-sinr-compress, decoded and rendered by
ns-sinr-eval on a CPU without tiny-cuda-nn."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402

from torch_sinr import SINRConfig, SINRConfigError, SINRFormatError, SINRLinear  # noqa: E402
from torch_sinr_nerfstudio.cli import compress_main, eval_main  # noqa: E402
from torch_sinr_nerfstudio.compress import compress_fields, save_scene  # noqa: E402
from torch_sinr_nerfstudio.load import load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.metrics import evaluate  # noqa: E402
from torch_sinr_nerfstudio.pipeline_io import build_pipeline, load_trained_pipeline  # noqa: E402
from torch_sinr_nerfstudio.rays import TrainRays, render_rgb  # noqa: E402
from torch_sinr_nerfstudio.tcnn_port import TcnnNetworkConfig  # noqa: E402
from torch_sinr_nerfstudio.tcnn_scene import nerfacto_tcnn_param_counts, port_tcnn_model, tcnn_state  # noqa: E402

from .conftest import FAST_SINR, TCNN_STEP as STEP  # noqa: E402
from .test_tcnn_port import reference_grid, reference_mlp  # noqa: E402

def test_checkpoint_shapes_are_nerfstudios_tcnn_shapes(tcnn_run):
    _, state, model_config = tcnn_run
    counts = nerfacto_tcnn_param_counts(model_config)
    assert {k: v.numel() for k, v in state.items() if k.endswith(".params")} == counts
    # the full nerfacto: HASHGRIDS.md section 4's hash-grid counts plus the MLPs in tcnn's padded layout
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    full = nerfacto_tcnn_param_counts(NerfactoModelConfig())
    assert full["field.mlp_base.model.params"] == 12_196_240 + 64 * 32 + 16 * 64
    assert full["field.mlp_head.tcnn_encoding.params"] == 64 * 64 + 64 * 64 + 16 * 64  # 63 inputs padded to 64
    assert full["proposal_networks.0.encoding.tcnn_encoding.params"] == 766_528
    assert full["proposal_networks.1.encoding.tcnn_encoding.params"] == 860_160
    assert full["proposal_networks.0.mlp_base.1.tcnn_encoding.params"] == 16 * 16 + 16 * 16


def test_loaded_scene_computes_tcnns_function_from_the_checkpoint(tcnn_run):
    path, state, model_config = tcnn_run
    _, pipeline, checkpoint, step = load_trained_pipeline(path)
    assert step == STEP and checkpoint.name == f"step-{STEP:09d}.ckpt"
    field = pipeline.model.field
    assert not any(type(m).__name__ == "HashEncoding" and m.hash_table.numel() for m in pipeline.model.modules())
    points = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    fused = state["field.mlp_base.model.params"]
    grid = field.mlp_base.model.encoding.config
    network = field.mlp_base.model.network.config
    with torch.no_grad():
        got = field.mlp_base(points)
        for point, row in zip(points.tolist(), got):
            encoded = reference_grid(fused[network.n_params:].tolist(), 3, grid.n_levels, 2, grid.log2_hashmap_size,
                                     grid.base_resolution, grid.per_level_scale, point)
            want = reference_mlp(fused[:network.n_params], network, torch.tensor([encoded], dtype=torch.float32))
            torch.testing.assert_close(row[None], want, rtol=1e-4, atol=1e-4)
        # the color head: tcnn.Network pads its 63 inputs with a one (a bias in effect)
        head = TcnnNetworkConfig(field.mlp_head.in_dim, 3, 64, 2, "ReLU", "Sigmoid")
        h = torch.rand(5, head.n_input_dims, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(field.mlp_head(h), reference_mlp(state["field.mlp_head.tcnn_encoding.params"],
                                                                    head, h), rtol=1e-4, atol=1e-5)
        # a proposal network: its grid alone (a tcnn.Encoding), then its MLP
        proposal = pipeline.model.proposal_networks[1]
        g = proposal.encoding.tcnn_encoding.config
        params = state["proposal_networks.1.encoding.tcnn_encoding.params"].tolist()
        want = [reference_grid(params, 3, g.n_levels, 2, g.log2_hashmap_size, g.base_resolution, g.per_level_scale,
                               p) for p in points.tolist()]
        torch.testing.assert_close(proposal.encoding(points), torch.tensor(want), rtol=1e-4, atol=1e-5)
    # the proposal grid is one module under two names, as in nerfstudio
    assert proposal.mlp_base[0] is proposal.encoding
    # back to tcnn's layout: the checkpoint's tensors, but zeros in the padded output rows
    back = tcnn_state(pipeline.model)
    for key in ("proposal_networks.1.encoding.tcnn_encoding.params", "field.mlp_base.model.params"):
        kept = state[key] != 7.0
        assert torch.equal(back[key][kept], state[key][kept]) and not back[key][~kept].any()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def test_compress_decode_and_render_on_a_cpu(tcnn_run, tmp_path):
    path, _, _ = tcnn_run
    options = ["--load-config", str(path), "--s-ratio", str(FAST_SINR["s_ratio"]), "--dict-ratio",
               str(FAST_SINR["dict_ratio"]), "--score-rays", "512", "--skip-eval"]
    # the whole scene: MLPs by SINR, the tcnn grids quantized level by level to the default target
    report = compress_main(options + ["--output-dir", str(tmp_path / "scene")])
    assert report["tcnn_port"]["field.mlp_base.model"]["kind"] == "TcnnNetworkWithInputEncoding"
    assert report["layers"] and all(layer["name"].startswith(("field", "proposal")) for layer in report["layers"])
    assert report["compressed"]["file_bytes"] < report["original"]["bytes"] and report["tables"]["target_met"]

    # the way back: a fresh tcnn-configured pipeline, ported, loaded from the file alone
    _, original, _, _ = load_trained_pipeline(path)
    _, scene = load_compressed_pipeline(path, tmp_path / "scene" / "scene.sinr.safetensors", device="cpu")
    bundle, batch = TrainRays(original.datamanager.train_dataset).batch(256, torch.Generator().manual_seed(4))
    before = render_rgb(original.model, bundle)
    image = original.model.renderer_rgb.blend_background(batch["image"])
    # the table target (0.3 dB on training pixels against the images) holds on these other pixels
    # (measured: 10.38 -> 9.99 dB on this random scene, whose images it does not resemble)
    assert _psnr(render_rgb(scene.model, bundle), image) > _psnr(before, image) - 0.5

    # ns-sinr-eval on the test views: as good as the tcnn scene itself, within the table target
    result = eval_main(["--load-config", str(path), "--compressed",
                        str(tmp_path / "scene" / "scene.sinr.safetensors"),
                        "--output-path", str(tmp_path / "eval.json")])
    assert abs(result["results"]["psnr"] - evaluate(original)["psnr"]) < 1.0
    assert json.loads((tmp_path / "eval.json").read_text())["provenance"]["nerfstudio_method"] == "nerfacto"

    # the MLPs coded in memory (grids dense), saved, decoded into a fresh pipeline: the same pixels
    view, _ = compress_fields(original.model, SINRConfig(**FAST_SINR), method_name="nerfacto")
    in_memory = render_rgb(original.model, bundle)
    save_scene(view, tmp_path / "mlps.safetensors", method_name="nerfacto", step=STEP)
    _, decoded = load_compressed_pipeline(path, tmp_path / "mlps.safetensors", device="cpu")
    assert any(isinstance(m, SINRLinear) for m in decoded.model.field.mlp_head.modules())
    torch.testing.assert_close(render_rgb(decoded.model, bundle), in_memory, rtol=0, atol=1e-6)
    assert _psnr(in_memory, before) < 100  # the codes did change the scene (lossy), the file keeps it exactly


def test_a_torch_checkpoint_under_a_tcnn_config_is_refused(trained_runs, tmp_path, capsys):
    run = trained_runs["nerfacto"]
    tcnn_config = tmp_path / "config.yml"
    # the same run (same checkpoint directory), its config switched to tcnn
    tcnn_config.write_text(run.read_text().replace("implementation: torch", "implementation: tcnn"))
    with pytest.raises(SINRFormatError, match="implementation='torch'"):
        load_trained_pipeline(tcnn_config)
    with pytest.raises(SystemExit) as info:
        compress_main(["--load-config", str(tcnn_config), "--output-dir", str(tmp_path / "out"), "--skip-eval"])
    assert info.value.code == 2 and "no tcnn params 'field.mlp_base.model.params'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "scene.sinr.safetensors").exists()


def test_unsupported_tcnn_parts_are_named(tcnn_run):
    path, _, _ = tcnn_run
    _, pipeline = build_pipeline(path, device="cpu")
    model = pipeline.model
    # a tcnn model nobody ported (the training hook's case) is refused with both ways out
    with pytest.raises(SINRConfigError, match="not converted to the torch port") as info:
        compress_fields(model)
    assert "ns-sinr-compress" in str(info.value) and "--pipeline.model.implementation torch" in str(info.value)
    model.field.use_pred_normals = True
    model.proposal_networks[0].mlp_base[1].activation = torch.nn.SiLU()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SINRConfigError, match="does not cover") as info:
        port_tcnn_model(model)
    assert "field: predicted normals" in str(info.value) and "proposal_networks.0.mlp_base.1: TCNN activation" \
        in str(info.value)
    after = model.state_dict()  # nothing was ported
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not getattr(model, "sinr_tcnn_port", None)
