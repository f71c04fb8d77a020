"""Coding any 2-D tensor as SINR codes, and decoding it back.

A tensor (out, in) is cut into vectors of length k1: its rows (``mode="row"``, k1 = in, the
paper's per-node coding) or the whole flattened matrix (``mode="flat"``, k1 = out * in, the
paper's "tiny INR" coding, used in ``mode="auto"`` when both dimensions are below 50). Each vector is coded as s (index, value) pairs
against the seeded dictionary A (k1 x k2); values are quantized at coding time, so what a
``CodedTensor`` decodes to in memory is exactly what its file decodes to.

This is the layer-independent core: ``SINRLinear`` is built on it, and so can be the coding of
other tensors (COIN++ latent modulations, hash-grid latents).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch

from ..errors import SINRConfigError, SINRInputError
from .coders import CODER_NAMES, get_coder
from .dictionary import DictionarySpec, default_k2, get_dictionary, used_atoms
from .quantization import UniformQuantizer
from .sparsity import DEFAULT_S_RATIO, auto_sparsity, max_sparsity, sparsity_for_error

MODES = ("row", "flat")
CODERS = CODER_NAMES  # a live view of the coder registry (torch_sinr.core.coders.register_coder)
DEFAULT_DICT_RATIO = 16  # the paper's k2 = 16 k1; the library default is dictionary.default_k2
DEFAULT_FLATTEN_BELOW = 50


@dataclass(frozen=True)
class CodeSpec:
    """What a coded tensor is, apart from its index/value tensors."""

    shape: tuple[int, int]
    mode: str
    s: int
    dictionary: DictionarySpec
    quantizer: UniformQuantizer

    @property
    def k1(self) -> int:
        return self.dictionary.k1

    @property
    def k2(self) -> int:
        return self.dictionary.k2

    @property
    def n_vectors(self) -> int:
        return self.shape[0] if self.mode == "row" else 1

    def __post_init__(self) -> None:
        out, inp = self.shape
        if self.mode not in MODES:
            raise SINRConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        expected_k1 = inp if self.mode == "row" else out * inp
        if self.dictionary.k1 != expected_k1:
            raise SINRConfigError(f"{self.mode} mode on shape {self.shape} needs k1={expected_k1}, got {self.k1}")
        if not 1 <= self.s <= min(self.k1, self.k2):
            raise SINRConfigError(f"s must be in [1, min(k1, k2)={min(self.k1, self.k2)}], got {self.s}")


def decode_codes(indices: torch.Tensor, values: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """(n, k1) vectors from (n, s) codes: X @ A^T with X a sparse CSR (n, k2) matrix.

    Differentiable with respect to ``values`` (used by post-compression fine-tuning).
    """
    return decode_with_atoms(indices, values, dictionary.t().contiguous())


def decode_with_atoms(indices: torch.Tensor, values: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """``decode_codes`` given the atoms as rows (k2, k1), e.g. the cached ``get_atoms``."""
    n, s = indices.shape
    k2 = atoms.shape[0]
    crow = torch.arange(0, n * s + 1, s, device=indices.device, dtype=torch.int64)
    with warnings.catch_warnings():
        # CSR is "beta" in torch; we rely only on construction and sparse.mm, both tested here.
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        sparse = torch.sparse_csr_tensor(
            crow, indices.reshape(-1), values.reshape(-1), (n, k2), check_invariants=False
        )
        return torch.sparse.mm(sparse, atoms.to(values.dtype))


@dataclass
class CodedTensor:
    """The SINR codes of one 2-D tensor: sorted indices (int64) and dequantized values (float32)."""

    spec: CodeSpec
    indices: torch.Tensor  # (n_vectors, s)
    values: torch.Tensor  # (n_vectors, s)

    def decode(self) -> torch.Tensor:
        """The dense (out, in) float32 tensor these codes stand for."""
        atoms, local = used_atoms(self.spec.dictionary, self.indices.to(self.values.device))
        return decode_with_atoms(local, self.values, atoms).reshape(self.spec.shape)

    def quantized_codes(self) -> torch.Tensor:
        return self.spec.quantizer.quantize(self.values)


def resolve_mode(shape: tuple[int, int], mode: str, flatten_below: int) -> str:
    if mode == "auto":
        # "Tiny" means fewer than ``flatten_below`` neurons on both sides, as in the paper's tiny
        # INRs. Fan-in alone is not enough: a wide layer with a short fan-in (300 x 42, the input
        # of a ReLU+PE network) would flatten to 12,600 and need a 12,600 x 201,600 dictionary.
        return "flat" if max(shape) < flatten_below else "row"
    if mode not in MODES:
        raise SINRConfigError(f"mode must be 'auto' or one of {MODES}, got {mode!r}")
    return mode


def _check_tensor(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise SINRInputError(f"{name}: SINR codes 2-D tensors, got {shape}")
    if not tensor.is_floating_point():
        raise SINRInputError(f"{name}: needs a floating point tensor, got {tensor.dtype}")
    if tensor.numel() == 0:
        raise SINRInputError(f"{name}: cannot code an empty tensor of shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise SINRInputError(f"{name}: tensor of shape {tuple(tensor.shape)} has {bad} NaN/Inf entries")


def encode_tensor(tensor: torch.Tensor, **options) -> CodedTensor:
    """Code one 2-D tensor; see :func:`encode_tensors` for the options."""
    return encode_tensors([tensor], **options)[0]


def encode_tensors(
    tensors: list[torch.Tensor],
    *,
    s: int | list[int | None] | None = None,
    s_ratio: float = DEFAULT_S_RATIO,
    target_error: float | None = None,
    k2: int | None = None,
    dict_ratio: int | None = None,
    seed: int = 0,
    mode: str = "auto",
    flatten_below: int = DEFAULT_FLATTEN_BELOW,
    coder: str = "omp",
    value_bits: int | list[int] = 16,
    names: list[str] | None = None,
) -> list[CodedTensor]:
    """Code 2-D tensors. Per tensor, s is explicit (an int, or a list with one entry per tensor),
    or chosen to meet ``target_error`` (relative Frobenius error of the unquantized codes), or
    ``ceil(s_ratio * k1)`` capped at 2s < k1. k2 is ``k2``, else ``dict_ratio * k1``, else
    ``dictionary.default_k2(k1)`` (2**16 atoms, the paper's 16-bit indices).

    Tensors that share a dictionary and s are coded in one batched OMP call. Each tensor gets
    its own quantization range (``value_bits``: one int, or a list with one entry per tensor).
    Coding runs on each tensor's device.
    """
    names = names or [f"tensor {i}" for i in range(len(tensors))]
    per_tensor_s = s if isinstance(s, list) else [s] * len(tensors)
    per_tensor_bits = value_bits if isinstance(value_bits, list) else [value_bits] * len(tensors)
    if len(per_tensor_s) != len(tensors) or len(per_tensor_bits) != len(tensors):
        raise SINRConfigError(f"s and value_bits lists need one entry per tensor ({len(tensors)})")
    if coder not in CODERS:
        raise SINRConfigError(f"coder must be one of {CODERS}, got {coder!r}")
    coder_fn = get_coder(coder)
    plans = []
    for tensor, name, s_i in zip(tensors, names, per_tensor_s):
        _check_tensor(tensor, name)
        shape = (int(tensor.shape[0]), int(tensor.shape[1]))
        tensor_mode = resolve_mode(shape, mode, flatten_below)
        vectors = tensor.detach().reshape(shape[0] if tensor_mode == "row" else 1, -1).double()
        k1 = vectors.shape[1]
        atoms = int(k2) if k2 is not None else dict_ratio * k1 if dict_ratio is not None else default_k2(k1)
        dict_spec = DictionarySpec(seed=seed, k1=k1, k2=atoms)
        a = get_dictionary(dict_spec, tensor.device)
        if s_i is None:
            s_i = sparsity_for_error(a, vectors, target_error) if target_error is not None else auto_sparsity(k1, s_ratio)
        elif not 1 <= s_i <= min(k1, dict_spec.k2):
            raise SINRConfigError(f"{name}: s={s_i} is out of range for vectors of length {k1} "
                                  f"(1..{min(k1, dict_spec.k2)})")
        plans.append((shape, tensor_mode, vectors, dict_spec, s_i))

    raw: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # tensor -> sorted indices, float32 values
    keys = {i: _memo_key(plan, coder_fn) for i, plan in enumerate(plans)}
    for i, key in keys.items():
        if key in _MEMO:
            _MEMO.move_to_end(key)
            raw[i] = _MEMO[key]
    groups: dict[tuple, list[int]] = {}
    for i, (_, _, vectors, dict_spec, s_i) in enumerate(plans):
        if i not in raw:
            groups.setdefault((dict_spec, s_i, vectors.device), []).append(i)
    for (dict_spec, s_i, device), members in groups.items():
        a = get_dictionary(dict_spec, device)
        stacked = torch.cat([plans[i][2] for i in members])
        code = coder_fn(a, stacked, n_nonzero=s_i)
        expected = (stacked.shape[0], s_i)
        if tuple(code.indices.shape) != expected or tuple(code.values.shape) != expected:
            # a registered coder's mistake, caught here rather than as a corrupt file later
            raise SINRConfigError(f"coder {coder!r} returned codes of shape {tuple(code.indices.shape)}, "
                                  f"expected {expected}")
        if (code.counts < s_i).any():
            # OMP stops early on (near-)exactly representable vectors; every stored code has s
            # entries, so pad with unused atoms at value 0 (whichever coder left the gap).
            code = _pad_short_codes(code, s_i, dict_spec.k2)
        indices, order = code.indices.sort(dim=1)
        values = code.values.gather(1, order).to(torch.float32)
        start = 0
        for i in members:
            stop = start + plans[i][2].shape[0]
            raw[i] = (indices[start:stop].contiguous(), values[start:stop].contiguous())
            _remember(keys[i], raw[i])
            start = stop
    results: list[CodedTensor] = []
    for i, (shape, tensor_mode, _, dict_spec, s_i) in enumerate(plans):
        indices, values = raw[i]
        quantizer = UniformQuantizer.fit(values, per_tensor_bits[i])
        spec = CodeSpec(shape=shape, mode=tensor_mode, s=s_i, dictionary=dict_spec, quantizer=quantizer)
        results.append(CodedTensor(spec, indices.clone(), quantizer.round_trip(values).contiguous()))
    return results


# Codes of recently coded tensors: autotune, torch_sinr.compress and the benchmarks code the
# same weights at the same s many times (a probe per budget, a compress_model per candidate).
# The key holds the vectors' bytes digest, so an edited tensor is never served stale codes.
_MEMO: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_MEMO_ENTRIES = 256
_MEMO_MAX_ELEMENTS = 1 << 24  # codes larger than this (64 MiB of values) are not kept


def _memo_key(plan, coder_fn) -> tuple:
    shape, mode, vectors, dict_spec, s_i = plan
    digest = hashlib.blake2b(vectors.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
    return (digest, tuple(vectors.shape), mode, dict_spec, s_i, id(coder_fn), str(vectors.device))


def _remember(key: tuple, codes: tuple[torch.Tensor, torch.Tensor]) -> None:
    if codes[0].numel() > _MEMO_MAX_ELEMENTS:
        return
    _MEMO[key] = codes
    _MEMO.move_to_end(key)
    while len(_MEMO) > _MEMO_ENTRIES:
        _MEMO.popitem(last=False)


def _pad_short_codes(code, s: int, k2: int):
    indices, values = code.indices.clone(), code.values.clone()
    for row in (code.counts < s).nonzero().flatten().tolist():
        n = int(code.counts[row])
        used = set(indices[row, :n].tolist())
        free = [j for j in range(k2) if j not in used][: s - n]
        indices[row, n:] = torch.tensor(free, dtype=indices.dtype)
        values[row, n:] = 0.0
    return replace(code, indices=indices, values=values, counts=torch.full_like(code.counts, s))


def relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    norm = float(original.double().norm())
    diff = float((original.double() - approx.double()).norm())
    return diff / norm if norm > 0 else diff


__all__ = ["CodeSpec", "CodedTensor", "decode_codes", "encode_tensor", "encode_tensors", "max_sparsity", "relative_error"]
