"""Whole nerfacto scenes, hash tables included (issue 15), on a generated 32x32 scene whose
tables outweigh its MLPs: reachable rows, the table step search for a PSNR or a byte target,
fine-tuning with a rate term, file == memory, shared tables stored once, corrupt files."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("nerfstudio", reason="nerfstudio is not installed: pip install -e '.[nerfstudio]'")
# One thread for the module: the trained scene (and so what coding its MLPs costs against the
# 0.3 dB target) depends on the order of float sums, which the thread count left by earlier
# tests changed (measured: the MLPs cost 0.03 dB of a 14.81 dB scene alone and 0.34 dB of a
# 14.78 dB one in the full suite, where the target then could not be met).
pytestmark = pytest.mark.usefixtures("single_thread")

import torch  # noqa: E402

from torch_sinr import SINRConfig, SINRFormatError  # noqa: E402
from torch_sinr.format import read_compressed  # noqa: E402
from torch_sinr_nerfstudio import load_compressed_pipeline  # noqa: E402
from torch_sinr_nerfstudio.cli import compress_main  # noqa: E402
from torch_sinr_nerfstudio.compress import compress_fields, save_scene  # noqa: E402
from torch_sinr_nerfstudio.hash_tables import reachable_rows, scene_tables, zero_unreachable_  # noqa: E402
from torch_sinr_nerfstudio.pipeline_io import load_trained_pipeline  # noqa: E402
from torch_sinr_nerfstudio.rays import TrainRays, render_rgb  # noqa: E402
from torch_sinr_nerfstudio.scene_codec import FinetuneOptions, SceneTarget, code_tables, finetune_scene  # noqa: E402
from torch_sinr_nerfstudio.state import scene_view  # noqa: E402

from .conftest import tiny_config, train  # noqa: E402

STEPS = 100


@pytest.fixture(scope="module")
def table_run(tiny_scene, offline_torch_home, tmp_path_factory):
    """nerfacto (torch) trained STEPS iterations with tables of 6 levels x 2**13 rows: 87% of the
    scene's bytes, as the 99.9% of a full-size nerfacto."""
    config = tiny_config("nerfacto", tiny_scene, tmp_path_factory.mktemp("tables"), steps=STEPS)
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    model = config.pipeline.model
    model.log2_hashmap_size, model.num_levels, model.max_res = 13, 6, 128
    train(config)
    return config.get_base_dir() / "config.yml"


def _rays(pipeline, n: int = 512, seed: int = 3):
    return TrainRays(pipeline.datamanager.train_dataset).batch(n, torch.Generator().manual_seed(seed))


def test_reachable_rows_hold_every_row_a_position_reads_and_zeroing_the_rest_changes_nothing(table_run):
    _, pipeline, _, _ = load_trained_pipeline(table_run)
    model = pipeline.model
    tables = scene_tables(scene_view(model))
    field = tables[0]
    mask = reachable_rows(field)
    # nerfstudio's own hash of random positions in [0, 1]^3 lands only on reachable rows ...
    x = torch.rand(20000, 3)
    scaled = x[:, None, :] * field.encoding.scalings.view(-1, 1)
    for vertices in (torch.floor(scaled).int(), torch.ceil(scaled).int()):
        assert mask[field.encoding.hash_fn(vertices).reshape(-1)].all()
    # ... coarse levels fill a small part of their rows, fine ones all of them
    per_level = mask.view(field.levels, -1).float().mean(dim=1)
    assert per_level[0] < 0.7 and per_level[-1] == 1.0
    bundle, _ = _rays(pipeline)
    before = render_rgb(model, bundle)
    zero_unreachable_(tables)
    assert torch.equal(render_rgb(model, bundle), before)


