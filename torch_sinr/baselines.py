"""Simple baselines SINR must beat, each written as a real file whose bytes are counted.

- ``cast``: every tensor stored as float32 / float16 (COIN-style).
- ``uniform``: every tensor uniformly quantized at b bits with its own range, laid out bit-packed
  or byte-aligned (whichever Brotli codes smaller, per tensor) and Brotli-coded (INRIC-style);
  ``finetune_uniform`` gives it the same quantization-aware fine-tuning that SINR codes get, so
  comparisons stay fair.
- ``prune``: magnitude pruning of the weight matrices (kept fraction), kept values quantized
  at b bits, positions coded like SINR indices (the smallest of fixed / Rice / bitmask).
- ``low_rank``: truncated SVD of each weight matrix at a given rank, factors stored as float32.

All files share one container (safetensors, a ``payload`` tensor and a JSON ``layout``), the
same kind of container SINR uses, so header overhead is comparable. ``read_baseline``
decodes a file into a state_dict: every reported quality is measured on what the file holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .bitstream import tensor_to_bytes, decode_dense
from .codec import entropy
from .codec.bitpack import byte_planes, byte_planes_size, from_byte_planes, pack_uint, packed_size, unpack_uint
from .codec.indices import decode_indices, encode_indices
from .codec.quantization import UniformQuantizer
from .errors import SINRError, SINRFormatError

FORMAT = "torch_sinr.baseline"


def _write(path: str | os.PathLike, entries: list[dict], payload: bytearray) -> int:
    tensor = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else torch.zeros(0, dtype=torch.uint8)
    save_file({"payload": tensor}, str(path), metadata={"format": FORMAT, "layout": json.dumps(entries, separators=(",", ":"))})
    return Path(path).stat().st_size


def _append(payload: bytearray, stream: bytes) -> list[int]:
    entry = [len(payload), len(stream)]
    payload.extend(stream)
    return entry


def _add(payload: bytearray, data: bytes) -> list[int]:
    return _append(payload, entropy.compress(data))


def _add_codes(payload: bytearray, codes: np.ndarray, bits: int) -> dict:
    """Quantized codes in the layout Brotli codes smaller: bit-packed, or byte-aligned (5-7-bit
    codes straddle bytes and code 10-16% larger packed, benchmarks/results/value_layout.md; the
    strongest simple baseline gets the better of the two)."""
    packed = entropy.compress(pack_uint(codes, bits))
    aligned = entropy.compress(byte_planes(codes, bits)) if bits <= 16 else None
    if aligned is not None and len(aligned) < len(packed):
        return {"stream": _append(payload, aligned), "layout": "bytes"}
    return {"stream": _append(payload, packed)}  # no "layout" key: files written before it read the same


def _weight_matrices(state: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in state.items() if v.ndim == 2 and v.is_floating_point() and k.endswith("weight")}


def write_cast(state: dict[str, torch.Tensor], path, dtype: str = "float16") -> int:
    payload, entries = bytearray(), []
    for name, t in state.items():
        entries.append({"name": name, "kind": "cast", "dtype": dtype, "shape": list(t.shape),
                        "stream": _add(payload, tensor_to_bytes(t, dtype))})
    return _write(path, entries, payload)


def write_uniform(state: dict[str, torch.Tensor], path, bits: int,
                  grids: dict[str, UniformQuantizer] | None = None) -> int:
    """``grids`` (from ``finetune_uniform``) keeps fine-tuned values on the grid they were trained on."""
    payload, entries = bytearray(), []
    for name, t in state.items():
        q = grids[name] if grids and name in grids else UniformQuantizer.fit(t, bits)
        codes = q.quantize(t.reshape(-1)).numpy()
        entries.append({"name": name, "kind": "uniform", "bits": bits, "lo": q.lo, "hi": q.hi, "shape": list(t.shape),
                        **_add_codes(payload, codes, bits)})
    return _write(path, entries, payload)


def uniform_round_trip(state: dict[str, torch.Tensor], bits: int) -> dict[str, torch.Tensor]:
    return {k: UniformQuantizer.fit(v, bits).round_trip(v).reshape(v.shape) for k, v in state.items()}


def write_pruned(state: dict[str, torch.Tensor], path, keep: float, bits: int,
                 skip: Callable[[str], bool] = lambda n: False) -> int:
    """Weight matrices (not skipped) keep their ``keep`` fraction of largest magnitudes per row,
    quantized at b bits; everything else is stored uniform at b bits."""
    payload, entries = bytearray(), []
    for name, t in state.items():
        if name not in _weight_matrices(state) or skip(name):
            q = UniformQuantizer.fit(t, bits)
            entries.append({"name": name, "kind": "uniform", "bits": bits, "lo": q.lo, "hi": q.hi, "shape": list(t.shape),
                            **_add_codes(payload, q.quantize(t.reshape(-1)).numpy(), bits)})
            continue
        s = max(1, round(keep * t.shape[1]))
        idx = t.abs().topk(s, dim=1).indices.sort(dim=1).values
        values = t.gather(1, idx)
        q = UniformQuantizer.fit(values, bits)
        coding, param, raw = encode_indices(idx.numpy(), t.shape[1])
        entries.append({"name": name, "kind": "pruned", "bits": bits, "lo": q.lo, "hi": q.hi, "shape": list(t.shape),
                        "s": s, "coding": [coding, param, len(raw)],
                        **_add_codes(payload, q.quantize(values).numpy().ravel(), bits), "index_stream": _add(payload, raw)})
    return _write(path, entries, payload)


def write_low_rank(state: dict[str, torch.Tensor], path, rank: int, skip: Callable[[str], bool] = lambda n: False) -> int:
    """Weight matrices (not skipped) as float32 factors U_k S_k and V_k^T; the rest as float32."""
    payload, entries = bytearray(), []
    for name, t in state.items():
        if name in _weight_matrices(state) and not skip(name) and rank < min(t.shape):
            u, sv, vh = torch.linalg.svd(t.double(), full_matrices=False)
            left, right = (u[:, :rank] * sv[:rank]).float(), vh[:rank].float()
            entries.append({"name": name, "kind": "low_rank", "rank": rank, "shape": list(t.shape),
                            "stream": _add(payload, tensor_to_bytes(left, "float32")),
                            "right_stream": _add(payload, tensor_to_bytes(right, "float32"))})
        else:
            entries.append({"name": name, "kind": "cast", "dtype": "float32", "shape": list(t.shape),
                            "stream": _add(payload, tensor_to_bytes(t, "float32"))})
    return _write(path, entries, payload)


def read_baseline(path) -> dict[str, torch.Tensor]:
    """Decode a baseline file into a float32 state_dict (trusted input: our own benchmark files)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise SINRFormatError(f"{path}: not a baseline file")
        payload = f.get_tensor("payload").numpy().tobytes()
    state = {}

    def stream(entry_range, size, what):
        offset, length = entry_range
        return entropy.decompress(payload[offset : offset + length], size, what)

    def codes(e: dict, count: int) -> np.ndarray:
        layout, bits = e.get("layout", "packed"), e["bits"]
        if layout == "packed":
            return unpack_uint(stream(e["stream"], packed_size(bits, count), e["name"]), bits, count)
        if layout == "bytes" and bits <= 16:
            return from_byte_planes(stream(e["stream"], byte_planes_size(bits, count), e["name"]), bits, count)
        raise SINRFormatError(f"{path}: {e['name']}: unknown code layout {layout!r} for {bits}-bit codes")

    for e in json.loads(meta["layout"]):
        shape, n = tuple(e["shape"]), int(np.prod(e["shape"])) if e["shape"] else 1
        if e["kind"] == "cast":
            state[e["name"]] = decode_dense(payload[e["stream"][0] : sum(e["stream"])], e["dtype"], shape, e["name"]).float()
        elif e["kind"] == "uniform":
            q = UniformQuantizer(e["bits"], e["lo"], e["hi"])
            state[e["name"]] = q.dequantize(torch.from_numpy(codes(e, n))).reshape(shape)
        elif e["kind"] == "pruned":
            q, rows, s = UniformQuantizer(e["bits"], e["lo"], e["hi"]), shape[0], e["s"]
            values = codes(e, rows * s)
            coding, param, raw_size = e["coding"]
            idx = decode_indices(coding, param, stream(e["index_stream"], raw_size, e["name"]), rows, s, shape[1])
            dense = torch.zeros(shape)
            dense.scatter_(1, torch.from_numpy(idx), q.dequantize(torch.from_numpy(values)).reshape(rows, s))
            state[e["name"]] = dense
        elif e["kind"] == "low_rank":
            k = e["rank"]
            left = decode_dense(payload[e["stream"][0] : sum(e["stream"])], "float32", (shape[0], k), e["name"])
            right = decode_dense(payload[e["right_stream"][0] : sum(e["right_stream"])], "float32", (k, shape[1]), e["name"])
            state[e["name"]] = left @ right
        else:
            raise SINRFormatError(f"{path}: unknown kind {e['kind']!r}")
    return state


