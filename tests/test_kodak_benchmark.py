"""benchmarks.kodak runs end to end on one tiny image: fit (cached), compress, write results."""

import json

from benchmarks.kodak import main


def test_fit_then_compress_writes_results(shared_data, tmp_path):
    common = ["--kodak", str(shared_data / "kodak"), "--images", "kodim07", "--configs", "1x20",
              "--steps", "15", "--downscale", "32", "--cache", str(tmp_path / "fits")]
    assert main(["fit", *common]) == 0
    assert len(list((tmp_path / "fits").glob("*.safetensors"))) == 1
    assert main(["compress", *common, "--finetune-steps", "3", "--finetune-bits", "8",
                 "--out", str(tmp_path / "out"), "--tag", "t", "--evals", str(tmp_path / "evals")]) == 0
    assert len(list((tmp_path / "evals").glob("*.json"))) == 1  # the next run reuses it
    result = json.loads((tmp_path / "out" / "kodak_t.json").read_text())
    methods = {p["method"] for p in result["results"]["records"][0]["points"]}
    assert methods == {"float32", "float16", "uniform", "uniform+ft", "prune", "low_rank", "sinr-paper", "sinr+ft"}
    assert all(p["bpp"] > 0 and p["psnr"] > 0 for p in result["results"]["records"][0]["points"])
    assert (tmp_path / "out" / "kodak_t.png").stat().st_size > 0
    assert "SINR at paper settings" in (tmp_path / "out" / "kodak_t.md").read_text()
