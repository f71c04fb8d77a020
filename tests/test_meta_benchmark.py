"""benchmarks.meta end to end at a tiny size: every configuration kind runs, every point is a
written file, and a rerun resumes from the caches."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from benchmarks import meta
from torch_sinr.inr.images import load_image

pytestmark = pytest.mark.usefixtures("single_thread")

ARGS = ["--train", "kodim01", "kodim02", "--test", "kodim13", "--configs", "C5-8", "C3-32",
        "--outer-steps", "3", "--fit-steps", "3", "--refine-steps", "2", "--ft-steps", "2", "--downscale", "4"]


def _images(folder):
    """Four 128 x 64 crops of the bundled image, one portrait, named as Kodak files (the
    benchmark transposes portrait images, as Kodak's six are)."""
    image = load_image()  # (3, 512, 768) in [0, 1]
    for i, name in enumerate(["kodim01", "kodim02", "kodim13"]):
        crop = image[:, 64 * i:64 * i + 64, 128 * i:128 * i + 128]
        if name == "kodim02":
            crop = crop[:, :, :64].repeat(1, 2, 1)  # 128 x 64: portrait
        array = (crop.permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(array).save(folder / f"{name}.png")


def test_every_kind_runs_and_a_rerun_resumes(tmp_path, capsys):
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    _images(kodak)
    common = ARGS + ["--kodak", str(kodak), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert meta.main(common) == 0
    result = json.loads((tmp_path / "out" / "meta.json").read_text())["results"]
    assert set(result["configs"]) == {"C5-8", "C3-32"}
    assert "C4-64 (not requested)" in result["not_evaluated"]
    pixels = 32 * 16  # 128 x 64 downscaled 4x
    for name, config in result["configs"].items():
        assert config["images"] == ["kodim13"]
        methods = {row["method"] for row in config["mean"].values()}
        expected = ({"sinr+ft", "uniform", "uniform+ft"} if name == "C5-8" else
                    {"sinr+ft weights", "sinr+ft offsets", "sinr+ft per-layer", "uniform+ft weights", "uniform+ft offsets"})
        assert methods == expected
        assert len(config["sinr_vs_best_uniform"]) == sum(m.startswith("sinr") for m in
                                                          (r["method"] for r in config["mean"].values()))
    c3 = result["configs"]["C3-32"]
    assert set(c3["learned_vs_random"]) == {"learned", "random"}
    record = next((tmp_path / "cache").glob("C5-8-kodim13-*.json"))
    points = json.loads(record.read_text())["points"]
    assert all(p["bpp"] == 8 * p["bytes"] / pixels and p["bytes"] > 0 for p in points)
    assert (tmp_path / "out" / "meta.png").is_file()

    # a rerun reads the checkpoints and records: the same summary, nothing recomputed
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert meta.main(common) == 0
    again = json.loads((tmp_path / "out" / "meta.json").read_text())["results"]
    assert again["configs"]["C5-8"]["mean"] == result["configs"]["C5-8"]["mean"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir() if p.suffix == ".json"} == \
        {k: v for k, v in before.items() if k.endswith(".json")}


def test_bad_configurations_and_missing_images_are_named(tmp_path):
    with pytest.raises(SystemExit, match="C3-W, C4-W or C5-D"):
        meta.main(["--configs", "C6-1", "--kodak", str(tmp_path)])
    with pytest.raises(SystemExit, match="not found"):
        meta.main(["--configs", "C5-8", "--kodak", str(tmp_path)])
