"""benchmarks.kodak runs end to end on one tiny image: fit (cached), compress, write results."""

import json

import pytest

from benchmarks.kodak import (RESULTS, TUNED_ON, TUNING_IMAGES, _best_baseline_bpp, main, parse_variant,
                              stored_summary, summarize)


def test_fit_then_compress_writes_results(shared_data, tmp_path, capsys):
    common = ["--kodak", str(shared_data / "kodak"), "--images", "kodim07", "--configs", "1x20",
              "--steps", "15", "--downscale", "32", "--cache", str(tmp_path / "fits")]
    assert main(["fit", *common, "--device", "cpu"]) == 0
    assert len(list((tmp_path / "fits").glob("*.safetensors"))) == 1
    compress = ["compress", *common, "--finetune-steps", "3", "--finetune-bits", "8", "--out", str(tmp_path / "out"),
                "--tag", "t", "--evals", str(tmp_path / "evals")]
    baseline = ["--baseline", "uniform:bits=6", "uniform:bits=16", "uniform+ft:bits=8:lr=1e-4"]
    assert main([*compress, *baseline, "--extra", "sinr+ft:s=0.3:bits=8:lr=1e-3"]) == 0
    # one file each for the fixed methods, the baseline and the extra variants: the next run reuses them
    assert len(list((tmp_path / "evals").glob("*.json"))) == 3
    result = json.loads((tmp_path / "out" / "kodak_t.json").read_text())
    points = result["results"]["records"][0]["points"]
    methods = {p["method"] for p in points}
    assert methods == {"float32", "float16", "uniform", "uniform+ft lr=0.0001", "prune", "low_rank", "sinr-paper",
                       "sinr+ft", "sinr+ft s=0.3 lr=0.001"}
    assert all(p["bpp"] > 0 for p in points)
    fit_psnr = result["results"]["records"][0]["fit_psnr"]
    # float32 stores the fitted model bit for bit: its PSNR is the fit's, exactly
    assert [p["psnr"] for p in points if p["method"] == "float32"] == [fit_psnr]
    # every method lands near the fit (measured: 0.55 dB below it for pruning at 9.9 bpp, at most 0.29 dB
    # above it for fine-tuned SINR); "psnr > 0" held for almost any image
    assert all(abs(p["psnr"] - fit_psnr) < 1.0 for p in points), [(p["method"], p["psnr"]) for p in points]
    # This 15-step fit is nearly insensitive to its weights (every SINR weight scaled by 0.8 cost 0.27 dB),
    # so the near-lossless methods are held to what they measure: float16 0.0003 dB and SINR at the
    # paper's settings 0.0008 dB from the fit
    near = {p["method"]: abs(p["psnr"] - fit_psnr) for p in points if p["method"] in ("float16", "sinr-paper")}
    assert len(near) == 2 and max(near.values()) < 0.01, near
    assert (tmp_path / "out" / "kodak_t.png").stat().st_size > 0
    assert "SINR at paper settings" in (tmp_path / "out" / "kodak_t.md").read_text()
    # the images the settings were chosen on, and that kodim07 is not among them
    assert [t["images"] for t in result["protocol"]["tuned_on"]] == [t["images"] for t in TUNED_ON]
    assert result["protocol"]["tuned_on"][0]["among_reported"] == []
    assert result["protocol"]["tuned_on"][1]["among_reported"] == ["kodim07.png"]
    assert "Low-rank SVD of each hidden matrix at rank" in (tmp_path / "out" / "kodak_t.md").read_text()
    # where the fit and the fixed methods ran is summarized, since fine-tuned points depend on it
    (where,) = result["protocol"]["computed_on"]
    assert where["records"] == 1 and where["fit"]["device"] == "cpu" and where["fixed_methods"]["threads"] >= 1
    assert "1 records. Fits: {" in (tmp_path / "out" / "kodak_t.md").read_text()

    # Adding a variant computes only that one; the cached ones come back unchanged.
    extra_file = next((tmp_path / "evals").glob("*-extra.json"))
    before = json.loads(extra_file.read_text())
    auto = "sinr+auto:budget_s=0.3:bits=8:lr=1e-3:menu_bits=8"
    assert main([*compress, *baseline, "--extra", "sinr+ft:s=0.3:bits=8:lr=1e-3", auto]) == 0
    after = json.loads(extra_file.read_text())
    assert after["sinr+ft:s=0.3:bits=8:lr=1e-3"] == before["sinr+ft:s=0.3:bits=8:lr=1e-3"]
    # autotune then fine-tune: within the byte budget of the fixed setting before fine-tuning
    assert after[auto]["method"] == "sinr+autotune at bytes of s=0.3 lr=0.001 bits menu 8"
    assert all(bits == 8 for _, bits in after[auto]["choices"].values())
    # the budget holds before fine-tuning; fine-tuned values spread over their grid and code a little larger
    assert after[auto]["bytes"] <= 1.2 * after[auto]["budget_bytes"]
    with pytest.raises(ValueError, match="--baseline"):
        main([*compress, "--extra", "uniform+ft:bits=6:lr=1e-3"])

    # --only-cached summarizes what was evaluated with every variant and lists the rest.
    assert main([*compress, *baseline, "--configs", "1x20", "1x21", "--only-cached", "--extra"]) == 0
    result = json.loads((tmp_path / "out" / "kodak_t.json").read_text())
    assert result["protocol"]["not_evaluated_skipped"] == ["kodim07.png 1x21"]
    assert [r["config"] for r in result["results"]["records"]] == ["1x20"]
    assert len(list((tmp_path / "fits").glob("*.safetensors"))) == 1
    # With nothing left to summarize it says what is missing, exits 1 and leaves the last result as it was.
    written = (tmp_path / "out" / "kodak_t.json").read_bytes()
    capsys.readouterr()
    assert main([*compress, *baseline, "--only-cached", "--extra", "sinr+ft:s=0.1:bits=8:lr=1e-3"]) == 1
    assert "(1 missing: kodim07.png 1x20)" in capsys.readouterr().err  # an extra variant is missing
    assert main([*compress, *baseline, "uniform:bits=5", "--only-cached", "--extra"]) == 1
    assert "(1 missing: kodim07.png 1x20)" in capsys.readouterr().err  # a baseline variant is missing
    assert (tmp_path / "out" / "kodak_t.json").read_bytes() == written


