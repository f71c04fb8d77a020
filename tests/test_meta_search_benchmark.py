"""benchmarks.meta_search end to end at a tiny size: the three codings of one fit are written files
at the target, the fit is benchmarks.meta's, a rerun resumes; and the savings it reports are the
arithmetic they claim."""

from __future__ import annotations

import json

import pytest

from benchmarks import meta, meta_search
from tests.test_meta_benchmark import _images

pytestmark = pytest.mark.usefixtures("single_thread")

ARGS = ["--train", "kodim01", "kodim02", "--test", "kodim13", "--configs", "C3-32", "--outer-steps", "3",
        "--fit-steps", "3", "--ft-steps", "2", "--downscale", "4"]


def _with_meta_records(tmp_path) -> list[str]:
    """The tiny protocol's arguments, after benchmarks.meta has run it: its records give the fit
    to compare with and the one-width front."""
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    _images(kodak)
    common = ARGS + ["--kodak", str(kodak), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert meta.main(common) == 0
    return common


def test_three_codings_of_benchmark_meta_fit_and_a_rerun_resumes(tmp_path):
    common = _with_meta_records(tmp_path)
    assert meta_search.main(common + ["--drops", "3"]) == 0
    results = json.loads((tmp_path / "out" / "meta_search.json").read_text())["results"]
    c3 = results["configs"]["C3-32"]
    assert set(c3["mean"]) == {f"{v} drop=3" for v in [*meta_search.VARIANTS, meta_search.GUARDED]}
    # the same fit as benchmarks.meta's (same seed, same steps)
    assert c3["fitted_psnr"] == pytest.approx(c3["fitted_psnr_in_meta_records"], abs=1e-9)
    record = json.loads(next((tmp_path / "cache").glob("search-C3-32-kodim13-*.json")).read_text())
    pixels = 32 * 16
    for run in record["runs"].values():
        assert run["bytes"] > 0 and run["bpp"] == 8 * run["bytes"] / pixels
        assert run["met"] == (run["psnr"] >= record["fitted_psnr"] - 3)
    assert record["runs"]["mixed precision drop=3"]["sinr_layers"] == []
    assert len(record["runs"]["sinr drop=3"]["sinr_layers"]) == 4
    assert (tmp_path / "out" / "meta_search.png").is_file()

    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("search-*.json")}
    assert meta_search.main(common + ["--drops", "3"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("search-*.json")} == before
    again = json.loads((tmp_path / "out" / "meta_search.json").read_text())["results"]
    assert again["configs"]["C3-32"]["mean"] == c3["mean"]


def _run(method, drop, bpp, psnr, met=True):
    return {"method": method, "drop_target": drop, "bytes": round(bpp * 100), "bpp": bpp, "psnr": psnr, "met": met,
            "seconds": 1.0, "sinr_layers": ["a"] if method != "mixed precision" else []}


def test_savings_are_against_the_same_target_and_the_fronts():
    runs = {"choice drop=1": _run("choice", 1, 0.9, 25.0), "mixed precision drop=1": _run("mixed precision", 1, 1.0, 25.0),
            "choice drop=3": _run("choice", 3, 0.5, 23.0), "mixed precision drop=3": _run("mixed precision", 3, 0.4, 23.0)}
    records = [{"image": "kodim13", "fitted_psnr": 26.0, "offset_layers": [], "runs": runs}]
    meta_records = [{"image": "kodim13", "fitted_psnr": 26.0,
                     "points": [{"method": "uniform+ft offsets", "setting": 4, "bpp": 0.6, "psnr": 22.0},
                                {"method": "uniform+ft offsets", "setting": 6, "bpp": 1.2, "psnr": 26.0},
                                {"method": "sinr+ft offsets", "setting": "s", "bpp": 0.1, "psnr": 30.0}]}]
    mean = meta_search.summarize(records, meta_records)["mean"]
    assert mean["choice drop=1"]["saving_vs_mixed_precision_same_target"] == pytest.approx(0.1)
    assert mean["choice drop=3"]["saving_vs_mixed_precision_same_target"] == pytest.approx(-0.25)
    # along the mixed-precision front (23 dB at 0.4, 25 dB at 1.0): 24 dB would need 0.7
    assert mean["choice drop=1"]["saving_vs_mixed_precision_front"] == pytest.approx(0.1)
    assert mean["mixed precision drop=1"]["saving_vs_mixed_precision_front"] is None
    # the one-width front from uniform points only (the SINR point of benchmarks.meta is not a baseline):
    # 25 dB lies at 0.6 + 0.6 * 3/4 = 1.05 bpp
    assert mean["choice drop=1"]["saving_vs_one_width_front"] == pytest.approx(1 - 0.9 / 1.05)
    # both fronts together: at 25 dB mixed precision needs 1.0 and one width 1.05
    assert mean["choice drop=1"]["saving_vs_best_baseline_front"] == pytest.approx(0.1)
    # at 23 dB the one-width front (0.6 + 0.6 / 4 = 0.75) is above mixed precision's 0.4
    assert mean["choice drop=3"]["saving_vs_best_baseline_front"] == pytest.approx(1 - 0.5 / 0.4)
    # no one-width front unless benchmarks.meta has records of the same images
    other = meta_search.summarize(records, [])["mean"]
    assert other["choice drop=1"]["saving_vs_one_width_front"] is None


def test_compress_default_row_is_what_the_guard_keeps():
    def run(method, size, met):
        return {"method": method, "drop_target": 2.5, "bytes": size, "bpp": size / 100, "psnr": 22.0, "met": met,
                "seconds": 2.0, "sinr_layers": []}

    # the smallest file meeting the target; the search's when it ties
    runs = {"choice drop=2.5": run("choice", 500, True), "mixed precision drop=2.5": run("mixed precision", 500, True),
            "sinr drop=2.5": run("sinr", 400, True)}
    kept = meta_search.guarded_runs(runs)[f"{meta_search.GUARDED} drop=2.5"]
    assert kept["kept"] == "sinr" and kept["bytes"] == 400 and kept["seconds"] == 6.0
    assert kept["method"] == meta_search.GUARDED
    runs["sinr drop=2.5"] = run("sinr", 300, False)  # smaller, but below the target
    assert meta_search.guarded_runs(runs)[f"{meta_search.GUARDED} drop=2.5"]["kept"] == "choice"
    runs["choice drop=2.5"] = run("choice", 200, False)  # a search that misses loses to any file that meets
    assert meta_search.guarded_runs(runs)[f"{meta_search.GUARDED} drop=2.5"]["kept"] == "mixed precision"
    del runs["sinr drop=2.5"]  # without every candidate there is no such row
    assert meta_search.guarded_runs(runs) == {}


def test_a_search_that_cannot_meet_its_target_is_a_result_not_a_crash(tmp_path, monkeypatch):
    # compress raises when a coding cannot reach the target (SINR at 8-bit values on a wide SIREN
    # at a 1 dB drop): the record keeps that as an unmet run, the guard's row keeps another file,
    # and the coding gets no mean bpp
    common = _with_meta_records(tmp_path)
    real = meta_search.compress

    def sinr_fails(model, *args, **kwargs):
        if kwargs.get("uniform_bits") == ():
            raise meta_search.SINRError("target MaxDrop(drop=3.0) cannot be met: the floor is 1")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(meta_search, "compress", sinr_fails)
    assert meta_search.main(common + ["--drops", "3"]) == 0
    record = json.loads(next((tmp_path / "cache").glob("search-C3-32-kodim13-*.json")).read_text())
    unmet = record["runs"]["sinr drop=3"]
    assert unmet["bytes"] is None and unmet["met"] is False and "cannot be met" in unmet["error"]
    results = json.loads((tmp_path / "out" / "meta_search.json").read_text())["results"]
    mean = results["configs"]["C3-32"]["mean"]
    assert mean["sinr drop=3"]["bpp"] is None and mean["sinr drop=3"]["unmet_searches"] == 1
    assert mean["sinr drop=3"]["saving_vs_best_baseline_front"] is None
    kept = meta_search.guarded_runs(record["runs"])[f"{meta_search.GUARDED} drop=3"]
    assert kept["kept"] in ("choice", "mixed precision") and kept["bytes"] is not None
    assert mean[f"{meta_search.GUARDED} drop=3"]["bpp"] == kept["bpp"]
    assert "target not met (1/1)" in (tmp_path / "out" / "meta_search.md").read_text()


def test_c5_is_refused_with_a_pointer(tmp_path):
    with pytest.raises(SystemExit, match="C5's latents are in benchmarks.meta"):
        meta_search.main(["--configs", "C5-16", "--kodak", str(tmp_path)])
