"""Fine-tuning the SINR values (support fixed) lowers the loss and keeps memory == file."""

import pytest
import torch

from torch_sinr import SINRConfig, SINRError, compress_model
from torch_sinr.finetune import finetune_codes
from torch_sinr.images import load_image
from torch_sinr.inr import INR, INRConfig, fit_image, image_loss, render
from torch_sinr.serialization import load_compressed, save_compressed


@pytest.fixture(scope="module")
def fitted():
    image = load_image(downscale=16)
    torch.manual_seed(0)
    model = INR(INRConfig(hidden_features=32, hidden_layers=2))
    fit_image(model, image, 150, progress=False)
    return image, model.state_dict()


@pytest.mark.parametrize("quantize_aware", [True, False])
def test_finetuning_lowers_loss_and_file_equals_memory(fitted, tmp_path, quantize_aware):
    image, state = fitted
    config = INRConfig(hidden_features=32, hidden_layers=2)
    model = INR(config)
    model.load_state_dict(state)
    compress_model(model, SINRConfig(value_bits=10))
    indices_before = [m.indices.clone() for m in model.modules() if hasattr(m, "indices")]
    loss = image_loss(image)
    with torch.no_grad():
        start = loss(model).item()
    losses = finetune_codes(model, loss, steps=60, lr=1e-3, quantize_aware=quantize_aware)
    model.eval()
    with torch.no_grad():
        end = loss(model).item()
    assert end < 0.8 * start and len(losses) == 60
    assert all(torch.equal(a, m.indices) for a, m in zip(indices_before, [m for m in model.modules() if hasattr(m, "indices")]))
    save_compressed(model, tmp_path / "ft.safetensors")
    restored = load_compressed(tmp_path / "ft.safetensors", INR(config)).eval()
    assert torch.equal(render(restored, *image.shape[1:]), render(model, *image.shape[1:]))
    assert not any(p.requires_grad and p.grad is not None and hasattr(m, "indices") for m in model.modules()
                   for p in [getattr(m, "values", None)] if p is not None)


def test_finetune_needs_sinr_layers():
    with pytest.raises(SINRError):
        finetune_codes(INR(INRConfig(hidden_features=8, hidden_layers=1)), lambda m: torch.zeros(()), 1)


def test_finetuning_never_ends_worse_than_it_starts(fitted):
    """A learning rate far too high must not leave the model worse: the best iterate is kept."""
    image, state = fitted
    model = INR(INRConfig(hidden_features=32, hidden_layers=2))
    model.load_state_dict(state)
    compress_model(model, SINRConfig(value_bits=10))
    loss = image_loss(image)
    model.eval()
    with torch.no_grad():
        start = loss(model).item()
    finetune_codes(model, loss, steps=5, lr=10.0)
    model.eval()
    with torch.no_grad():
        assert loss(model).item() <= start
