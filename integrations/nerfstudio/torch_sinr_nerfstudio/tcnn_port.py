"""tiny-cuda-nn's encodings and networks, as nerfstudio configures them, in plain PyTorch.

A tcnn module holds all its weights in one flat ``params`` tensor and computes with fused CUDA
kernels: no ``nn.Linear`` to compress, no CPU to render on. The modules here compute the same
function with torch operations, from that same ``params`` tensor (``load_tcnn_params_``), and
write it back (``tcnn_params``): ``TcnnHashGrid`` (tcnn's "HashGrid" encoding),
``TcnnNetwork`` (its "FullyFusedMLP" / "CutlassMLP", whose layers are bias-free ``nn.Linear``
that SINR can code), ``TcnnNetworkWithInputEncoding`` (the two fused) and
``TcnnSphericalHarmonics`` (no parameters).

The rules, read from NVlabs/tiny-cuda-nn (commit 6ee3546; the file and function each comes
from is named; every rule is rewritten here, nothing is copied):

Hash grid (``include/tiny-cuda-nn/encodings/grid.h`` and ``common_device.h``)
- level ``l``'s scale is ``exp2(l * log2(per_level_scale)) * base_resolution - 1`` and its
  resolution ``ceil(scale) + 1`` (common_device.h: ``grid_scale``, ``grid_resolution``), all in
  float32: tcnn reads ``per_level_scale`` from its JSON config as a float and takes ``std::log2``
  of that float (grid.h: the ``GridEncodingTemplated`` constructor and ``forward_impl``);
- a position coordinate ``x`` becomes ``pos = fma(scale, x, 0.5)``; ``floor(pos)`` is the
  lower vertex (cast through int to uint32) and ``pos - floor(pos)`` the weight
  (common_device.h: ``pos_fract``);
- level ``l`` holds ``min(next_multiple(resolution**dims, 8), 2**log2_hashmap_size)`` entries
  (grid.h: the constructor, grid type "Hash"); the level offsets are the running sum of those
  counts, and the parameters are the levels one after the other, each entry's
  ``n_features_per_level`` features together (grid.h: ``kernel_grid`` reads
  ``grid[offset * F + index * F + f]``);
- a vertex's entry (common_device.h: ``grid_index``): with ``stride = resolution**dims``
  (``0xFFFFFFFF`` when ``resolution`` exceeds the per-dims overflow bound ``MAX_BASES``), the
  dense index ``sum_d v[d] * resolution**d`` if the level holds at least ``stride`` entries,
  else tcnn's coherent prime hash, the XOR over ``d`` of ``v[d] * prime[d]`` in uint32 with
  primes ``(1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)``
  (common_device.h: ``coherent_prime_hash`` over ``lcg_hash``); either modulo the level's
  entry count. A dense level's ``+1`` vertex at the far border wraps into the next row, as
  tcnn's does;
- "Linear" interpolation weighs corner ``c`` (bit ``d`` set: upper vertex on axis ``d``) by the
  product over ``d`` of ``pos`` or ``1 - pos``; "Smoothstep" first maps ``pos`` to
  ``pos**2 (3 - 2 pos)``; "Nearest" reads the lower vertex (grid.h: ``kernel_grid``). The
  output is level-major, ``[level * F + f]``;
- padding: a grid feeding a network pads its output with zeros (grid.h: ``forward_impl``).

Networks (``src/fully_fused_mlp.cu``, ``src/cutlass_mlp.cu``, ``src/network.cu``, ``src/cpp_api.cu``,
``include/tiny-cuda-nn/network_with_input_encoding.h``, ``encodings/identity.h``)
- no biases; weight matrices stored row-major ``[out, in]`` (``GPUMatrix<T, RM>``), one after
  the other: ``[n_neurons, padded_in]``, ``n_hidden_layers - 1`` times ``[n_neurons,
  n_neurons]``, ``[padded_out, n_neurons]`` (CutlassMLP with 0 hidden layers: one
  ``[padded_out, padded_in]``); both MLPs align to 16 (``REQUIRED_ALIGNMENT``), so
  ``padded_out = next_multiple(n_output_dims, 16)``; the output activation is applied to every
  output and the padded ones are dropped (the torch binding returns ``[:, :n_output_dims]``);
- ``tcnn.Network`` is a network behind an "Identity" encoding (cpp_api.cu:
  ``create_network``), which pads its input to a multiple of 16 with **ones**: those columns
  act as a bias; ``NetworkWithInputEncoding`` stores the network's parameters first, then the
  encoding's (``set_params_impl``), and its network reads the encoding's padded width;
- "SphericalHarmonics" maps an input ``u`` in [0, 1]^3 to ``2u - 1`` and evaluates the real
  spherical harmonics up to the given degree (``degree**2`` outputs; encodings/
  spherical_harmonics.h and common_device.h: ``sh_enc``). The constants here are computed from
  their closed forms.

Precision: the torch binding keeps float32 master parameters and runs with them cast to its
parameter precision (float16 on every GPU nerfstudio trains on: ``Module.forward`` casts
``params`` before the call). These modules keep the master values exactly (so a round trip is
exact) and, with ``param_dtype=torch.float16``, read them rounded to float16 as tcnn does; the
arithmetic itself is float32 (tcnn's is float16 in its MLPs), hence agreement to about 1e-3,
not bit for bit. A layer coded with SINR is read the same way (its decoded weight rounded to
the parameter precision): that decoded weight is what a decompressed tcnn checkpoint holds, so
the port computes the same function from the compressed file as from the decompressed run.

The padded output rows of a network's last matrix never reach an output: the port does not
keep them, and ``tcnn_params`` writes zeros there (the same function; ``dropped_params``
counts them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_sinr import SINRConfigError, SINRInputError

COHERENT_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
# grid_index's largest resolution per dims whose resolution**dims fits uint32 (index 0 unused)
MAX_BASES = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)
MAX_DENSE_PARAMS = 0xFFFFFFFF // 2  # the constructor's cap on resolution**dims
NETWORK_ALIGNMENT = 16
ENTRY_ALIGNMENT = 8
INTERPOLATIONS = ("Nearest", "Linear", "Smoothstep")
ACTIVATIONS = {"None": None, "ReLU": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}
NETWORK_TYPES = ("FullyFusedMLP", "CutlassMLP")
_MASK32 = 0xFFFFFFFF


def next_multiple(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def _mul32(a: Tensor, b: int | Tensor) -> Tensor:
    """``a * b mod 2**32`` for int64 tensors holding uint32 values, without int64 overflow."""
    low, high = a & 0xFFFF, a >> 16
    return (low * b + (((high * b) & 0xFFFF) << 16)) & _MASK32


def _param_dtype(dtype) -> torch.dtype:
    if dtype in (torch.float16, "float16", "half"):
        return torch.float16
    if dtype in (torch.float32, "float32", "float"):
        return torch.float32
    raise SINRConfigError(f"tcnn parameter precision must be float16 or float32, got {dtype!r}")


def _flat_params(params: Tensor, expected: int, what: str) -> Tensor:
    if not isinstance(params, Tensor) or not params.is_floating_point():
        raise SINRInputError(f"{what}: tcnn params must be a floating-point tensor, got "
                             f"{type(params).__name__ if not isinstance(params, Tensor) else params.dtype}")
    flat = params.detach().reshape(-1)
    if flat.numel() != expected:
        raise SINRInputError(f"{what}: tcnn params hold {flat.numel()} values, this configuration has {expected} "
                             f"(was the checkpoint trained with another configuration?)")
    if not torch.isfinite(flat).all():
        raise SINRInputError(f"{what}: tcnn params contain NaN or Inf")
    return flat


# ----------------------------------------------------------------------------- hash grid
@dataclass(frozen=True)
class GridLevel:
    scale: float  # float32 value, held as a Python float
    resolution: int
    entries: int  # table rows of this level
    offset: int  # first row of this level
    hashed: bool  # grid_index hashes (else the dense, possibly wrapping, index)


@dataclass(frozen=True)
class TcnnGridConfig:
    """tcnn's "HashGrid" encoding config (the keys nerfstudio's ``get_tcnn_encoding_config`` writes)."""

    n_input_dims: int = 3
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 2.0
    interpolation: str = "Linear"

    def __post_init__(self) -> None:
        if self.n_input_dims not in (2, 3):
            raise SINRConfigError(f"the tcnn grid port covers 2-D and 3-D inputs, got n_input_dims={self.n_input_dims}")
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise SINRConfigError(f"tcnn grids have 1, 2, 4 or 8 features per level, got {self.n_features_per_level}")
        if not 1 <= self.n_levels <= 128 or not 1 <= self.log2_hashmap_size <= 31 or self.base_resolution < 1:
            raise SINRConfigError(f"bad tcnn grid config: {self}")
        if not (math.isfinite(self.per_level_scale) and self.per_level_scale > 0):
            raise SINRConfigError(f"per_level_scale must be a finite number > 0, got {self.per_level_scale!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise SINRConfigError(f"tcnn grid interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}")

    @classmethod
    def from_tcnn(cls, n_input_dims: int, config: dict) -> "TcnnGridConfig":
        """From a tcnn encoding config dict (as nerfstudio builds it); refuses what the port does not cover."""
        otype = config.get("otype", "")
        if otype.lower() not in ("hashgrid", "grid") or config.get("type", "Hash") != "Hash":
            raise SINRConfigError(f"the tcnn port covers hash grids (otype 'HashGrid'), not {config!r}")
        if config.get("hash", "CoherentPrime") != "CoherentPrime" or config.get("stochastic_interpolation"):
            raise SINRConfigError(f"the tcnn port covers the coherent prime hash without stochastic interpolation, "
                                  f"not {config!r}")
        return cls(n_input_dims=n_input_dims, n_levels=int(config.get("n_levels", 16)),
                   n_features_per_level=int(config.get("n_features_per_level", 2)),
                   log2_hashmap_size=int(config.get("log2_hashmap_size", 19)),
                   base_resolution=int(config.get("base_resolution", 16)),
                   per_level_scale=float(config.get("per_level_scale", 2.0)),
                   interpolation=str(config.get("interpolation", "Linear")))

    @cached_property
    def levels(self) -> tuple[GridLevel, ...]:
        dims = self.n_input_dims
        # float32 throughout, as tcnn: the JSON value read as a float, std::log2 of that float,
        # level * log2 in float, exp2f, times the base resolution, minus one.
        log2_scale = np.log2(np.float32(self.per_level_scale))
        out, offset = [], 0
        for level in range(self.n_levels):
            scale = np.exp2(np.float32(level) * log2_scale) * np.float32(self.base_resolution) - np.float32(1.0)
            resolution = int(math.ceil(float(scale))) + 1
            dense = MAX_DENSE_PARAMS if float(resolution) ** dims > MAX_DENSE_PARAMS else resolution**dims
            entries = min(next_multiple(dense, ENTRY_ALIGNMENT), 2**self.log2_hashmap_size)
            stride = resolution**dims if resolution <= MAX_BASES[dims] else _MASK32
            out.append(GridLevel(float(scale), resolution, entries, offset, entries < stride))
            offset += entries
        return tuple(out)

    @property
    def entries(self) -> int:
        return sum(level.entries for level in self.levels)

    @property
    def n_params(self) -> int:
        return self.entries * self.n_features_per_level

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level


def grid_entry_index(config: TcnnGridConfig, level: GridLevel, vertices: Tensor) -> Tensor:
    """Row (within its level) of integer vertices ``(..., dims)`` (int64 holding uint32 values)."""
    v = vertices & _MASK32
    if level.hashed:
        index = _mul32(v[..., 0], COHERENT_PRIMES[0])
        for d in range(1, config.n_input_dims):
            index = index ^ _mul32(v[..., d], COHERENT_PRIMES[d])
    else:
        index = torch.zeros_like(v[..., 0])
        stride = 1
        for d in range(config.n_input_dims):
            index = (index + _mul32(v[..., d], stride)) & _MASK32
            stride *= level.resolution
    return index % level.entries


class TcnnHashGrid(nn.Module):
    """tcnn's HashGrid encoding (see the module docstring): ``(N, dims)`` in [0, 1] -> ``(N, levels * F)``.

    ``hash_table`` ``(entries, F)`` is tcnn's ``params`` tensor viewed entry by entry (float32
    master values); the forward reads it rounded to ``param_dtype``.
    """

    def __init__(self, config: TcnnGridConfig, param_dtype=torch.float16) -> None:
        super().__init__()
        self.config = config
        self.param_dtype = _param_dtype(param_dtype)
        self.hash_table = nn.Parameter(torch.zeros(config.entries, config.n_features_per_level))
        levels = config.levels
        dims = config.n_input_dims
        # per-level constants of tcnn's grid_index (not state: they follow from the config)
        for name, values, dtype in (
                ("_scales", [lv.scale for lv in levels], torch.float32),
                ("_strides", [[lv.resolution**d for d in range(dims)] for lv in levels], torch.int64),
                ("_hashed", [lv.hashed for lv in levels], torch.bool),
                ("_entries", [lv.entries for lv in levels], torch.int64),
                ("_offsets", [lv.offset for lv in levels], torch.int64)):
            self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

    @property
    def n_params(self) -> int:
        return self.config.n_params

    @property
    def n_output_dims(self) -> int:
        return self.config.n_output_dims

    def level_entries(self) -> list[int]:
        return [level.entries for level in self.config.levels]

    @torch.no_grad()
    def load_tcnn_params_(self, params: Tensor) -> "TcnnHashGrid":
        flat = _flat_params(params, self.n_params, "HashGrid")
        self.hash_table.copy_(flat.to(self.hash_table.dtype).view_as(self.hash_table))
        return self

    def tcnn_params(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.hash_table.detach().reshape(-1).to(dtype)

    def table(self) -> Tensor:
        """The table the forward reads (through its stored steps while trained quantization-aware)."""
        from .fast_hash import fake_quantized_table

        return fake_quantized_table(self)

    def forward(self, x: Tensor) -> Tensor:
        config = self.config
        if x.dim() < 1 or x.shape[-1] != config.n_input_dims:
            raise SINRInputError(f"TcnnHashGrid expects (..., {config.n_input_dims}) positions, got {tuple(x.shape)}")
        lead, dims = x.shape[:-1], config.n_input_dims
        x = x.reshape(-1, dims).float()
        table, rounded = self._readable(self.table(), x.shape[0])
        # every level at once: (N, L, dims); fma(scale, x, 0.5) rounds once, emulated in float64
        pos = (x.double()[:, None, :] * self._scales.double()[None, :, None] + 0.5).float()
        lower = torch.floor(pos)
        frac = pos - lower
        base = lower.long() & _MASK32  # tcnn's (uint32)(int)floor(pos)
        if config.interpolation == "Smoothstep":
            frac = frac * frac * (3.0 - 2.0 * frac)
        if config.interpolation == "Nearest":
            return self._gather(table, base, rounded).reshape(*lead, config.n_output_dims)
        out = 0.0
        for corner in range(2**dims):
            bits = [(corner >> d) & 1 for d in range(dims)]
            weight = frac[..., 0] if bits[0] else 1.0 - frac[..., 0]
            for d in range(1, dims):
                weight = weight * (frac[..., d] if bits[d] else 1.0 - frac[..., d])
            vertices = (base + torch.tensor(bits, device=x.device)) & _MASK32
            out = out + weight[..., None] * self._gather(table, vertices, rounded)
        return out.reshape(*lead, config.n_output_dims)

    def _gather(self, table: Tensor, vertices: Tensor, rounded: bool) -> Tensor:
        """Features ``(N, L, F)`` of vertices ``(N, L, dims)`` (one per level), at the parameter precision."""
        values = table[self._level_rows(vertices)]
        if not rounded:
            values = values.to(self.param_dtype).to(torch.float32)
        return values

    def _readable(self, table: Tensor, points: int) -> tuple[Tensor, bool]:
        """``(table, rounded)``: the table rounded whole to the parameter precision when that is
        cheaper than rounding every gathered value (then ``_gather`` does)."""
        if self.param_dtype == torch.float32:
            return table, True
        if table.numel() < points * 2**self.config.n_input_dims * self.config.n_output_dims:
            return table.to(self.param_dtype).to(table.dtype), True
        return table, False

    def _level_rows(self, vertices: Tensor) -> Tensor:
        """tcnn's ``grid_index`` for every level at once, plus the level offsets: table rows ``(N, L)``."""
        dims = self.config.n_input_dims
        dense = (vertices * self._strides).sum(-1) & _MASK32
        # int64 products of uint32 values wrap past 2**63 in two's complement: the low 32 bits,
        # all the hash keeps, are exact
        hashed = (vertices[..., 0] * COHERENT_PRIMES[0]) & _MASK32
        for d in range(1, dims):
            hashed = hashed ^ ((vertices[..., d] * COHERENT_PRIMES[d]) & _MASK32)
        index = torch.where(self._hashed, hashed, dense)
        return index % self._entries + self._offsets

    @torch.no_grad()
    def reachable_entries(self) -> Tensor:
        """Bool mask over the table's rows: True where a position in [0, 1]^dims reads the row
        (with any interpolation weight). Level ``l``'s positions reach vertices ``0 ..
        floor(scale + 0.5) + 1`` per axis; levels with many more vertices than rows are taken
        as fully read (a row is missed with probability under e**-16)."""
        config = self.config
        mask = torch.zeros(config.entries, dtype=torch.bool)
        for level in config.levels:
            side = int(math.floor(level.scale + 0.5)) + 2
            if side**config.n_input_dims > 16 * level.entries:
                mask[level.offset:level.offset + level.entries] = True
                continue
            axis = torch.arange(side)
            plane = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
            slices = [plane] if config.n_input_dims == 2 else [
                torch.cat([plane, torch.full((plane.shape[0], 1), z)], dim=1) for z in range(side)]
            for vertices in slices:
                mask[grid_entry_index(config, level, vertices) + level.offset] = True
        return mask

    def extra_repr(self) -> str:
        return f"{self.config}, param_dtype={self.param_dtype}"


