"""benchmarks.nerf_scene_rd's bookkeeping on synthetic records (the scenes themselves take an hour
on a CPU): the reported point is chosen on the training rays alone, baselines are compared at
SINR's test PSNR by interpolation and never extrapolation, test PSNR is a mean with its standard
error over views, and a rerun reads finished pairs from the cache."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from benchmarks import nerf_scene_rd as rd

BEFORE = 30.0  # training-ray PSNR of the uncompressed scene


def _point(coding, kind, target, size, train_psnr, views):
    parts = {"hash_grid": size - 3000, "mlp": 2000, "proposal_networks": 500, "other": 400, "container": 100}
    return {"coding": coding, "kind": kind, "target_drop_db": target, "file_bytes": size, "bytes_by_part": parts,
            "view_psnr": views, "training_ray_psnr": train_psnr, "table_step": 0.1, "file_equals_memory": True}


def _header():
    return {"inputs": {"checkpoint_step": 1400, "model_bytes": 80_000_000, "score_rays": 16384, "test_stride": 8,
                       "finetune": {"steps": 120, "rays": 1024, "lr": 5e-3, "rate_lambda": 1e-4, "seed": 0}},
            "uncompressed": {"view_psnr": [28.0, 29.0, 30.0], "training_ray_psnr": BEFORE, "seconds": 1.0},
            "run": {"checkpoint": "x.ckpt", "bytes_by_part": {"mlp": 46412}},
            "sinr_mlps": {"training_ray_psnr": 29.96},
            "uniform_searched": {"widths": {"field.mlp_head.layers.0": 8},
                                 "search": {"evaluations": 20, "seconds": 5.0, "training_ray_psnr": 29.97,
                                            "drop_db": 0.04, "menu": [12, 8]}}}


def _points():
    return [
        # SINR: the 1 dB point has the best test PSNR per byte but misses 0.3 dB on the training rays
        _point("sinr", "post-training", 0.3, 4_000_000, 29.75, [28.0, 28.5, 29.0]),
        _point("sinr", "post-training", 1.0, 2_500_000, 29.0, [28.4, 28.5, 28.6]),
        _point("uniform 8-bit", "post-training", 0.1, 5_000_000, 29.9, [28.6, 28.7, 28.8]),
        _point("uniform 8-bit", "post-training", 0.3, 3_000_000, 29.71, [28.2, 28.3, 28.4]),
        _point("uniform searched", "post-training", 0.3, 3_900_000, 29.72, [28.3, 28.4, 28.5]),
    ]


def test_mean_and_standard_error_over_views():
    mean, se = rd.mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4))
    assert rd.mean_se([5.0]) == (5.0, 0.0)


def test_the_reported_point_is_chosen_on_the_training_rays_alone():
    chosen = rd.choose(_points(), BEFORE)
    # the 1 dB file is smaller, and better on the test views, but 1 dB below on the training rays
    assert chosen["sinr|post-training"]["file_bytes"] == 4_000_000
    assert chosen["uniform 8-bit|post-training"]["file_bytes"] == 3_000_000
    assert chosen["sinr|fine-tuned"] is None


def test_bytes_at_a_psnr_are_interpolated_and_never_extrapolated():
    pts = [p for p in _points() if p["coding"] == "uniform 8-bit"]  # 28.3 dB at 3.0 MB, 28.7 dB at 5.0 MB
    assert rd.bytes_at(pts, 28.3) == pytest.approx(3_000_000)
    mid = rd.bytes_at(pts, 28.5)
    assert mid == pytest.approx(math.sqrt(3_000_000 * 5_000_000))  # halfway in log bytes
    assert rd.bytes_at(pts, 28.9) is None and rd.bytes_at(pts, 28.0) is None


def test_results_compare_sinr_with_each_baseline_at_its_test_psnr(tmp_path):
    args = argparse.Namespace(out=tmp_path, codings=list(rd.CODINGS), targets=[0.1, 0.3, 1.0])
    results = rd.finish(args, _header(), _points(), 12.0)
    comparison = results["comparison"]["post-training"]
    assert comparison["sinr_bytes"] == 4_000_000 and comparison["sinr_test_psnr"] == pytest.approx(28.5)
    eight = comparison["baselines"]["uniform 8-bit"]
    assert eight["sinr_saving"] == pytest.approx(1 - 4_000_000 / math.sqrt(3_000_000 * 5_000_000))
    assert comparison["baselines"]["uniform searched"]["sinr_saving"] is None  # one point: nothing to interpolate
    # the chosen files view by view: SINR's [28.0, 28.5, 29.0] minus 8-bit's [28.2, 28.3, 28.4]
    paired = eight["paired_psnr_difference_db"]
    assert paired["mean"] == pytest.approx(0.2) and paired["se"] == pytest.approx(0.4 / math.sqrt(3))
    assert eight["chosen_bytes"] == 3_000_000
    assert results["verdict"]["post-training"]["ratio"] == pytest.approx(20.0)
    text = (tmp_path / "nerf_scene_rd.md").read_text()
    assert "sinr (chosen)" in text and "n/a (outside the baseline's range)" in text
    assert "28.500 ± 0.289" in text  # mean ± standard error over the three views
    assert "SINR's minus its test PSNR +0.200 ± 0.231 dB paired over views" in text
    assert (tmp_path / "nerf_scene_rd.png").is_file()
    assert json.loads((tmp_path / "nerf_scene_rd.json").read_text())["results"]["uncompressed"]["num_eval_images"] == 3


def test_a_rerun_reads_the_finished_pairs_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(rd, "CACHE", tmp_path / "cache")
    rd.CACHE.mkdir()
    header = _header()
    (rd.CACHE / "scene-a.json").write_text(json.dumps(header))
    for coding in rd.CODINGS:
        for target in (0.1, 0.3, 1.0):
            mine = [p for p in _points() if p["coding"] == coding and p["target_drop_db"] == target]
            if mine:
                inputs = {**header["inputs"], "coding": coding, "target_db": target}
                (rd.CACHE / f"pair-{coding}-{target}.json".replace(" ", "_")).write_text(
                    json.dumps({"inputs": inputs, "points": mine}))
    args = argparse.Namespace(out=tmp_path / "out", codings=["sinr", "uniform 8-bit"], targets=[0.3, 1.0],
                              cached_only=True, score_rays=16384, test_stride=8, finetune_steps=120)
    results = rd.run(args)
    assert sorted((p["coding"], p["target_drop_db"]) for p in results["points"]) == [
        ("sinr", 0.3), ("sinr", 1.0), ("uniform 8-bit", 0.3)]
    with pytest.raises(SystemExit, match="for these arguments"):
        rd.run(argparse.Namespace(**{**vars(args), "test_stride": 40}))
