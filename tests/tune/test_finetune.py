"""Fine-tuning the SINR values (support fixed) lowers the loss and keeps memory == file."""

import pytest
import torch
from torch import nn

from torch_sinr import SINRConfig, SINRError, compress_model
from torch_sinr.tune.finetune import finetune_codes
from torch_sinr.inr.images import load_image
from torch_sinr.inr.models import INR, INRConfig, fit_image, image_loss, render
from torch_sinr.format import load_compressed, save_compressed
from tests.tiny_models import fast_config


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
    compress_model(model, fast_config(value_bits=10))
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
    compress_model(model, fast_config(value_bits=10))
    loss = image_loss(image)
    model.eval()
    with torch.no_grad():
        start = loss(model).item()
    finetune_codes(model, loss, steps=5, lr=10.0)
    model.eval()
    with torch.no_grad():
        assert loss(model).item() <= start


def test_dense_parameters_train_through_their_grid_and_end_on_it(tmp_path):
    """train_dense: the input layer and biases move (through their 6-bit grids) and end on them."""
    from torch_sinr.nn.storage import get_storage

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    x = torch.rand(256, 2) * 2 - 1
    target = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])
    compress_model(model, fast_config(value_bits=10, dense_bits=6))
    grid = get_storage(model[0], "weight")
    before = model[0].weight.detach().clone()
    loss = lambda m: ((m(x) - target) ** 2).mean()  # noqa: E731
    start = loss(model).item()
    finetune_codes(model, loss, steps=60, lr=1e-2, train_dense=True)
    assert loss(model).item() < start
    weight = model[0].weight.detach()
    assert not torch.equal(weight, before)  # it trained
    assert torch.equal(grid.round_trip(weight.reshape(-1)).reshape(weight.shape), weight)  # on its grid
    save_compressed(model, tmp_path / "m.safetensors")
    restored = load_compressed(tmp_path / "m.safetensors", nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)))
    assert torch.equal(restored(x), model(x))  # memory == file


def test_requantize_dense_puts_freely_trained_parameters_back_on_a_grid(tmp_path):
    from torch_sinr.nn.storage import get_storage, requantize_dense_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    compress_model(model, fast_config(value_bits=8))
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # trained by something else, out of its old range
    requantize_dense_(model)
    grid = get_storage(model[0], "weight")
    assert grid.hi > 1.0 and grid.bits == 8
    weight = model[0].weight.detach()
    assert torch.equal(grid.round_trip(weight.reshape(-1)).reshape(weight.shape), weight)


def test_select_keeps_the_iterate_with_the_best_score_not_the_lowest_loss(fitted):
    """With ``select``, the score decides: a score that is best at the start keeps the start,
    although training lowers the loss; it is asked at step 0, every select_every steps and at the end."""
    image, state = fitted
    model = INR(INRConfig(hidden_features=32, hidden_layers=2))
    model.load_state_dict(state)
    compress_model(model, fast_config(value_bits=10))
    start = [m.values.detach().clone() for m in model.modules() if hasattr(m, "indices")]
    calls = []

    def worse_every_time(m):
        assert not m.training and not torch.is_grad_enabled()
        calls.append(len(calls))
        return -float(len(calls))

    loss = image_loss(image)
    losses = finetune_codes(model, loss, steps=30, lr=1e-3, select=worse_every_time, select_every=10)
    assert len(calls) == 4  # steps 0, 10, 20 and the end (30)
    assert losses[-1] < losses[0]  # training did lower the loss ...
    now = [m.values for m in model.modules() if hasattr(m, "indices")]
    assert all(torch.equal(a, b) for a, b in zip(start, now))  # ... but the start scored best
    assert model.training  # the mode is restored


def test_select_every_must_be_positive(fitted):
    image, state = fitted
    model = INR(INRConfig(hidden_features=32, hidden_layers=2))
    model.load_state_dict(state)
    compress_model(model, fast_config(value_bits=10))
    with pytest.raises(SINRError, match="select_every"):
        finetune_codes(model, image_loss(image), 2, select=lambda m: 0.0, select_every=0)


