"""benchmarks.kodak runs end to end on one tiny image: fit (cached), compress, write results."""

import json

import pytest

from benchmarks.kodak import _best_baseline_bpp, main, parse_variant


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
