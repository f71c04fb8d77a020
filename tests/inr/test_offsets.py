"""Offset networks (torch_sinr.inr.offsets): the same function, only offsets in the state dict."""

from __future__ import annotations

import pytest
import torch

import torch_sinr
from torch_sinr.errors import SINRInputError
from torch_sinr.inr import INR, INRConfig
from torch_sinr.inr.offsets import OffsetLinear, offset_network

pytestmark = pytest.mark.usefixtures("single_thread")


def _pair(scale: float = 0.05) -> tuple[INR, dict[str, torch.Tensor]]:
    """A network and an initialisation it stays close to (its weights minus a small offset)."""
    torch.manual_seed(0)
    model = INR(INRConfig(hidden_features=64, hidden_layers=2))
    init = {n: p.detach() - scale * torch.randn_like(p) * p.detach().std() for n, p in model.named_parameters()}
    return model, init


def test_offset_network_computes_the_model_and_stores_only_offsets():
    model, init = _pair()
    network = offset_network(model, init)
    x = torch.rand(100, 2) * 2 - 1
    torch.testing.assert_close(network(x), model(x), rtol=0, atol=1e-5)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert all(isinstance(network.get_submodule(n), OffsetLinear) for n in linears)
    assert all(".delta." in key for key in network.state_dict())  # the bases are not saved
    for name in linears:
        delta = network.get_submodule(name).delta.weight.detach()
        assert float(delta.norm()) < 0.1 * float(model.get_submodule(name).weight.detach().norm())


def test_coding_the_offsets_errs_less_than_coding_the_weights():
    """Same SINR settings: the decoded weights are closer to the fitted ones when the small offset
    is coded, by about the offset's size relative to the weights."""
    model, init = _pair()
    config = torch_sinr.SINRConfig(s_ratio=0.2, value_bits=8, dict_ratio=4)
    plain_model = _copy(model)
    plain = torch_sinr.compress_model(plain_model, config, progress=False)
    network = offset_network(model, init)
    coded = torch_sinr.compress_model(network, config, progress=False)
    # the same layers coded (the input layer stays dense either way), and some are
    assert len(plain.layers) == 3
    assert {layer.name.removesuffix(".delta") for layer in coded.layers} == {layer.name for layer in plain.layers}
    for layer in plain.layers:
        fitted = model.get_submodule(layer.name).weight.detach()
        offset = network.get_submodule(layer.name)
        via_offset = offset.base_weight + offset.delta.weight.detach()
        via_weight = plain_model.get_submodule(layer.name).weight.detach()
        assert float((via_offset - fitted).norm()) < 0.5 * float((via_weight - fitted).norm()), layer.name


def _copy(model: INR) -> INR:
    copy = INR(model.config)
    copy.load_state_dict(model.state_dict())
    return copy


def test_chosen_layers_only_and_refusals():
    model, init = _pair()
    network = offset_network(model, init, layers=["net.2"])
    assert isinstance(network.get_submodule("net.2"), OffsetLinear)
    assert isinstance(network.get_submodule("net.4"), torch.nn.Linear)
    with pytest.raises(SINRInputError, match="not nn.Linear"):
        offset_network(model, init, layers=["net.1"])  # an activation
    with pytest.raises(SINRInputError, match="no parameters for layer"):
        offset_network(model, {k: v for k, v in init.items() if not k.startswith("net.2.")})
    wrong = dict(init)
    wrong["net.2.weight"] = torch.zeros(3, 3)
    with pytest.raises(SINRInputError, match="initialisation weight"):
        offset_network(model, wrong)


def test_each_layer_chooses_what_codes_closer():
    from torch_sinr.inr.offsets import choose_offset_layers

    torch.manual_seed(0)
    model = INR(INRConfig(hidden_features=64, hidden_layers=2))
    init = {n: p.detach() - 0.05 * torch.randn_like(p) * p.detach().std() for n, p in model.named_parameters()}
    # one layer the image moved far from its initialisation: its offset is larger than its weight
    init["net.4.weight"] = 3 * torch.randn_like(init["net.4.weight"]) * model.net[4].weight.detach().std()
    choice = choose_offset_layers(model, init, s_ratio=0.3, value_bits=8, dict_ratio=4)
    assert set(choice) == {"net.0", "net.2", "net.4", "net.6"}
    assert {n: c["chosen"] for n, c in choice.items()} == {"net.0": "offsets", "net.2": "offsets",
                                                          "net.4": "weights", "net.6": "offsets"}
    for c in choice.values():
        assert min(c["weights_error"], c["offsets_error"]) < 0.6
    chosen = [n for n, c in choice.items() if c["chosen"] == "offsets"]
    network = offset_network(model, init, layers=chosen)
    x = torch.rand(50, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(network(x), model(x))
    with pytest.raises(SINRInputError, match="initialisation weight"):
        choose_offset_layers(model, {**init, "net.2.weight": torch.zeros(3, 3)})
