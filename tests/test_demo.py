"""The README's main job runs end to end (few steps here; the default takes about a minute)."""

import json

import pytest
import torch

from torch_sinr import SINRInputError
from torch_sinr.demo import main
from torch_sinr.inr.images import DEFAULT_IMAGE, load_image
from torch_sinr.inr.models import Siren, SirenConfig, fit_image, psnr, render


pytestmark = pytest.mark.usefixtures("single_thread")


def test_demo_shows_a_saving_against_uniform_at_equal_psnr(tmp_path, capsys):
    """A small run of the main job (the default is 2x64 at 153x102, about a minute). Measured here:
    fit 36.5 dB, SINR file 35.6 dB, 23.7% fewer bytes than fine-tuned uniform at equal PSNR."""
    result = main(["--steps", "150", "--downscale", "16", "--hidden", "50", "--layers", "2", "--finetune-steps", "60",
                   "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "fewer bytes than the best uniform quantization at equal PSNR" in out
    for name in ("siren_sinr.safetensors", "comparison.png", "report.json"):
        assert (tmp_path / name).is_file()
    assert not (tmp_path / "uniform.safetensors").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["file_bytes"] == (tmp_path / "siren_sinr.safetensors").stat().st_size
    assert report["bpp_sinr"] == pytest.approx(8 * report["file_bytes"] / (48 * 32))
    assert report["psnr_uncompressed"] > 34
    assert report["psnr_uncompressed"] - 1.0 <= report["psnr_sinr"] < report["psnr_uncompressed"]
    # the baseline stopped at the first bit width reaching SINR's PSNR, and brackets it
    assert report["uniform"][-1]["psnr"] >= report["psnr_sinr"] > report["uniform"][-2]["psnr"]
    assert report["saving"] == pytest.approx(1 - report["file_bytes"] / report["uniform_bytes_at_sinr_psnr"])
    assert report["saving"] > 0.1
    assert result["saving"] == report["saving"]


def test_uniform_bytes_at_psnr_interpolates_in_log_bytes():
    from torch_sinr.demo import uniform_at_psnr

    points = [{"bytes": 1000, "psnr": 20.0}, {"bytes": 4000, "psnr": 30.0}]
    assert uniform_at_psnr(points, 25.0) == pytest.approx(2000.0)
    assert uniform_at_psnr(points, 30.0) == pytest.approx(4000.0)
    assert uniform_at_psnr(points, 31.0) is None
    assert uniform_at_psnr(points, 10.0) == 1000.0  # below every point: the smallest file that reaches it


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