def finetune_uniform(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], bits: int, steps: int,
                     lr: float = 1e-4) -> tuple[dict[str, torch.Tensor], dict[str, UniformQuantizer]]:
    """Quantization-aware fine-tuning of every parameter on a fixed per-tensor b-bit grid
    (straight-through), the same budget SINR's codes get. Returns the quantized state_dict and
    the grids (pass them to ``write_uniform`` so the file holds exactly these values)."""
    if steps < 0:
        raise SINRError("steps must be >= 0")
    params = dict(model.named_parameters())
    grids = {name: UniformQuantizer.fit(p, bits) for name, p in params.items()}
    latent = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    optimizer = torch.optim.Adam(latent.values(), lr=lr)

    def fake_quantized() -> dict[str, torch.Tensor]:
        return {n: v + (grids[n].round_trip(v).reshape(v.shape) - v).detach() for n, v in latent.items()}

    best_loss, best = float("inf"), None  # keep the best iterate, as finetune_codes does
    for step in range(steps + 1):
        with torch.set_grad_enabled(step < steps):
            loss = loss_fn(_Functional(model, fake_quantized()))
        if loss.item() < best_loss:
            best_loss, best = loss.item(), {n: v.detach().clone() for n, v in latent.items()}
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return {n: grids[n].round_trip(v).reshape(v.shape) for n, v in best.items()}, grids


class _Functional(nn.Module):
    """Calls ``model`` with replacement parameters (torch.func.functional_call), for fake quantization."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._model, self._params = model, params

    def forward(self, *args):
        return torch.func.functional_call(self._model, self._params, args)
