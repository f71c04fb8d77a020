"""The torch-sinr command line: compress a plain state_dict, inspect, decompress."""

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from torch_sinr import SINRAlreadyCompressedError, SINRInputError, cli, decode_state_dict
from torch_sinr.cli import main
from torch_sinr.format.statedict import load_checkpoint, module_from_state_dict


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
    assert error < 0.015  # measured 0.0074 (12-bit values, the default s and dictionary; 0.2 let a quarter of the non-zeros pass)
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


def test_compress_of_a_pickled_module_says_in_one_line_to_save_its_state_dict(tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(plain_model(), path)  # the whole module, pickled: weights_only refuses it
    assert main(["compress", str(path), "-o", str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "\x1b[" not in err  # one line, no terminal colours
    assert "pickled object (torch.nn.modules.container.Sequential)" in err
    assert "model.state_dict()" in err and "weights_only` set to `False" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_module_from_state_dict_keeps_keys_and_finds_linears():
    state = plain_model().state_dict()
    state["extra.scale"] = torch.ones(2)
    module = module_from_state_dict(state)
    assert module.state_dict().keys() == state.keys()
    assert isinstance(module.get_submodule("2"), nn.Linear)
    assert not isinstance(module.get_submodule("4"), nn.Linear)  # LayerNorm weight is 1-D
    with pytest.raises(SINRInputError):
        module_from_state_dict({})


# ----------------------------------------------------------------------------- output extensions
@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """A compressed file from a checkpoint with a bfloat16 buffer (numpy has no bfloat16)."""
    folder = tmp_path_factory.mktemp("cli")
    state = plain_model().state_dict()
    state["extra.scale"] = torch.tensor([1.0, -2.5, 3.0e-3], dtype=torch.bfloat16)
    ckpt = folder / "model.safetensors"
    save_file(state, str(ckpt))
    out = folder / "model_sinr.safetensors"
    assert main(["compress", str(ckpt), "-o", str(out)]) == 0
    return ckpt, out


@pytest.mark.parametrize("name", ["out.pt", "out.npz", "out.sinr", "out"])
def test_compress_refuses_an_output_it_would_not_write_as_named(tmp_path, capsys, compressed, name):
    ckpt, _ = compressed
    assert main(["compress", str(ckpt), "-o", str(tmp_path / name)]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any work: nothing written


def test_cli_ratio_is_the_reports_and_the_files(tmp_path, capsys, compressed):
    ckpt, _ = compressed
    out = tmp_path / "m.safetensors"
    assert main(["compress", str(ckpt), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    table_ratio = re.search(r"\| \*\*file\*\*[^\n]*\*\*([\d.]+)x\*\*", printed).group(1)
    dense, file_bytes, line_ratio = re.search(r"(\d+) B of tensors -> .*: (\d+) B \(([\d.]+)x\)", printed).groups()
    state = load_file(str(ckpt))
    assert int(dense) == sum(t.numel() * t.element_size() for t in state.values())
    assert int(file_bytes) == out.stat().st_size
    assert table_ratio == line_ratio == f"{int(dense) / out.stat().st_size:.2f}"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".npz"])
def test_decompress_writes_the_format_its_extension_names(tmp_path, capsys, compressed, suffix):
    _, out = compressed
    dense = tmp_path / f"dense{suffix}"
    assert main(["decompress", str(out), "-o", str(dense)]) == 0
    printed = capsys.readouterr().out
    expected = decode_state_dict(out)
    head = dense.read_bytes()[:4]
    if suffix == ".safetensors":
        state = load_file(str(dense))
    elif suffix == ".npz":
        # a numpy archive of .npy members named after the tensors, readable without pickle
        with np.load(dense, allow_pickle=False) as archive:
            state = {k: torch.from_numpy(archive[k]) for k in archive.files}
        assert "1 bfloat16 tensor written as float32" in printed
        assert state["extra.scale"].dtype == torch.float32
        expected["extra.scale"] = expected["extra.scale"].float()  # bfloat16 -> float32 is exact
    else:
        assert head == b"PK\x03\x04"  # torch.save's zip
        state = torch.load(dense, weights_only=True)
        with pytest.raises(Exception):
            load_file(str(dense))
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name


@pytest.mark.parametrize("name", ["dense.bin", "dense.txt", "dense"])
def test_decompress_refuses_an_extension_it_cannot_write(tmp_path, capsys, compressed, name):
    _, out = compressed
    assert main(["decompress", str(out), "-o", str(tmp_path / name)]) == 2
    assert ".safetensors, .pt, .pth, .npz" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_compress_on_a_compressed_file_says_already_compressed(tmp_path, capsys, compressed):
    _, out = compressed
    renamed = tmp_path / "looks_like_a_checkpoint.pt"  # detected by its bytes, not its name
    renamed.write_bytes(out.read_bytes())
    for source in (out, renamed):
        assert main(["compress", str(source), "-o", str(tmp_path / "again.safetensors")]) == 2
        err = capsys.readouterr().err
        assert "already compressed" in err and "matched nothing" not in err
    assert not (tmp_path / "again.safetensors").exists()
    with pytest.raises(SINRAlreadyCompressedError):
        cli._refuse_compressed_input(str(out))


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


@pytest.mark.parametrize("command", ["demo", "compress", "decompress", "info"])
def test_every_option_says_what_it_does_and_its_default(command):
    import argparse

    parser = dict(_subparsers(cli.build_parser()))[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest} has no help text"
        if action.option_strings and action.default is not None and action.default is not False:
            shown = formatter._expand_help(action)  # the text --help prints for this option
            assert "default" in shown, f"{command} {action.option_strings[-1]}: no default in its help: {shown!r}"


def test_info_on_a_bare_file_shows_what_it_can_and_the_table_with_a_skeleton(tmp_path, capsys):
    from torch_sinr import SINRConfig, compress_model, save_compressed

    model = plain_model()
    dense = tmp_path / "dense.pt"
    torch.save(model.state_dict(), dense)
    compress_model(model, SINRConfig(k2=256))
    bare = tmp_path / "bare.safetensors"
    save_compressed(model, bare, names=False)
    # without the model: the header's facts and how to get the rest, not a refusal
    assert main(["info", str(bare)]) == 0
    out = capsys.readouterr().out
    assert f"{bare.stat().st_size} bytes" in out and "bare" in out
    assert f"{len(model.state_dict()) - 2} tensors" in out  # two SINR layers: values + indices stand for one weight
    assert "--skeleton" in out
    # with the dense checkpoint: names, kinds and bytes per tensor, by the skeleton's order
    assert main(["info", str(bare), "--skeleton", str(dense)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| tensor")]
    assert [r.split(" | ")[0][2:] for r in rows] == list(plain_model().state_dict())
    assert sum(" sinr " in r for r in rows) == 2
    # a skeleton of another model is refused by the fingerprint
    other = tmp_path / "other.pt"
    torch.save(nn.Sequential(nn.Linear(3, 8)).state_dict(), other)
    assert main(["info", str(bare), "--skeleton", str(other)]) == 2
    assert "does not match" in capsys.readouterr().err