# ----------------------------------------------------------------------------- networks
@dataclass(frozen=True)
class TcnnNetworkConfig:
    """tcnn's "FullyFusedMLP" / "CutlassMLP" config (the keys nerfstudio's ``get_tcnn_network_config`` writes)."""

    n_input_dims: int
    n_output_dims: int
    n_neurons: int = 64
    n_hidden_layers: int = 1
    activation: str = "ReLU"
    output_activation: str = "None"
    otype: str = "FullyFusedMLP"
    # the value tcnn pads the input with: 1 behind tcnn.Network's Identity encoding, 0 behind a grid
    input_padding: float = 1.0

    def __post_init__(self) -> None:
        if self.otype not in NETWORK_TYPES:
            raise SINRConfigError(f"the tcnn port covers {NETWORK_TYPES}, not {self.otype!r}")
        for name in (self.activation, self.output_activation):
            if name not in ACTIVATIONS:
                raise SINRConfigError(f"the tcnn port covers the activations {tuple(ACTIVATIONS)}, not {name!r}")
        if self.n_input_dims < 1 or self.n_output_dims < 1 or self.n_neurons < 1:
            raise SINRConfigError(f"bad tcnn network config: {self}")
        if self.n_hidden_layers < (1 if self.otype == "FullyFusedMLP" else 0):
            raise SINRConfigError(f"{self.otype} needs at least {1 if self.otype == 'FullyFusedMLP' else 0} hidden "
                                  f"layers, got {self.n_hidden_layers}")
        if self.otype == "FullyFusedMLP" and self.n_neurons not in (16, 32, 64, 128):
            raise SINRConfigError(f"FullyFusedMLP has 16, 32, 64 or 128 neurons, got {self.n_neurons}")

    @classmethod
    def from_tcnn(cls, n_input_dims: int, n_output_dims: int, config: dict,
                  input_padding: float) -> "TcnnNetworkConfig":
        return cls(n_input_dims=n_input_dims, n_output_dims=n_output_dims, n_neurons=int(config.get("n_neurons", 128)),
                   n_hidden_layers=int(config.get("n_hidden_layers", 5)),
                   activation=str(config.get("activation", "ReLU")),
                   output_activation=str(config.get("output_activation", "None")),
                   otype=str(config.get("otype", "FullyFusedMLP")), input_padding=input_padding)

    @property
    def padded_input(self) -> int:
        return next_multiple(self.n_input_dims, NETWORK_ALIGNMENT)

    @property
    def padded_output(self) -> int:
        return next_multiple(self.n_output_dims, NETWORK_ALIGNMENT)

    def matrix_shapes(self) -> list[tuple[int, int]]:
        """tcnn's weight matrices, ``(out, in)``, in params order (padded output rows included)."""
        if self.n_hidden_layers == 0:
            return [(self.padded_output, self.padded_input)]
        return ([(self.n_neurons, self.padded_input)] + [(self.n_neurons, self.n_neurons)] * (self.n_hidden_layers - 1)
                + [(self.padded_output, self.n_neurons)])

    @property
    def n_params(self) -> int:
        return sum(o * i for o, i in self.matrix_shapes())