def test_best_baseline_is_the_pareto_front():
    # (psnr, bpp): the point at (30, 6) is dominated by (31, 5) and must not be interpolated through.
    points = [(20.0, 1.0), (30.0, 6.0), (31.0, 5.0), (40.0, 10.0)]
    assert _best_baseline_bpp(points, 25.5) == pytest.approx(1.0 + 4.0 * 5.5 / 11.0)
    assert _best_baseline_bpp(points, 35.5) == pytest.approx(7.5)
    assert _best_baseline_bpp(points, 10.0) is None  # no extrapolation below the range
    assert _best_baseline_bpp(points, 20.0) == 1.0
    assert _best_baseline_bpp(points, 41.0) is None


@pytest.mark.parametrize("text", ["sinr+ft:bits=8", "prune:bits=8:lr=1e-3", "uniform+ft:lr=1e-3", "uniform:bits=8:lr=1e-3"])
def test_bad_variants_are_named(text):
    with pytest.raises(ValueError, match="variant"):
        parse_variant(text)


def _record(config: str, image: str, points: list[tuple[str, int, float, float]]) -> dict:
    """A record as compress writes it, with (method, setting, psnr, bpp) points."""
    return {"image": image, "config": config, "fit_psnr": 30.0, "seconds": 1.0, "env": None, "fit_env": None,
            "points": [{"method": m, "setting": s, "bytes": int(bpp * 100), "bpp": bpp, "psnr": psnr}
                       for m, s, psnr, bpp in points]}


# The baseline front: (20 dB, 1 bpp), (30, 3), (40, 10); (30 dB, 6 bpp) is dominated.
FRONT = [("uniform", 6, 20.0, 1.0), ("uniform+ft lr=0.001", 7, 30.0, 3.0), ("uniform", 8, 30.0, 6.0),
         ("float16", 16, 40.0, 10.0), ("uniform", 16, 41.0, 12.0)]


