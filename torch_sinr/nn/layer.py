"""SINRLinear: a drop-in ``nn.Linear`` whose weight is stored as SINR codes.

It holds only the codes (``indices`` buffer, ``values`` parameter), the bias and the code spec;
the dictionary is regenerated from its seed on the layer's device and never enters a
state_dict. The dense weight W = X A^T is decoded with a sparse matmul and cached, so
inference costs what ``nn.Linear`` costs. When ``values`` requires grad and the module is
training, it decodes on every forward so gradients reach the values (support fixed): this is
post-compression fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.dictionary import DictionarySpec, get_dictionary, used_atoms
from ..core.quantization import UniformQuantizer
from ..core.tensor_codes import CodedTensor, CodeSpec, decode_with_atoms, encode_tensor
from ..errors import SINRInputError
from ..format.codec.indices import index_width


class SINRLinear(nn.Module):
    """y = x W^T + b with W decoded from sparse codes against a seeded Gaussian dictionary."""

    def __init__(self, spec: CodeSpec, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.spec = spec
        self.out_features, self.in_features = spec.shape
        factory = {"device": device, "dtype": dtype or torch.float32}
        self.register_buffer("indices", torch.zeros(spec.n_vectors, spec.s, dtype=torch.int64, device=device))
        # The codes stay float32 whatever the layer's dtype: their values sit on a quantization
        # grid that float16/bfloat16 cannot hold (a 16-bit grid is finer than a half mantissa),
        # and memory must equal the file. The layer's dtype (weight, bias, output) is carried
        # by an empty non-persistent buffer, which .half() / .to(dtype) convert like any other.
        self.values = nn.Parameter(torch.zeros(spec.n_vectors, spec.s, dtype=torch.float32, device=device),
                                   requires_grad=False)
        self.register_buffer("_dtype_probe", torch.empty(0, **factory), persistent=False)
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._atoms_cache: tuple | None = None
        # While fine-tuning: decode through the quantizer (straight-through gradient), so training
        # sees exactly the values the file will hold.
        self.quantize_aware = False

    # -- construction --------------------------------------------------------------------
    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype the layer computes in (its weight's, bias's and output's); codes are float32."""
        return self._dtype_probe.dtype

    @classmethod
    def from_codes(cls, codes: CodedTensor, bias: torch.Tensor | None = None) -> "SINRLinear":
        layer = cls(codes.spec, bias=bias is not None, device=codes.values.device, dtype=torch.float32)
        with torch.no_grad():
            layer.indices.copy_(codes.indices)
            layer.values.copy_(codes.values)
            if bias is not None:
                layer.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, **encode_options) -> "SINRLinear":
        """Code ``linear.weight`` (see ``encode_tensor`` for the options); the bias is kept."""
        if not isinstance(linear, nn.Linear):
            raise SINRInputError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        codes = encode_tensor(linear.weight.detach(), **encode_options)
        layer = cls.from_codes(codes, linear.bias)
        layer.train(linear.training)
        return layer

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the decoded weight (exactly what this layer computes)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.values.device, dtype=self.weight_dtype)
        with torch.no_grad():
            linear.weight.copy_(self.decoded_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.train(self.training)
        return linear

    def codes(self) -> CodedTensor:
        return CodedTensor(self.spec, self.indices, self.values.detach())

    # -- decoding ------------------------------------------------------------------------
    @property
    def dictionary_spec(self) -> DictionarySpec:
        return self.spec.dictionary

    def dictionary(self) -> torch.Tensor:
        return get_dictionary(self.spec.dictionary, self.values.device)

    def decoded_weight(self) -> torch.Tensor:
        """Decode W from the current codes (differentiable in ``values``), uncached."""
        values = self.values
        if self.quantize_aware:
            values = values + (self.spec.quantizer.round_trip(values).to(values) - values).detach()
        atoms, local = self._used_atoms()
        # Sparse matmul has no float16/bfloat16 kernels (on CPU): decode in float32 (float64 for
        # a float64 layer) and hand back the layer's own dtype, as nn.Linear.weight would be.
        compute = torch.float64 if self.weight_dtype == torch.float64 else torch.float32
        dense = decode_with_atoms(local, values.to(compute), atoms.to(compute))
        return dense.reshape(self.out_features, self.in_features).to(self.weight_dtype)

    def _used_atoms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The atoms the codes use and the indices renumbered into them, cached while the
        indices are unchanged: decoding costs what the codes need, whatever k2 is."""
        key = (self.indices._version, self.indices.data_ptr(), self.indices.device, self.spec.dictionary)
        cached = self._atoms_cache
        if cached is None or cached[0] != key or not torch.equal(cached[1], self.indices):
            atoms, local = used_atoms(self.spec.dictionary, self.indices)
            self._atoms_cache = cached = (key, self.indices.clone(), atoms, local)
        return cached[2], cached[3]

    @property
    def weight(self) -> torch.Tensor:
        """The dense (out, in) weight, as ``nn.Linear.weight`` (cached; read-only)."""
        if self._decodes_every_forward():
            return self.decoded_weight()
        # _version catches in-place edits of the tensors themselves; edits through ``.data`` bypass
        # it, so the codes are also compared with the snapshot the cache was decoded from (the codes
        # are small next to any real batch, so this costs little).
        key = (self.values._version, self.indices._version, self.values.data_ptr(),
               self.indices.data_ptr(), self.values.device, self.weight_dtype)
        if (self._cache is None or self._cache[0] != key or not torch.equal(self._cache[1], self.values)
                or not torch.equal(self._cache[2], self.indices)):
            with torch.no_grad():
                self._cache = (key, self.values.detach().clone(), self.indices.clone(), self.decoded_weight())
        return self._cache[3]

    def _decodes_every_forward(self) -> bool:
        return self.training and self.values.requires_grad and torch.is_grad_enabled()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    # -- quantization --------------------------------------------------------------------
    def requantize_(self, bits: int | None = None) -> "SINRLinear":
        """Snap ``values`` to a uniform grid (refitting its range), e.g. after fine-tuning."""
        quantizer = UniformQuantizer.fit(self.values, bits or self.spec.quantizer.bits)
        with torch.no_grad():
            self.values.copy_(quantizer.round_trip(self.values))
        self.spec = CodeSpec(self.spec.shape, self.spec.mode, self.spec.s, self.spec.dictionary, quantizer)
        return self

    def snap_to_grid_(self) -> "SINRLinear":
        """Quantize ``values`` on the layer's current grid (range kept, out-of-range clamped)."""
        with torch.no_grad():
            self.values.copy_(self.spec.quantizer.round_trip(self.values))
        return self

    # -- reporting -----------------------------------------------------------------------
    def estimated_bits(self) -> int:
        """Bits of values + fixed-width indices, before entropy coding (an estimate: the file's
        real size is what ``save_compressed`` reports)."""
        n = self.spec.n_vectors * self.spec.s
        return n * (self.spec.quantizer.bits + index_width(self.spec.k2))

    def extra_repr(self) -> str:
        ratio = 32 * self.in_features * self.out_features / max(1, self.estimated_bits())
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, mode={self.spec.mode}, s={self.spec.s}, "
                f"k2={self.spec.k2}, value_bits={self.spec.quantizer.bits}, est_ratio={ratio:.2f}x")

    def _apply(self, fn, recurse=True):
        self._cache = self._atoms_cache = None  # device/dtype moves drop the decoded weight
        codes = self.values

        def keep_codes_float32(t):
            # .half() / .to(dtype) / .cuda() reach the codes here: let them move, never convert
            if t is codes or (codes.grad is not None and t is codes.grad):
                moved = fn(torch.empty(0, dtype=t.dtype, device=t.device))
                return t.to(device=moved.device)
            return fn(t)

        return super()._apply(keep_codes_float32, recurse)