@pytest.fixture(scope="module")
def coded(table_run, tmp_path_factory):
    """The table run coded for 0.3 dB, fine-tuned 10 steps with the rate term, saved."""
    _, pipeline, _, step = load_trained_pipeline(table_run)
    model = pipeline.model
    rays = TrainRays(pipeline.datamanager.train_dataset)
    score_model = rays.scorer(2048)
    score_before = score_model(model)
    # the plugin's coding of MLPs (FAST_SINR's sparser codes cost this scene about 3 dB)
    view, _ = compress_fields(model, SINRConfig(s_ratio=0.45, dict_ratio=8), method_name="nerfacto",
                              measure_file=False)
    tables = scene_tables(view)
    coding = code_tables(view, tables, SceneTarget(psnr_drop=0.3), lambda _: score_model(model), score_before)
    log = finetune_scene(model, view, tables, rays, FinetuneOptions(steps=10, rays=256), progress=False)
    path = tmp_path_factory.mktemp("coded") / "scene.sinr.safetensors"
    save_scene(view, path, method_name="nerfacto", step=step)
    return pipeline, path, coding, log


def test_search_meets_the_psnr_target_and_the_file_is_the_memory(table_run, coded):
    pipeline, path, coding, log = coded
    assert coding.target_met and coding.score_before - coding.score_after <= 0.3
    assert coding.probes and coding.step > 0 and log["steps"] == 10 and len(log["history"]) >= 1
    _, loaded = load_compressed_pipeline(table_run, path)
    bundle, _ = _rays(pipeline, 256)
    # bit-exact: the same tensors, rendered by the same (nerfstudio's) encoding forward
    assert torch.equal(render_rgb(loaded.model, bundle), render_rgb(pipeline.model, bundle))
    memory = {t.name: t.table for t in scene_tables(scene_view(pipeline.model))}
    for t in scene_tables(scene_view(loaded.model)):
        assert torch.equal(t.table, memory[t.name])


def test_each_table_is_coded_level_by_level_and_a_shared_table_is_stored_once(coded):
    _, path, _, _ = coded
    entries = {t["name"]: t for t in read_compressed(path).tensors}
    stepped = [n for n, t in entries.items() if t["kind"] == "stepped"]
    assert stepped == ["field.mlp_base.model.0.hash_table", "proposal_networks.0.encoding.hash_table",
                       "proposal_networks.1.encoding.hash_table"]
    assert entries["field.mlp_base.model.0.hash_table"]["groups"] == 6  # one step per level
    for k in (0, 1):  # nerfacto registers each proposal encoding under two names
        shared = entries[f"proposal_networks.{k}.mlp_base.0.hash_table"]
        assert shared["kind"] == "alias" and shared["alias_of"] == f"proposal_networks.{k}.encoding.hash_table"
        assert shared["bytes"] < 8


def test_a_corrupted_table_stream_is_refused(table_run, coded, tmp_path):
    _, path, _, _ = coded
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the coded segments
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(SINRFormatError):
        load_compressed_pipeline(table_run, bad)


def test_command_meets_the_targets_on_a_tiny_scene(table_run, tmp_path):
    """ns-sinr-compress: post-training at least 10x at most 0.3 dB below the uncompressed scene on
    the training rays the target is defined on (this scene's two test views, after 100 steps,
    move by up to about twice that either way), and with a byte target the file fits it."""
    report = compress_main(["--load-config", str(table_run), "--output-dir", str(tmp_path / "psnr"),
                            "--score-rays", "2048", "--dict-ratio", "8"])
    tables = report["tables"]
    assert tables["target_met"] and tables["score_before"] - tables["score_after"] <= 0.3 and report["ratio"] >= 10
    assert abs(report["metrics"]["psnr_drop_db"]) < 1.0
    parts = report["compressed"]["bytes_by_part"]
    assert set(parts) == {"mlp", "hash_grid", "proposal_networks", "other", "container"}
    assert sum(parts.values()) == report["compressed"]["file_bytes"]
    budget = int(report["compressed"]["file_bytes"] * 0.85)  # the MLPs are about half of it
    small = compress_main(["--load-config", str(table_run), "--output-dir", str(tmp_path / "bytes"), "--skip-eval",
                           "--target-bytes", str(budget), "--finetune-steps", "5", "--finetune-rays", "128",
                           "--score-rays", "1024", "--dict-ratio", "8"])
    assert small["tables"]["target_met"] and small["compressed"]["file_bytes"] <= budget
    assert (tmp_path / "bytes" / "scene.sinr.safetensors").stat().st_size <= budget
    assert json.loads((tmp_path / "bytes" / "report.json").read_text())["tables"]["finetune"]["steps"] == 5


