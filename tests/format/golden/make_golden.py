"""Writes the golden file of each format version (and of each coding kind added since) and its
expected decoded tensors. ``python -m tests.format.golden.make_golden`` writes the ones that do not
exist yet; files that exist are never rewritten: tests/format/test_golden.py checks today's decoder
(and writer) against them."""

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from torch_sinr import SINRConfig, compress_model
from torch_sinr.format import decode_state_dict, save_compressed

HERE = Path(__file__).parent


def golden_model() -> nn.Module:
    torch.manual_seed(1234)
    # input layer (dense), two per-row layers (fan-in 56), two flattened "tiny" layers (fan-in 20)
    return nn.Sequential(nn.Linear(2, 56), nn.Tanh(), nn.Linear(56, 56), nn.Tanh(), nn.Linear(56, 20),
                         nn.Tanh(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 3))


# Format 2: range-coded and Brotli symbols both occur (12-bit values, 8-bit dense tensors)
V2_CONFIG = SINRConfig(value_bits=12, dense_bits=8, dict_ratio=8, s_ratio=0.45)  # s pinned: the default moved to 0.5


class IntegersModel(nn.Module):
    """A coded MLP plus integer-stored tensors: hash-grid-style latents (a discrete Laplace,
    range-coded), a constant column (one symbol, no coded bits) and an empty tensor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4321)
        self.mlp = nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))
        g = torch.Generator().manual_seed(4321)
        # a difference of two geometric variables is discrete-Laplace distributed
        u = torch.rand(2, 400, 2, generator=g, dtype=torch.float64)
        geometric = torch.floor(torch.log1p(-u) / torch.log(torch.tensor(0.7, dtype=torch.float64)))
        self.latents = nn.Parameter((geometric[0] - geometric[1]).float())
        self.constant = nn.Parameter(torch.full((7,), -3.0))
        self.empty = nn.Parameter(torch.zeros(0, 4))

    def forward(self, x):
        return self.mlp(x)


def integers_model() -> nn.Module:
    from torch_sinr.nn.storage import INTEGER_STORAGE, set_storage

    model = IntegersModel()
    for name in ("latents", "constant", "empty"):
        set_storage(model, name, INTEGER_STORAGE)
    return model


def write_kind(name: str, factory) -> None:
    """Format 2 with a kind added since: ``name``.safetensors from ``factory()``, and its
    expected decoded tensors."""
    path = HERE / f"{name}.safetensors"
    if path.exists():
        raise SystemExit(f"{path} exists: golden files are never rewritten")
    model = factory()
    compress_model(model, V2_CONFIG)
    save_compressed(model, path)
    save_file({k: v.contiguous() for k, v in decode_state_dict(path).items()}, str(HERE / f"{name}_expected.safetensors"))


class SteppedModel(nn.Module):
    """A coded MLP plus a hash-table-like tensor stored ``stepped``: three groups of rows (levels)
    with their own steps; the first group mostly zeros (rows a renderer never reads)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2468)
        self.mlp = nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))
        g = torch.Generator().manual_seed(2468)
        table = torch.randn(260, 2, generator=g) * torch.tensor([0.02, 0.1])
        table[:60] *= (torch.rand(60, 1, generator=g) < 0.1).float()
        self.table = nn.Parameter(table)

    def forward(self, x):
        return self.mlp(x)


STEPPED_ROWS, STEPPED_STEPS = (100, 120, 40), (0.004, 0.01, 0.0025)


def stepped_model() -> nn.Module:
    from torch_sinr.core.quantization import StepQuantizer
    from torch_sinr.nn.storage import round_to_storage, set_storage

    model = SteppedModel()
    quantizer = StepQuantizer.per_group(STEPPED_ROWS, STEPPED_STEPS)
    with torch.no_grad():
        model.table.copy_(round_to_storage(model.table, quantizer))
    set_storage(model, "table", quantizer)
    return model


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


WRITERS = {"format_v1.safetensors": lambda: write(1), "format_v2.safetensors": lambda: write(2),
           "format_v2_integers.safetensors": lambda: write_kind("format_v2_integers", integers_model),  # kind 4
           "format_v2_stepped.safetensors": lambda: write_kind("format_v2_stepped", stepped_model)}  # kind 5


if __name__ == "__main__":
    for name, writer in WRITERS.items():
        if not (HERE / name).exists():
            writer()
            print(f"wrote {name}")
