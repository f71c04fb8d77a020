"""The nerfstudio integration end to end on a generated 32x32 scene: registration, training a
few iterations, compress -> save -> load -> eval, the training hook, and every refusal."""

from __future__ import annotations

import json
import pickle
import shutil
from importlib.metadata import entry_points

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")

import torch  # noqa: E402

from torch_sinr import SINRConfigError, SINRLinear  # noqa: E402
from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio import SceneMismatchError, load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.cli import eval_main  # noqa: E402
from torch_sinr_nerfstudio.compat import nerfstudio_checkpoint_loading  # noqa: E402
from torch_sinr_nerfstudio.load import load_into_model  # noqa: E402
from torch_sinr_nerfstudio.pipeline_io import build_pipeline  # noqa: E402

from .conftest import FAST_SINR, tiny_config, train  # noqa: E402


def test_entry_points_register_methods_and_commands():
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.plugins.registry import discover_methods

    from torch_sinr_nerfstudio.methods import SINRNerfactoModel, SINRNeRFModel

    methods, descriptions = discover_methods()
    assert {"sinr-vanilla-nerf", "sinr-nerfacto"} <= set(methods) <= set(all_methods)
    assert all(descriptions[m] for m in ("sinr-vanilla-nerf", "sinr-nerfacto"))
    assert methods["sinr-vanilla-nerf"].pipeline.model._target is SINRNeRFModel
    assert methods["sinr-nerfacto"].pipeline.model._target is SINRNerfactoModel
    assert methods["sinr-nerfacto"].pipeline.model.implementation == "torch"
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["ns-sinr-compress"] == "torch_sinr_nerfstudio.cli:compress_main"
    assert scripts["ns-sinr-eval"] == "torch_sinr_nerfstudio.cli:eval_main"


@pytest.mark.parametrize("method", ["vanilla-nerf", "nerfacto"])
def test_compress_save_load_eval(trained_runs, compressed_runs, tmp_path, method):
    result = compressed_runs[method]
    report = json.loads(result.report_path.read_text())
    assert report["method"] == method and (result.report_path.parent / "comparison.png").is_file()
    assert report["sinr_config"]["dict_ratio"] == FAST_SINR["dict_ratio"]
    # Bytes: the parts add up to the file, the coded MLPs shrank, and the report names every part.
    compressed = report["compressed"]["bytes_by_part"]
    assert sum(compressed.values()) == report["compressed"]["file_bytes"] == result.compressed_path.stat().st_size
    assert report["mlp"]["compressed_bytes"] < report["mlp"]["original_bytes"]
    assert report["layers"] and all(layer["name"].startswith(("field", "proposal")) for layer in report["layers"])
    if method == "nerfacto":
        assert report["original"]["bytes_by_part"]["hash_grid"] > 0 and compressed["hash_grid"] > 0
    else:
        assert report["original"]["bytes_by_part"]["hash_grid"] == 0
    # Metrics: PSNR/SSIM before and after, never LPIPS from placeholder weights.
    metrics = report["metrics"]
    assert all(isinstance(metrics[k], float) for k in ("psnr_before", "psnr_after", "ssim_before", "ssim_after"))
    # the summary is the final rendering's numbers (fine_* for NeRF's coarse/fine pair), before and after
    fine = "fine_" if method == "vanilla-nerf" else ""
    for when in ("before", "after"):
        assert metrics[f"psnr_{when}"] == metrics[when][f"{fine}psnr"]
        assert metrics[f"ssim_{when}"] == metrics[when][f"{fine}ssim"]
    assert metrics["psnr_drop_db"] == pytest.approx(metrics["psnr_before"] - metrics["psnr_after"], abs=1e-9)
    # "after" is the compressed model's own evaluation: close to "before", not a copy of it (measured drops
    # 0.018 dB for vanilla-nerf and 0.085 dB for nerfacto on this scene; a decoding gone wrong costs dB)
    assert metrics["after"] != metrics["before"] and abs(metrics["psnr_drop_db"]) < 0.5
    assert metrics["before"]["lpips"].startswith("not reported")
    assert not any("lpips" in k and isinstance(v, float) for k, v in metrics["after"].items())
    # No metric module in the file.
    names = [t["name"] for t in read_compressed(result.compressed_path).tensors]
    assert report["original"]["metric_tensors_excluded"] > 0 and not any(n.startswith("lpips") for n in names)

    # The way back: a fresh pipeline from the same config, evaluated from the file alone.
    _, pipeline = load_compressed_pipeline(trained_runs[method], result.compressed_path)
    assert any(isinstance(m, SINRLinear) for m in pipeline.model.modules())
    out = eval_main(["--load-config", str(trained_runs[method]), "--compressed", str(result.compressed_path),
                     "--output-path", str(tmp_path / "eval.json")])
    key = "fine_psnr" if method == "vanilla-nerf" else "psnr"
    assert out["results"][key] == pytest.approx(metrics["after"][key], abs=1e-4)
    assert json.loads((tmp_path / "eval.json").read_text())["provenance"]["nerfstudio_method"] == method