def test_the_uniform_baseline_codes_what_sinr_would_on_grids_and_the_file_is_the_memory(table_run, tmp_path):
    """store_fields_uniform: every linear compress_fields codes keeps its weight on a per-tensor
    grid of the width asked for, the rest stored as compress_fields stores it; the file (no SINR
    layer in it) loads back into the same scene, bit for bit."""
    from torch_sinr import SINRConfigError, compress_model
    from torch_sinr.core.quantization import UniformQuantizer
    from torch_sinr.nn.storage import get_storage
    from torch_sinr_nerfstudio.compress import check_file_equals_memory, fields_config, store_fields_uniform

    _, pipeline, _, step = load_trained_pipeline(table_run)
    model = pipeline.model
    targets = compress_model(scene_view(model), fields_config(scene_view(model)), dry_run=True).matched
    assert len(targets) >= 3
    with pytest.raises(SINRConfigError, match="exactly the field linears"):
        store_fields_uniform(model, {targets[0]: 8})
    widths = {name: 8 if i % 2 else 6 for i, name in enumerate(targets)}
    view, _ = store_fields_uniform(model, widths, method_name="nerfacto")
    for name, bits in widths.items():
        module = view.get_submodule(name)
        assert type(module) is torch.nn.Linear  # not SINR-coded
        storage = get_storage(module, "weight")
        assert isinstance(storage, UniformQuantizer) and storage.bits == bits
        assert len(torch.unique(module.weight)) <= 2**bits
    path = tmp_path / "uniform.safetensors"
    save_scene(view, path, method_name="nerfacto", step=step, require_codes=False)
    check_file_equals_memory(view, path)
    _, loaded = load_compressed_pipeline(table_run, path)
    bundle, _ = _rays(pipeline, 256)
    assert torch.equal(render_rgb(loaded.model, bundle), render_rgb(model, bundle))


def test_fine_tuning_trains_grid_stored_tensors_through_their_fixed_grids(table_run):
    """finetune_scene: a uniform baseline's weights move, through their grids (straight-through),
    and end on the very grids they started on, not refitted ones."""
    from torch_sinr.nn.storage import get_storage
    from torch_sinr_nerfstudio.compress import store_fields_uniform

    _, pipeline, _, _ = load_trained_pipeline(table_run)
    model = pipeline.model
    view, _ = store_fields_uniform(model, 6, method_name="nerfacto")
    grids = {name: (m, get_storage(m, "weight"), m.weight.detach().clone()) for name, m in view.named_modules()
             if type(m) is torch.nn.Linear and get_storage(m, "weight") is not None}
    rays = TrainRays(pipeline.datamanager.train_dataset)
    score = rays.scorer(1024)
    tables = scene_tables(view)
    code_tables(view, tables, SceneTarget(psnr_drop=1.0), lambda _: score(model), score(model))
    finetune_scene(model, view, tables, rays, FinetuneOptions(steps=8, rays=256), progress=False)
    moved = 0
    for name, (module, grid, before) in grids.items():
        after = get_storage(module, "weight")
        assert after == grid, name
        assert torch.equal(grid.round_trip(module.weight).reshape(module.weight.shape), module.weight)
        moved += not torch.equal(module.weight, before)
        assert module.weight.grad is None  # each step's gradient handed to the latent, none kept to pile up
    assert moved >= len(grids) // 2


def test_view_psnrs_are_each_test_view_rendered_whole(table_run):
    from torch_sinr_nerfstudio.rays import view_psnrs

    _, pipeline, _, _ = load_trained_pipeline(table_run)
    dataset = pipeline.datamanager.eval_dataset
    ours = view_psnrs(pipeline.model, dataset)
    assert len(ours) == len(dataset)
    # nerfstudio's own eval: the mean over the same views of the same per-image PSNR
    theirs = pipeline.get_average_eval_image_metrics()["psnr"]
    assert sum(ours) / len(ours) == pytest.approx(theirs, abs=0.02)
