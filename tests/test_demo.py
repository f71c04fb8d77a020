"""The README's main job runs end to end (few steps here; the default is ~1 minute)."""

import json

import pytest
import torch

from torch_sinr import SINRInputError
from torch_sinr.demo import main
from torch_sinr.images import DEFAULT_IMAGE, load_image
from torch_sinr.inr import Siren, SirenConfig, fit_image, psnr, render


def test_demo_writes_file_png_and_report(tmp_path, capsys):
    result = main(["--steps", "40", "--downscale", "16", "--hidden", "32", "--layers", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "PSNR before:" in out and "bpp" in out and "ratio" in out
    for name in ("siren_sinr.safetensors", "comparison.png", "report.json"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["file_bytes"] == (tmp_path / "siren_sinr.safetensors").stat().st_size
    assert report["bpp_sinr"] == pytest.approx(8 * report["file_bytes"] / (48 * 32))
    assert result["psnr_sinr"] > 10


def test_fitting_improves_psnr():
    image = load_image(DEFAULT_IMAGE, downscale=16)
    torch.manual_seed(0)
    model = Siren(SirenConfig(hidden_features=32, hidden_layers=2))
    before = psnr(render(model, *image.shape[1:]), image)
    after = fit_image(model, image, steps=60, progress=False)
    assert after > before + 5


def test_load_image_errors(tmp_path):
    with pytest.raises(SINRInputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(SINRInputError, match="cannot decode"):
        load_image(tmp_path / "bad.png")


def test_kodak_from_shared_data(shared_data):
    image = load_image(shared_data / "kodak" / "kodim04.png", downscale=4)
    assert image.shape == (3, 192, 128)  # a portrait image
