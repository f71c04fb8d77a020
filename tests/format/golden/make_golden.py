"""Writes the golden format-v1 file and its expected decoded tensors. Run once per format
version (``python tests/golden/make_golden.py``); the committed files must never be rewritten
for an existing version: tests/test_golden_format.py checks today's decoder against them."""

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


if __name__ == "__main__":
    model = golden_model()
    compress_model(model, SINRConfig(value_bits=12, dense_dtype="float16", dict_ratio=8))
    save_compressed(model, HERE / "format_v1.safetensors")
    save_file({k: v.contiguous() for k, v in decode_state_dict(HERE / "format_v1.safetensors").items()},
              str(HERE / "format_v1_expected.safetensors"))
