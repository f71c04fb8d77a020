"""Writes the golden file of each format version and its expected decoded tensors. Run once per
format version (``python -m tests.format.golden.make_golden``); files that exist are never
rewritten: tests/format/test_golden.py checks today's decoder (and writer) against them."""

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from torch_sinr import SINRConfig, compress_model
from torch_sinr.serialization import decode_state_dict, save_compressed

HERE = Path(__file__).parent


def golden_model() -> nn.Module:
    torch.manual_seed(1234)
    # input layer (dense), two per-row layers (fan-in 56), two flattened "tiny" layers (fan-in 20)
    return nn.Sequential(nn.Linear(2, 56), nn.Tanh(), nn.Linear(56, 56), nn.Tanh(), nn.Linear(56, 20),
                         nn.Tanh(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 3))


# Format 2: range-coded and Brotli symbols both occur (12-bit values, 8-bit dense tensors)
V2_CONFIG = SINRConfig(value_bits=12, dense_bits=8, dict_ratio=8, s_ratio=0.45)  # s pinned: the default moved to 0.5


def write(version: int) -> None:
    path = HERE / f"format_v{version}.safetensors"
    if path.exists():
        raise SystemExit(f"{path} exists: golden files are never rewritten")
    model = golden_model()
    if version == 1:
        compress_model(model, SINRConfig(value_bits=12, dense_dtype="float16", dict_ratio=8, s_ratio=0.45))
    else:
        compress_model(model, V2_CONFIG)
    save_compressed(model, path, format_version=version)
    save_file({k: v.contiguous() for k, v in decode_state_dict(path).items()},
              str(HERE / f"format_v{version}_expected.safetensors"))


if __name__ == "__main__":
    write(2)