def test_train_dense_leaves_frozen_parameters_alone(fitted):
    """A parameter the caller froze (requires_grad False) is not trained by train_dense and keeps
    its flag; the same parameter left trainable (a copy of the model) is trained."""
    import copy

    image, state = fitted
    model = INR(INRConfig(hidden_features=32, hidden_layers=2))
    model.load_state_dict(state)
    compress_model(model, fast_config(value_bits=10))
    control = copy.deepcopy(model)
    frozen = dict(model.named_parameters())["net.0.weight"]  # the dense input layer
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    finetune_codes(model, image_loss(image), steps=30, lr=1e-3, train_dense=True)
    assert torch.equal(frozen, before) and not frozen.requires_grad
    finetune_codes(control, image_loss(image), steps=30, lr=1e-3, train_dense=True)
    assert not torch.equal(dict(control.named_parameters())["net.0.weight"], before)


def _saved_loss(model, config, loss, path) -> float:
    save_compressed(model, path)
    restored = load_compressed(path, INR(config)).eval()
    with torch.no_grad():
        return loss(restored).item()


# (value bits, learning rate, bound on the file's loss through the grid / without it). Measured, 80 steps:
# 4 bits at lr 1e-2 0.0444 vs 0.1013 (0.44; start 0.186); 5 bits at lr 5e-3 0.0146 vs 0.0202 (0.72; start
# 0.083). The rate must let values cross half a grid step (at lr 1e-3 and 40 steps they barely move).
GRID_CASES = [(4, 1e-2, 0.6), (5, 5e-3, 0.85)]


@pytest.mark.usefixtures("single_thread")  # a 32-wide model: threads only add overhead (and stall on a busy machine)
@pytest.mark.parametrize("value_bits, lr, ratio", GRID_CASES)
def test_training_through_the_grid_saves_a_better_file_and_reports_its_loss(fitted, tmp_path, value_bits, lr,
                                                                          ratio):
    """At 4-6 value bits the grid is coarse enough that training without it (quantize_aware=False)
    learns values whose rounding undoes much of the gain. Training through it must end with a
    better saved file, and the loss the fine-tuner saw for the iterate it kept must be the loss of
    the saved (snapped) file: no quantization the loss did not see."""
    image, state = fitted
    config = INRConfig(hidden_features=32, hidden_layers=2)
    loss = image_loss(image)
    saved = {}
    for quantize_aware in (True, False):
        model = INR(config)
        model.load_state_dict(state)
        compress_model(model, fast_config(value_bits=value_bits))
        seen = []

        def recording(m):
            value = loss(m)
            seen.append(value.item())
            return value

        reported = finetune_codes(model, recording, steps=80, lr=lr, quantize_aware=quantize_aware)
        assert reported == seen[:-1]  # every step's loss; the last evaluation only judges the end point
        saved[quantize_aware] = _saved_loss(model, config, loss, tmp_path / f"{quantize_aware}.safetensors")
        if quantize_aware:
            # the kept iterate is the best loss seen, and that loss is the file's (float32 decoding noise only)
            assert saved[True] == pytest.approx(min(seen), rel=1e-5)
    assert saved[True] < ratio * saved[False], saved


def test_a_model_stored_on_grids_without_sinr_layers_fine_tunes_on_them():
    """The uniform baseline (``store_dense``) gets the same fine-tuning as SINR codes: through its grids."""
    from torch_sinr.nn.storage import get_storage
    from torch_sinr.nn.transform import store_dense

    torch.manual_seed(0)
    x = torch.rand(128, 2) * 2 - 1
    target = torch.sin(3 * x).sum(1, keepdim=True)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    store_dense(model, SINRConfig(value_bits=6))
    loss_fn = lambda m: ((m(x) - target) ** 2).mean()  # noqa: E731
    before = float(loss_fn(model))
    finetune_codes(model, loss_fn, 30, lr=1e-2, train_dense=True)
    assert float(loss_fn(model)) < before
    for module, name in ((model[0], "weight"), (model[2], "bias")):
        grid = get_storage(module, name)
        tensor = getattr(module, name).detach()
        assert torch.equal(grid.round_trip(tensor).reshape(tensor.shape), tensor)  # ends on its grid
    with pytest.raises(SINRError, match="no SINRLinear"):
        finetune_codes(nn.Sequential(nn.Linear(2, 1)), loss_fn, 1, train_dense=True)