def test_paper_settings_are_compared_on_the_front_at_equal_psnr():
    # two images whose paper points average 34 dB at 8 bpp: the front needs 3 + 7 * 0.4 = 5.8 bpp there
    records = [_record("1x8", "a.png", FRONT + [("sinr-paper", 16, 33.0, 7.0)]),
               _record("1x8", "b.png", FRONT + [("sinr-paper", 16, 35.0, 9.0)])]
    paper = summarize(records)["1x8"]["paper_vs_best_baseline"]
    assert paper["psnr"] == pytest.approx(34.0) and paper["sinr_bpp"] == pytest.approx(8.0)
    assert paper["baseline_bpp"] == pytest.approx(5.8) and paper["saving"] == pytest.approx(1 - 8.0 / 5.8)
    # 16-bit uniform at 41 dB / 12 bpp: the paper's comparison still reads as a saving
    assert summarize(records)["1x8"]["paper_vs_uniform16"]["bpp_ratio"] == pytest.approx(8.0 / 12.0)
    for psnr in (19.0, 42.0):  # below and above the front: not compared (no extrapolation)
        paper = summarize([_record("1x8", "a.png", FRONT + [("sinr-paper", 16, psnr, 0.5)])])["1x8"]
        assert paper["paper_vs_best_baseline"] == {"psnr": psnr, "sinr_bpp": 0.5, "baseline_bpp": None, "saving": None}
    assert summarize([_record("1x8", "a.png", FRONT)])["1x8"]["paper_vs_best_baseline"] is None


def test_summarize_rewrites_only_the_summary(tmp_path, capsys):
    records = [_record("1x8", "kodim08.png", FRONT + [("sinr-paper", 16, 35.0, 9.0), ("sinr+ft", 8, 30.0, 2.0)])]
    stale = {"1x8": {"mean": [], "paper_vs_uniform16": None, "sinr_ft_vs_best_baseline": []}}
    written = {"name": "kodak_x", "description": "d", "protocol": {"steps": 5, "images": ["kodim08.png"]},
               "results": {"records": records, "summary": stale}}
    path = tmp_path / "kodak_x.json"
    path.write_text(json.dumps(written))
    assert main(["summarize", "--tags", "x", "--out", str(tmp_path)]) == 0
    result = json.loads(path.read_text())
    assert result["results"]["records"] == records and result["description"] == "d"
    assert result["results"]["summary"] == stored_summary(summarize(records))
    assert result["results"]["summary"]["1x8"]["paper_vs_best_baseline"]["saving"] == pytest.approx(1 - 9.0 / 6.5)
    assert result["summary_recomputed"]["command"] == f"python -m benchmarks.kodak summarize --tags x --out {tmp_path}"
    # the protocol gains the images the settings were chosen on; kodim08 is among the tuning images
    assert result["protocol"]["steps"] == 5 and result["protocol"]["tuned_on"][0]["among_reported"] == ["kodim08.png"]
    text = (tmp_path / "kodak_x.md").read_text()
    assert "on kodim01, kodim08, kodim23; of the images here: kodim08" in text
    assert ("at equal PSNR: 9.000 bpp at 35.00 dB; the best baseline needs 6.500 bpp there: "
            "SINR needs 38.5% more bytes") in text
    # a missing or broken result is named and nothing is written, not even the results before it
    before = path.read_bytes()
    (tmp_path / "kodak_y.json").write_text("{not json")
    capsys.readouterr()
    assert main(["summarize", "--tags", "x", "y", "z", "--out", str(tmp_path)]) == 1
    assert "kodak_y.json is not valid JSON" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["summarize", "--tags", "z", "--out", str(tmp_path)]) == 1
    assert "kodak_z.json: no such result" in capsys.readouterr().err


def test_the_tuning_images_are_those_of_the_tuning_run():
    tuning = json.loads((RESULTS / "kodak_tuning.json").read_text())
    assert tuple(tuning["protocol"]["images"]) == TUNING_IMAGES == tuple(TUNED_ON[0]["images"])
    for tag in ("C1", "C2"):  # the committed results name them, and which of their images are among them
        protocol = json.loads((RESULTS / f"kodak_{tag}.json").read_text())["protocol"]
        assert protocol["tuned_on"][0]["among_reported"] == [i for i in protocol["images"] if i in TUNING_IMAGES]
