"""End to end: python -m benchmarks.occupancy on a tiny synthetic mesh at 16^3, into a tmp dir."""

import json

import pytest
import torch

trimesh = pytest.importorskip("trimesh")  # the [occupancy] extra
pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

from benchmarks import occupancy as bench


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_benchmark_writes_json_markdown_and_pngs(tmp_path):
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.icosphere(subdivisions=3, radius=2.0).export(meshes / "ball.ply")
    out = tmp_path / "out"
    code = bench.main(["--meshes", "ball.ply", "--mesh-dir", str(meshes), "--resolution", "16",
                       "--activations", "siren", "--layers", "1", "--width", "52", "--steps", "300",
                       "--batch-size", "512", "--finetune-steps", "5", "--finetune-points", "256",
                       "--max-probes", "1", "--threads", "1", "--no-progress",
                       "--cache", str(tmp_path / "cache"), "--out", str(out), "--ply"])
    assert code == 0
    results = json.loads((out / "occupancy.json").read_text())["results"]
    entry = results["meshes"]["ball"]
    by_method = {(p["method"], str(p["setting"])): p for p in entry["points"]}
    assert entry["fit"]["iou"] > 0.9
    # float32 holds the fitted weights exactly: the same IoU as the fit
    assert by_method[("float32", "float32")]["iou"] == pytest.approx(entry["fit"]["iou"])
    assert (by_method[("float32", "float32")]["bytes"] > by_method[("float16", "float16")]["bytes"]
            > by_method[("uniform", "8")]["bytes"] > by_method[("uniform", "4")]["bytes"])
    methods = {p["method"] for p in entry["points"]}
    assert methods == {"float32", "float16", "uniform", "uniform+ft", "sinr-paper", "sinr+ft", "compress"}
    assert all(0 <= p["iou"] <= 1 and p["bytes"] > 0 for p in entry["points"])
    assert {r["method"] for r in entry["sinr_vs_baseline"]} == {"sinr-paper", "sinr+ft", "compress"}
    # compress's candidates (its search and the guard's uniform baselines), each scored on the full grid
    candidates = by_method[("compress", "MaxDrop(0.005)")]["candidates"]
    assert {c["candidate"] for c in candidates} == {"search", "mixed precision", "one width", "SINR on every layer"}
    ran = [c for c in candidates if not c.get("skipped")]
    assert "search" in {c["candidate"] for c in ran} and sum(c["kept"] for c in ran) == 1
    assert all(c["bytes"] > 0 and 0 <= c["iou"] <= 1 and c["seconds"] >= 0 for c in ran)
    kept = next(c for c in ran if c["kept"])
    assert kept["bytes"] == by_method[("compress", "MaxDrop(0.005)")]["bytes"]  # the file compress wrote
    assert "candidates, each with the same fine-tuning" in (out / "occupancy.md").read_text()
    assert results["table_s1"] == {"ball": {"siren": entry["fit"]["iou"]}}
    assert "## ball" in (out / "occupancy.md").read_text()
    for name in ("occupancy_curves.png", "occupancy_ball.png", "occupancy_ball_inr.ply", "occupancy_ball_sinr.ply"):
        assert (out / name).stat().st_size > 1000
    assert len(list((tmp_path / "cache" / "volumes").glob("ball-16-*.npz"))) == 1
    assert len(list((tmp_path / "cache" / "fits").glob("ball-16-siren-1x52-*.safetensors"))) == 1


def test_best_baseline_interpolates_along_the_front_and_never_extrapolates():
    points = [{"method": "uniform", "iou": 0.90, "bytes": 1000}, {"method": "uniform+ft", "iou": 0.95, "bytes": 2000},
              {"method": "uniform", "iou": 0.93, "bytes": 3000},  # dominated by the 0.95 point
              {"method": "sinr+ft", "iou": 0.99, "bytes": 10}]  # not a baseline
    assert bench.best_baseline_bytes(points, 0.925) == pytest.approx(1500)
    assert bench.best_baseline_bytes(points, 0.95) == pytest.approx(2000)
    assert bench.best_baseline_bytes(points, 0.96) is None
    assert bench.best_baseline_bytes(points, 0.80) is None


def test_default_output_and_caches_are_git_ignored_not_the_committed_results():
    ignored = [line.removesuffix("*") for line in (bench.REPO / ".gitignore").read_text().splitlines()
               if line.endswith(("/", "/*"))]

    def is_ignored(path):  # under a folder the .gitignore names (it names folders from the root)
        return any((path.relative_to(bench.REPO).as_posix() + "/").startswith(folder) for folder in ignored)

    assert bench.RUNS.relative_to(bench.REPO).parts[:2] == ("benchmarks", "runs") and is_ignored(bench.RUNS)
    assert is_ignored(bench.CACHE)
    assert not is_ignored(bench.REPO / "benchmarks" / "results")
