"""compress_model's report counts the bytes of the file save_compressed writes, container included."""

import pytest
import torch
from torch import nn

from torch_sinr import SINRConfig, SINRConfigError, compress_model
from torch_sinr.format import load_compressed, save_compressed
from tests.tiny_models import fast_config


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))


@pytest.mark.parametrize("config", [fast_config(), fast_config(value_bits=8, symbol_coding="range"),
                                    fast_config(dense_dtype="float16", store_names=False)])
def test_report_counts_the_written_file(tmp_path, config):
    model = mlp()
    report = compress_model(model, config)
    file_report = save_compressed(model, tmp_path / "m.safetensors")
    assert report.file_bytes == report.total_coded_bytes == file_report.file_bytes
    assert report.ratio == pytest.approx(report.total_dense_bytes / file_report.file_bytes)
    parts = file_report.parts()
    assert sum(parts.values()) == file_report.file_bytes and min(parts.values()) >= 0
    # per layer: its values, indices, bias and their side info, as the file holds them
    for layer in report.layers:
        entries = [file_report.entries[f"{layer.name}.{leaf}"] for leaf in ("weight", "bias")]
        expected = sum(v for e in entries for k, v in e.items() if k != "index_coding")
        assert layer.coded_bytes == round(expected)
        assert layer.bits_values > 0 and layer.bits_indices > 0 and layer.index_coding in ("fixed", "rice", "bitmask")


def test_edited_values_are_saved(tmp_path):
    model = mlp()
    compress_model(model, fast_config())
    with torch.no_grad():
        model[2].values.data[0, 0] = model[2].values[0, 1]  # stays on the quantization grid
    save_compressed(model, tmp_path / "m.safetensors")
    restored = load_compressed(tmp_path / "m.safetensors", mlp())
    assert torch.equal(restored[2].values, model[2].values)


def test_brotli_quality_changes_bytes_not_meaning(tmp_path):
    sizes, outputs = {}, {}
    x = torch.randn(16, 2)
    for quality in (0, 11):
        model = mlp()
        compress_model(model, fast_config(brotli_quality=quality))
        sizes[quality] = save_compressed(model, tmp_path / f"q{quality}.safetensors").file_bytes
        outputs[quality] = load_compressed(tmp_path / f"q{quality}.safetensors", mlp()).eval()(x)
    assert sizes[11] <= sizes[0]
    assert torch.equal(outputs[0], outputs[11])
    with pytest.raises(SINRConfigError):
        fast_config(brotli_quality=12).validate()
