"""Files of offsets from a shared initialisation: they decode against it, and only against it."""

from __future__ import annotations

import pytest
import torch

import torch_sinr
from torch_sinr.errors import SINRInputError
from torch_sinr.inr import INR, INRConfig
from torch_sinr.inr.offsets import offset_network
from torch_sinr.inr.meta import init_fingerprint
from torch_sinr.shared_init import FINGERPRINT_KEY, load_offsets, save_offsets

pytestmark = pytest.mark.usefixtures("single_thread")


def _fitted_and_init():
    torch.manual_seed(0)
    model = INR(INRConfig(hidden_features=64, hidden_layers=2))
    init = {n: p.detach() - 0.05 * torch.randn_like(p) * p.detach().std() for n, p in model.named_parameters()}
    return model, init


def test_a_coded_offset_file_decodes_to_what_was_coded(tmp_path):
    model, init = _fitted_and_init()
    network = offset_network(model, init)
    torch_sinr.compress_model(network, torch_sinr.SINRConfig(s_ratio=0.3, value_bits=10), progress=False)
    path = tmp_path / "offsets.safetensors"
    save_offsets(network, path, init_fingerprint(init))
    assert torch_sinr.format.read_compressed(path).metadata[FINGERPRINT_KEY] == init_fingerprint(init)
    skeleton = INR(model.config)  # any weights: the file and the initialisation give them
    decoded = load_offsets(path, skeleton, init)
    x = torch.rand(200, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(decoded(x), network(x), rtol=0, atol=1e-5)
        # and it is the fitted image up to the code's error, not the initialisation's
        assert float((decoded(x) - model(x)).abs().max()) < float((network(x) - _net_of(init, model)(x)).abs().max())


def _net_of(init: dict[str, torch.Tensor], model: INR) -> INR:
    net = INR(model.config)
    net.load_state_dict(init)
    return net


def test_another_initialisation_or_a_plain_file_is_refused(tmp_path):
    model, init = _fitted_and_init()
    network = offset_network(model, init)
    config = torch_sinr.SINRConfig(s_ratio=0.3, value_bits=10)
    torch_sinr.compress_model(network, config, progress=False)
    path = tmp_path / "offsets.safetensors"
    save_offsets(network, path, init_fingerprint(init))
    other = {k: v.clone() for k, v in init.items()}
    other["net.4.bias"][0] += 1e-3
    with pytest.raises(SINRInputError, match="coded against initialisation"):
        load_offsets(path, INR(model.config), other)
    plain = tmp_path / "plain.safetensors"
    torch_sinr.compress_model(model, config, progress=False)
    torch_sinr.format.save_compressed(model, plain)
    with pytest.raises(SINRInputError, match="not a file of offsets"):
        load_offsets(plain, INR(model.config), init)
    with pytest.raises(SINRInputError, match="no OffsetLinear"):
        save_offsets(model, tmp_path / "x.safetensors", init_fingerprint(init))  # coded, but not offsets
