"""Every INR in the zoo fits a tiny image and improves its PSNR."""

import pytest
import torch
from torch import nn

from torch_sinr import plan_targets, SINRConfig
from torch_sinr.inr.images import load_image
from torch_sinr.inr.models import ACTIVATIONS, INR, INRConfig, PositionalEncoding, fit_image, psnr, render


@pytest.fixture(scope="module")
def tiny_image():
    return load_image(downscale=32)  # 24 x 16


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_inr_fits_a_tiny_image(tiny_image, activation):
    torch.manual_seed(0)
    model = INR(INRConfig(hidden_features=32, hidden_layers=2, activation=activation))
    before = psnr(render(model, *tiny_image.shape[1:]), tiny_image)
    after = fit_image(model, tiny_image, steps=100, lr=1e-3 if activation.startswith("siren") else 5e-3,
                      progress=False)
    assert after > before + 6, (activation, before, after)
    assert all(isinstance(m, nn.Linear) for m in model.net if hasattr(m, "weight"))


def test_shapes_and_layer_counts():
    model = INR(INRConfig(hidden_features=16, hidden_layers=3, activation="relu_pe", pe_frequencies=4))
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert len(linears) == 5 and linears[0].in_features == 2 * (1 + 2 * 4)
    assert model(torch.rand(7, 2)).shape == (7, 3)
    assert PositionalEncoding(3)(torch.zeros(1, 2)).shape == (1, 14)


def test_siren_input_layer_stays_dense_by_default():
    plan = plan_targets(INR(INRConfig()), SINRConfig())
    assert plan.kept_dense == ["net.0"] and plan.matched == ["net.2", "net.4", "net.6", "net.8"]


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        INRConfig(activation="tanh")