class TcnnNetwork(nn.Module):
    """tcnn's MLP: ``layers`` are bias-free ``nn.Linear`` (the last without tcnn's padded output rows)."""

    def __init__(self, config: TcnnNetworkConfig, param_dtype=torch.float16) -> None:
        super().__init__()
        self.config = config
        self.param_dtype = _param_dtype(param_dtype)
        shapes = config.matrix_shapes()
        shapes[-1] = (config.n_output_dims, shapes[-1][1])
        self.layers = nn.ModuleList([nn.Linear(i, o, bias=False) for o, i in shapes])
        for layer in self.layers:
            nn.init.zeros_(layer.weight)

    @property
    def n_params(self) -> int:
        return self.config.n_params

    @property
    def dropped_params(self) -> int:
        """tcnn parameters the port does not keep (padded output rows, which reach no output)."""
        return (self.config.padded_output - self.config.n_output_dims) * self.config.matrix_shapes()[-1][1]

    @torch.no_grad()
    def load_tcnn_params_(self, params: Tensor) -> "TcnnNetwork":
        flat = _flat_params(params, self.n_params, self.config.otype)
        start = 0
        for layer, (out, inp) in zip(self.layers, self.config.matrix_shapes()):
            matrix = flat[start:start + out * inp].view(out, inp)
            layer.weight.copy_(matrix[:layer.out_features].to(layer.weight.dtype))
            start += out * inp
        return self

    def tcnn_params(self, dtype: torch.dtype = torch.float32) -> Tensor:
        parts = []
        for layer, (out, inp) in zip(self.layers, self.config.matrix_shapes()):
            weight = _weight_of(layer).detach().to(dtype)
            if weight.shape[0] < out:  # the padded output rows: zeros, the same function
                weight = torch.cat([weight, weight.new_zeros(out - weight.shape[0], inp)])
            parts.append(weight.reshape(-1))
        return torch.cat(parts)

    def forward(self, x: Tensor) -> Tensor:
        config = self.config
        if x.dim() < 1 or x.shape[-1] != config.n_input_dims:
            raise SINRInputError(f"TcnnNetwork expects (..., {config.n_input_dims}) inputs, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, config.n_input_dims).float()
        if config.padded_input > config.n_input_dims:
            x = F.pad(x, (0, config.padded_input - config.n_input_dims), value=config.input_padding)
        hidden, output = ACTIVATIONS[config.activation], ACTIVATIONS[config.output_activation]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            # a coded layer (SINRLinear) too: its decoded weight is what goes back into tcnn's params
            # (ns-sinr-decompress), which tcnn reads at its parameter precision like any other
            x = F.linear(x, self._rounded(_weight_of(layer)))
            activation = output if i == last else hidden
            if activation is not None:
                x = activation(x)
        return x.view(*lead, config.n_output_dims)

    def _rounded(self, weight: Tensor) -> Tensor:
        if self.param_dtype == torch.float32:
            return weight
        return weight.to(self.param_dtype).to(weight.dtype)

    def extra_repr(self) -> str:
        return f"{self.config}, param_dtype={self.param_dtype}"


def _weight_of(layer: nn.Module) -> Tensor:
    weight = layer.weight
    return weight() if callable(weight) else weight


class TcnnNetworkWithInputEncoding(nn.Module):
    """tcnn's NetworkWithInputEncoding of a hash grid: ``network(encoding(x))``; params: network's, then grid's."""

    def __init__(self, encoding: TcnnHashGrid, network: TcnnNetwork) -> None:
        super().__init__()
        if network.config.n_input_dims != encoding.n_output_dims or network.config.input_padding != 0.0:
            raise SINRConfigError("a grid-encoded tcnn network reads the grid's outputs, padded with zeros")
        self.encoding = encoding
        self.network = network

    @property
    def n_params(self) -> int:
        return self.network.n_params + self.encoding.n_params

    @torch.no_grad()
    def load_tcnn_params_(self, params: Tensor) -> "TcnnNetworkWithInputEncoding":
        flat = _flat_params(params, self.n_params, "NetworkWithInputEncoding")
        self.network.load_tcnn_params_(flat[:self.network.n_params])
        self.encoding.load_tcnn_params_(flat[self.network.n_params:])
        return self

    def tcnn_params(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.cat([self.network.tcnn_params(dtype), self.encoding.tcnn_params(dtype)])

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self.encoding(x))


# ----------------------------------------------------------------------------- spherical harmonics
def _sh_basis(x: Tensor, y: Tensor, z: Tensor, degree: int) -> list[Tensor]:
    """Real spherical harmonics, tcnn's order and signs, up to ``degree`` (1..4: ``degree**2`` terms)."""
    pi = math.pi
    c0 = 1 / (2 * math.sqrt(pi))
    out = [torch.full_like(x, c0)]
    if degree > 1:
        c1 = math.sqrt(3) / (2 * math.sqrt(pi))
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree > 2:
        c2 = math.sqrt(15) / (2 * math.sqrt(pi))
        out += [c2 * x * y, -c2 * y * z, math.sqrt(5) / (4 * math.sqrt(pi)) * (3 * z * z - 1), -c2 * x * z,
                math.sqrt(15) / (4 * math.sqrt(pi)) * (x * x - y * y)]
    if degree > 3:
        c70 = math.sqrt(70) / (8 * math.sqrt(pi))
        c42 = math.sqrt(42) / (8 * math.sqrt(pi))
        out += [c70 * y * (y * y - 3 * x * x), math.sqrt(105) / (2 * math.sqrt(pi)) * x * y * z,
                c42 * y * (1 - 5 * z * z), math.sqrt(7) / (4 * math.sqrt(pi)) * z * (5 * z * z - 3),
                c42 * x * (1 - 5 * z * z), math.sqrt(105) / (4 * math.sqrt(pi)) * z * (x * x - y * y),
                c70 * x * (3 * y * y - x * x)]
    return out


class TcnnSphericalHarmonics(nn.Module):
    """tcnn's "SphericalHarmonics" encoding: ``(N, 3)`` in [0, 1]^3 -> ``(N, degree**2)`` (no parameters)."""

    n_params = 0

    def __init__(self, degree: int = 4) -> None:
        super().__init__()
        if not 1 <= degree <= 4:
            raise SINRConfigError(f"the tcnn port covers spherical harmonics of degree 1..4, got {degree}")
        self.degree = degree

    def load_tcnn_params_(self, params: Tensor) -> "TcnnSphericalHarmonics":
        _flat_params(params, 0, "SphericalHarmonics")
        return self

    def tcnn_params(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.zeros(0, dtype=dtype)

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() < 1 or u.shape[-1] != 3:
            raise SINRInputError(f"TcnnSphericalHarmonics expects (..., 3) inputs, got {tuple(u.shape)}")
        v = u.float() * 2.0 - 1.0
        return torch.stack(_sh_basis(v[..., 0], v[..., 1], v[..., 2], self.degree), dim=-1)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"


__all__ = ["TcnnGridConfig", "TcnnHashGrid", "TcnnNetwork", "TcnnNetworkConfig", "TcnnNetworkWithInputEncoding",
           "TcnnSphericalHarmonics", "grid_entry_index", "next_multiple"]
