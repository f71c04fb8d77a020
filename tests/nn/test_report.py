"""The compression report's table says only what was measured: one ratio definition (the file's,
container included), per-layer times only where a layer was timed alone, no empty or 0.00x rows."""

import re

import torch
from torch import nn

from torch_sinr import compress_model, save_compressed
from torch_sinr.nn.report import RATIO_NOTE, CompressionReport, LayerReport
from tests.tiny_models import fast_config


def layer(name, seconds=0.5, measured=False, tied_to=None, dense_bytes=16640, coded_bytes=5000):
    return LayerReport(name=name, shape=(64, 64), mode="row", s=29, k2=1024, value_bits=16, index_coding="fixed",
                       params=dense_bytes // 4, dense_bytes=dense_bytes, coded_bytes=coded_bytes, bits_values=1,
                       bits_indices=1, bits_bias=1, rel_error=0.05, seconds=seconds, tied_to=tied_to,
                       seconds_measured=measured)


def report(layers, **fields):
    fields = {"dense_names": ["inp.weight", "inp.bias"], "dense_bytes_other": 1024, "coded_bytes_other": 400,
              "seconds": 2.5, "file_bytes": sum(l.coded_bytes for l in layers) + 400 + 150, **fields}
    return CompressionReport(layers=layers, **fields)


def rows(table):
    return [line for line in table.splitlines() if line.startswith("|")]


def test_batch_average_time_is_not_shown_as_per_layer_time():
    # compress_model codes layers in one batch and gives each the batch average (1.23 s here)
    table = report([layer("a", seconds=1.23), layer("b", seconds=1.23)]).table()
    assert "time" not in rows(table)[0] and "1.23" not in table
    assert "| **file** (compressed in 2.50 s) |" in table
    assert {line.count("|") for line in rows(table)} == {10}  # 9 columns on every row


def test_per_layer_time_where_measured():
    table = report([layer("a", seconds=1.5, measured=True), layer("b", seconds=0.0, tied_to="a", coded_bytes=0,
                                                                  dense_bytes=0)]).table()
    head, _, a, b, *_, file_row = rows(table)
    assert head.endswith("| time (s) |")
    assert a.endswith("| 1.50 |") and b.endswith("| |")  # a tied layer codes nothing, so took no time
    assert file_row.endswith("| 2.50 |")
    assert {line.count("|") for line in rows(table)} == {11}


def test_no_zero_rows_and_no_zero_ratios():
    tied = layer("b", tied_to="a", dense_bytes=0, coded_bytes=0)  # shares a's codes, has no bias
    table = report([layer("a"), tied], dense_names=[], dense_bytes_other=0, coded_bytes_other=0).table()
    assert "other" not in table and "0.00x" not in table
    # tensors left dense but taking no bytes of their own (e.g. all aliases): no row either
    table = report([layer("a")], dense_names=["x"], dense_bytes_other=0, coded_bytes_other=0).table()
    assert "other" not in table and "0.00x" not in table
    table = report([layer("a")], dense_names=["x"], dense_bytes_other=8, coded_bytes_other=4).table()
    assert "| other (1 tensor, not SINR-coded) |" in table and "| 2.00x |" in table


def test_the_table_states_its_ratio_and_its_file_ratio_is_the_files():
    r = report([layer("a"), layer("b")])
    table = r.table()
    assert table.endswith(RATIO_NOTE) and "container included" in RATIO_NOTE
    file_ratio = re.search(r"\*\*file\*\*.*\*\*([\d.]+)x\*\*", table).group(1)
    assert float(file_ratio) == round(r.total_dense_bytes / r.file_bytes, 2) == round(r.ratio, 2)
    # the rows add up to the file
    byte_cells = [int(line.split("|")[7].strip(" *")) for line in rows(table)[2:-1]]
    assert sum(byte_cells) == r.file_bytes


def test_tied_layer_row_from_compress_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64, bias=False), nn.Tanh(),
                          nn.Linear(64, 64, bias=False))
    model[4].weight = model[2].weight
    r = compress_model(model, fast_config())
    assert [l.tied_to for l in r.layers] == [None, "2"]
    table = r.table()
    assert "| 4 (tied to 2) |" in table and "0.00x" not in table
    assert r.file_bytes == save_compressed(model, tmp_path / "m.safetensors").file_bytes
    assert f"**{r.ratio:.2f}x**" in table