def test_key_mismatch_fails_loudly(trained_runs, compressed_runs):
    result = compressed_runs["vanilla-nerf"]
    _, pipeline = build_pipeline(trained_runs["nerfacto"])
    with pytest.raises(SceneMismatchError, match="made from a 'vanilla-nerf' run"):
        load_into_model(pipeline.model, result.compressed_path, method_name="nerfacto")
    before = {k: v.clone() for k, v in pipeline.model.state_dict().items()}
    with pytest.raises(SceneMismatchError, match="missing from the file") as info:
        load_into_model(pipeline.model, result.compressed_path)  # no method check: the keys must catch it
    assert "field_coarse" in str(info.value) and "not in the model" in str(info.value)
    after = pipeline.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_checkpoints_need_only_the_numpy_globals_we_allow(trained_runs):
    checkpoint = max((trained_runs["nerfacto"].parent / "nerfstudio_models").glob("*.ckpt"))
    # torch's weights_only loader refuses nerfacto's checkpoint (numpy scalars in its state) ...
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    # ... accepts it with exactly our allow-list, and only while it is in force.
    with nerfstudio_checkpoint_loading():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert "pipeline" in state and "optimizers" in state
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("method", ["sinr-vanilla-nerf", "sinr-nerfacto"])
def test_training_hook_compresses_then_trains_the_codes(tiny_scene, offline_torch_home, tmp_path, method):
    config = tiny_config(method, tiny_scene, tmp_path)
    config.pipeline.model.sinr_compress_step = 2
    snapshots = {}

    from torch_sinr_nerfstudio.hook import SINRTrainingHook

    original_compress = SINRTrainingHook.compress

    def compress_and_snapshot(self, step):
        original_compress(self, step)
        snapshots.update({n: (m.indices.clone(), m.values.detach().clone())
                          for n, m in self.model.named_modules() if isinstance(m, SINRLinear)})

    SINRTrainingHook.compress = compress_and_snapshot
    try:
        trainer = train(config)
    finally:
        SINRTrainingHook.compress = original_compress
    model = trainer.pipeline.model
    assert snapshots, "the hook did not compress"
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SINRLinear)}
    assert set(layers) == set(snapshots)
    assert all(torch.equal(layers[n].indices, snapshots[n][0]) for n in layers)  # support fixed
    assert any(not torch.equal(layers[n].values, snapshots[n][1]) for n in layers)  # values trained
    # The optimizers train the codes' values (and no longer hold the replaced weights).
    optimized = {id(p) for opt in trainer.optimizers.optimizers.values() for g in opt.param_groups for p in g["params"]}
    assert all(id(m.values) in optimized for m in layers.values())

    written = config.get_base_dir() / "sinr" / "scene.sinr.safetensors"
    hook_report = json.loads((written.parent / "hook_report.json").read_text())
    assert hook_report["compressed_after_step"] == 2 and hook_report["file_bytes"] == written.stat().st_size
    _, pipeline = load_compressed_pipeline(config.get_base_dir() / "config.yml", written)
    loaded = {n: m for n, m in pipeline.model.named_modules() if isinstance(m, SINRLinear)}
    assert all(torch.equal(loaded[n].values, layers[n].values.detach()) for n in layers)  # file == memory
    if method == "sinr-nerfacto":  # the hash tables were coded too, and trained with the rate term since
        from torch_sinr_nerfstudio.hash_tables import scene_tables
        from torch_sinr_nerfstudio.state import scene_view

        assert hook_report["tables"]["step"] > 0
        assert {t["kind"] for t in read_compressed(written).tensors if t["name"].endswith("hash_table")} \
            == {"stepped", "alias"}
        memory = {t.name: t.table for t in scene_tables(scene_view(model))}
        assert all(torch.equal(t.table, memory[t.name]) for t in scene_tables(scene_view(pipeline.model)))
        assert trainer.pipeline.model._sinr_hook.rate is not None

    # nerfstudio's final checkpoint holds the codes: resuming from it is refused, not half-loaded.
    resumed = tiny_config(method, tiny_scene, tmp_path / "resume")
    resumed.load_dir = config.get_checkpoint_dir()
    with nerfstudio_checkpoint_loading(), pytest.raises(SINRConfigError, match="after the SINR compression step"):
        resumed.setup(local_rank=0, world_size=1).setup()
    shutil.rmtree(tmp_path / "resume", ignore_errors=True)


def test_missing_nerfstudio_says_how_to_install(monkeypatch):
    import sys

    from torch_sinr_nerfstudio.compat import require_nerfstudio

    monkeypatch.setitem(sys.modules, "nerfstudio", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[nerfstudio\]"'):
        require_nerfstudio()
