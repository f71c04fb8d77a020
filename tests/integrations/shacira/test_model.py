"""ImageModel.decode, the inference path decode_image renders with, against forward."""

import pytest
import torch

from torch_sinr.errors import SINRConfigError
from torch_sinr_shacira import ImageModel, ImageModelConfig

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = ImageModelConfig.for_image(200, 300, levels=6, log2_table=10, hidden=24, latent_init=3.0)


def _model() -> ImageModel:
    torch.manual_seed(0)
    model = ImageModel(CONFIG)
    with torch.no_grad():  # decoders far from their initial near-zero values, so a wrong fold shows
        model.latent_decoder.bias.normal_()
        for layer in model.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("rounding", ["float", "hard"])
def test_decode_is_forward_within_float32_rounding(rounding):
    model = _model()
    model.rounding = rounding
    coords = torch.rand(1000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(coords)
    decoded = model.decode(coords, chunk=300)  # ragged chunks
    assert decoded.shape == expected.shape == (1000, 3)
    # the fold sums the same products in another order: float32 rounding of values of size ~1
    scale = float(expected.abs().max())
    assert scale > 0.1
    assert float((decoded - expected).abs().max()) <= 1e-5 * scale
    # and it is that function, not merely close to some function: another model's fold is far off
    other = _model()
    with torch.no_grad():
        other.mlp[0].weight.mul_(1.01)
    assert float((other.decode(coords) - expected).abs().max()) > 1e-3 * scale


def test_decode_of_hard_rounding_reads_the_rounded_latents():
    model = _model()
    model.rounding = "hard"
    coords = torch.rand(500, 2, generator=torch.Generator().manual_seed(2))
    hard = model.decode(coords)
    with torch.no_grad():
        model.grid.latents.copy_(torch.round(model.grid.latents))
    model.rounding = "float"
    assert torch.equal(model.decode(coords), hard)


def test_decode_refuses_soft_rounding():
    model = _model()
    model.rounding = "soft"
    with pytest.raises(SINRConfigError, match="rounding"):
        model.decode(torch.rand(4, 2))


@pytest.mark.parametrize("hidden_layers", [1, 3])
def test_decode_reuses_its_buffers_for_any_depth(hidden_layers):
    """decode writes every hidden layer into one of two reused buffers and the last into the
    output: a wrong buffer choice (a layer reading what it overwrites) would show here."""
    torch.manual_seed(0)
    model = ImageModel(ImageModelConfig.for_image(200, 300, levels=4, log2_table=9, hidden=16,
                                                  hidden_layers=hidden_layers, latent_init=3.0))
    with torch.no_grad():
        for layer in model.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.normal_(0.0, 0.3)
    coords = torch.rand(700, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(coords)
    decoded = model.decode(coords, chunk=256)
    assert float((decoded - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


def test_decode_is_the_same_with_and_without_the_native_kernel():
    from torch_sinr.inr.hashgrid import fast

    if not fast.native_available():
        pytest.skip("the C++ kernel is not built here")
    model = _model()
    coords = torch.rand(900, 2, generator=torch.Generator().manual_seed(4))
    native = model.decode(coords, chunk=256)
    with fast.torch_only():
        assert torch.equal(model.decode(coords, chunk=256), native)


def test_decode_takes_a_linear_without_bias():
    model = _model()
    hidden = model.mlp[2]
    plain = torch.nn.Linear(hidden.in_features, hidden.out_features, bias=False)
    with torch.no_grad():
        plain.weight.copy_(hidden.weight)
    model.mlp[2] = plain
    coords = torch.rand(500, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(coords)
    assert float((model.decode(coords, chunk=128) - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
