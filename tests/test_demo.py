"""The README's main job runs end to end (few steps here; the default takes about a minute)."""

import json

import pytest
import torch

from torch_sinr import SINRInputError
from torch_sinr.demo import main
from torch_sinr.inr.images import DEFAULT_IMAGE, load_image
from torch_sinr.inr.models import Siren, SirenConfig, fit_image, psnr, render


pytestmark = pytest.mark.usefixtures("single_thread")


def test_demo_compares_the_file_with_the_fair_uniform_baselines(tmp_path, capsys):
    """A small run of the main job (the default is 2x64 at 153x102). The file compress kept is
    the smallest of SINR's per-layer choice, the uniform files its guard made with the same
    fine-tuning (mixed precision, one width) and SINR on every layer, all within the drop."""
    result = main(["--steps", "150", "--downscale", "16", "--hidden", "50", "--layers", "2", "--finetune-steps", "40",
                   "--max-probes", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "3. Candidates" in out and "uniform, mixed precision" in out and "uniform, one width" in out
    assert "SINR on every layer" in out
    for name in ("siren_sinr.safetensors", "comparison.png", "report.json"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["file_bytes"] == (tmp_path / "siren_sinr.safetensors").stat().st_size
    assert report["bpp_sinr"] == pytest.approx(8 * report["file_bytes"] / (48 * 32))
    assert report["psnr_uncompressed"] > 34
    floor = report["psnr_uncompressed"] - 1.0
    assert floor <= report["psnr_sinr"] < report["psnr_uncompressed"]
    met = {name: e for name, e in report["candidates"].items() if e["score"] >= floor}
    assert report["file_bytes"] == min(e["file_bytes"] for e in met.values()) == met[report["kept"]]["file_bytes"]
    assert report["psnr_sinr"] == pytest.approx(met[report["kept"]]["score"], abs=1e-6)  # the file is what was kept
    assert set(report["candidates"]) == {"search", "mixed precision", "one width", "SINR on every layer"}
    uniform = ("mixed precision", "one width")
    assert report["uniform_bytes"] == min(e["file_bytes"] for n, e in met.items() if n in uniform)
    assert report["saving_vs_best_uniform"] == pytest.approx(1 - report["file_bytes"] / report["uniform_bytes"])
    assert report["saving_vs_best_uniform"] >= 0  # never larger than the best uniform file
    kept_line = "kept the uniform file" if report["kept"] in uniform else "smaller than the best uniform file"
    assert kept_line in out
    assert result["saving_vs_best_uniform"] == report["saving_vs_best_uniform"]


def test_fitting_improves_psnr():
    image = load_image(DEFAULT_IMAGE, downscale=16)
    torch.manual_seed(0)
    model = Siren(SirenConfig(hidden_features=32, hidden_layers=2))
    before = psnr(render(model, *image.shape[1:]), image)
    after = fit_image(model, image, steps=60, progress=False)
    assert before < 13 and after > 19  # measured 11.9 -> 19.9 dB


def test_load_image_errors(tmp_path):
    with pytest.raises(SINRInputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(SINRInputError, match="cannot decode"):
        load_image(tmp_path / "bad.png")


def test_kodak_from_shared_data(shared_data):
    image = load_image(shared_data / "kodak" / "kodim04.png", downscale=4)
    assert image.shape == (3, 192, 128)  # a portrait image
