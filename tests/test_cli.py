"""The torch-sinr command line: compress a plain state_dict, inspect, decompress."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from torch_sinr.cli import main
from torch_sinr.statedict import load_checkpoint, module_from_state_dict
from torch_sinr import SINRInputError


def plain_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.LayerNorm(64), nn.Linear(64, 4))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_compress_info_decompress(tmp_path, capsys, suffix):
    model = plain_model()
    ckpt = tmp_path / f"model{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, ckpt)
    else:
        save_file(model.state_dict(), str(ckpt))
    out = tmp_path / "model_sinr.safetensors"
    assert main(["compress", str(ckpt), "-o", str(out), "--value-bits", "12"]) == 0
    printed = capsys.readouterr().out
    assert "| 2 | 64x64 |" in printed and "container" in printed
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "torch_sinr format 2" in info and "| 5.weight | sinr | 4x64 | row, s=" in info
    assert "| 0.weight | uniform | 64x3 | 12-bit uniform" in info  # the input layer: quantized, not SINR-coded
    assert "| 4.weight | raw | 64 | stored as float32 |" in info  # LayerNorm tensors (buffers here): exact
    dense = tmp_path / "decoded.safetensors"
    assert main(["decompress", str(out), "-o", str(dense)]) == 0
    state = load_file(str(dense))
    restored = plain_model()
    restored.load_state_dict(state)  # strict: same keys and shapes as the original
    x = torch.randn(8, 3)
    error = (restored(x) - model(x)).norm() / model(x).norm()
    assert error < 0.2
    # the input layer is not SINR-coded, only quantized: within half a 12-bit step of the original
    step = (model[0].weight.max() - model[0].weight.min()) / (2**12 - 1)
    assert (state["0.weight"] - model[0].weight).abs().max() <= step / 2 + 1e-7
    assert torch.equal(state["4.weight"], model[4].weight)


def test_dry_run_and_errors(tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    save_file(plain_model().state_dict(), str(ckpt))
    assert main(["compress", str(ckpt), "-o", str(tmp_path / "x.safetensors"), "--dry-run"]) == 0
    assert "kept dense (input layers) (1):\n  0" in capsys.readouterr().out
    assert not (tmp_path / "x.safetensors").exists()
    assert main(["compress", str(ckpt), "-o", str(tmp_path / "x.safetensors"), "--targets", "nope"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["info", str(ckpt)]) == 2  # a plain safetensors file is not a torch_sinr file
    assert "not a torch_sinr file" in capsys.readouterr().err


def test_load_checkpoint_refuses_pickles_and_non_state_dicts(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(SINRInputError, match="weights_only"):
        load_checkpoint(path)
    torch.save({"lr": 0.1}, tmp_path / "cfg.pt")
    with pytest.raises(SINRInputError, match="no state_dict"):
        load_checkpoint(tmp_path / "cfg.pt")
    with pytest.raises(SINRInputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_module_from_state_dict_keeps_keys_and_finds_linears():
    state = plain_model().state_dict()
    state["extra.scale"] = torch.ones(2)
    module = module_from_state_dict(state)
    assert module.state_dict().keys() == state.keys()
    assert isinstance(module.get_submodule("2"), nn.Linear)
    assert not isinstance(module.get_submodule("4"), nn.Linear)  # LayerNorm weight is 1-D
    with pytest.raises(SINRInputError):
        module_from_state_dict({})
