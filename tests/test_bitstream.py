"""Layer streams: cached between compress_model's report and save_compressed, never stale."""

import importlib

import pytest
import torch
from torch import nn

from torch_sinr import SINRConfig, SINRConfigError, compress_model
from torch_sinr.serialization import load_compressed, save_compressed

bitstream = importlib.import_module("torch_sinr.bitstream")


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))


def count_encodes(monkeypatch):
    calls = []
    original = bitstream.encode_layer

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(bitstream, "encode_layer", counting)
    return calls


def test_save_reuses_the_streams_the_report_made(monkeypatch, tmp_path):
    calls = count_encodes(monkeypatch)
    model = mlp()
    report = compress_model(model)
    assert len(calls) == 2
    file_report = save_compressed(model, tmp_path / "m.safetensors")
    assert len(calls) == 2  # nothing encoded twice
    assert file_report.values_bytes + file_report.indices_bytes + file_report.bias_bytes == sum(
        l.coded_bytes for l in report.layers)


def test_changed_values_are_re_encoded(monkeypatch, tmp_path):
    model = mlp()
    compress_model(model)
    calls = count_encodes(monkeypatch)
    with torch.no_grad():
        model[2].values.data[0, 0] = model[2].values[0, 1]  # stays on the quantization grid
    save_compressed(model, tmp_path / "m.safetensors")
    assert len(calls) == 1  # only the edited layer
    restored = load_compressed(tmp_path / "m.safetensors", mlp())
    assert torch.equal(restored[2].values, model[2].values)


def test_brotli_quality_changes_bytes_not_meaning(tmp_path):
    sizes, outputs = {}, {}
    x = torch.randn(16, 2)
    for quality in (0, 11):
        model = mlp()
        compress_model(model, SINRConfig(brotli_quality=quality))
        sizes[quality] = save_compressed(model, tmp_path / f"q{quality}.safetensors").file_bytes
        outputs[quality] = load_compressed(tmp_path / f"q{quality}.safetensors", mlp()).eval()(x)
    assert sizes[11] <= sizes[0]
    assert torch.equal(outputs[0], outputs[11])
    with pytest.raises(SINRConfigError):
        SINRConfig(brotli_quality=12).validate()
