"""SINRConfig: the single source of truth for what compress_model does."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core.quantization import SUPPORTED_BITS
from ..core.sparsity import DEFAULT_S_RATIO
from ..core.tensor_codes import CODERS, DEFAULT_FLATTEN_BELOW, MODES
from ..errors import SINRConfigError
from ..format.codec.entropy import FILE_QUALITY
from ..format.codec.indices import CODINGS
from .matching import ALL_LINEAR, check_pattern, lookup

DENSE_DTYPES = ("float32", "float16", "bfloat16")
SYMBOL_CODINGS = ("auto", "brotli", "range")


@dataclass
class SINRConfig:
    """How to compress a model.

    Targets (peft-style): ``target_modules`` is ``"all-linear"``, one pattern or a list of
    patterns; ``exclude_modules`` (same forms) is checked first and must name existing modules.
    A pattern is a module name (exact, or a ``.suffix`` of the qualified name) or a regex marked
    ``"re:..."`` (``re.fullmatch``): see :mod:`torch_sinr.nn.matching`. Input layers stay dense, as
    in the paper: linears with ``in_features <= input_fan_in_max`` (coordinates) and, with
    ``keep_first_linear``, the model's first linear (fed by coordinates or their positional
    encoding). Naming an input layer exactly in a target list codes it, with a warning; a regex
    that spans one keeps it dense, with a warning.

    Defaults are the paper's settings, which need no data: 16-bit values, 16-bit indices (a
    2**16-atom dictionary) and the largest s the method allows (2s < k1); measured on Kodak
    SIRENs in ``benchmarks/results/defaults.md``. With data, ``torch_sinr.compress`` does better.

    Sparsity: ``s`` explicit, else ``target_error`` (smallest s meeting that relative weight
    error), else ``ceil(s_ratio * k1)`` capped at 2s < k1. ``s_pattern`` maps name patterns
    to a per-layer s, and ``value_bits_pattern`` to per-layer value bits (``autotune`` fills
    both). Dictionary: k2 = ``k2``, else ``dict_ratio * k1``, else 2**16 (fewer for vectors
    longer than 256, so one dictionary stays within 2**24 entries), seeded by ``seed``. Layers with fan-in and fan-out both < ``flatten_below`` are coded as one flattened
    vector ("tiny"); wider layers are coded row by row.

    Bitstream: ``value_bits`` for the non-zero values (16 as in the paper; 32 = raw float32),
    ``index_coding`` ("auto" picks the smallest), ``symbol_coding`` for quantized symbols
    ("auto" picks the smallest of range coding and Brotli per tensor, or force "range" /
    "brotli"), ``brotli_quality`` (11 = densest; 9 is ~20x faster for ~1-2% more bytes).
    Every tensor SINR does not code (input and output layers, biases, other parameters) is
    stored uniformly quantized at ``dense_bits`` (default: ``value_bits``; 32 = raw float32; per
    tensor, by state_dict key pattern, in ``dense_bits_pattern``: ``autotune`` fills it for the
    layers it codes uniformly instead of with SINR), or at ``dense_dtype`` ("float32", "float16", "bfloat16") when that is set; the model in memory
    is rounded the same way, so it equals its file. ``store_names=False`` writes bare files
    (no tensor names: smaller, decodable only with the model's skeleton).
    """

    target_modules: list[str] | str = ALL_LINEAR
    exclude_modules: list[str] | str | None = None
    input_fan_in_max: int = 16
    keep_first_linear: bool = True
    s: int | None = None
    s_ratio: float = DEFAULT_S_RATIO
    target_error: float | None = None
    s_pattern: dict[str, int] = field(default_factory=dict)
    value_bits_pattern: dict[str, int] = field(default_factory=dict)
    k2: int | None = None
    dict_ratio: int | None = None
    seed: int = 0
    mode: str = "auto"
    flatten_below: int = DEFAULT_FLATTEN_BELOW
    coder: str = "omp"
    value_bits: int = 16
    index_coding: str = "auto"
    dense_dtype: str | None = None
    dense_bits: int | None = None
    dense_bits_pattern: dict[str, int] = field(default_factory=dict)
    symbol_coding: str = "auto"
    store_names: bool = True
    brotli_quality: int = FILE_QUALITY  # measured: see format.codec.entropy
    trainable: bool = False
    version: int = 1

    def validate(self) -> "SINRConfig":
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SINRConfigError(message)

        need(self.version == 1, f"unknown SINRConfig version {self.version}")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if value is None and name == "exclude_modules":
                continue
            need(isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)),
                 f"{name} must be a pattern ('all-linear', a name, or 're:<regex>') or a list of them, got {value!r}")
            for pattern in [value] if isinstance(value, str) else value:
                check_pattern(pattern, name)
        need(self.exclude_modules != ALL_LINEAR, "exclude_modules='all-linear' would exclude everything")
        need(isinstance(self.input_fan_in_max, int) and self.input_fan_in_max >= 0, "input_fan_in_max must be an int >= 0")
        need(isinstance(self.keep_first_linear, bool), f"keep_first_linear must be a bool, got {self.keep_first_linear!r}")
        need(self.s is None or (isinstance(self.s, int) and self.s >= 1), f"s must be a positive int or None, got {self.s!r}")
        need(0 < self.s_ratio <= 1, f"s_ratio must be in (0, 1], got {self.s_ratio}")
        need(self.target_error is None or 0 < self.target_error < 1, f"target_error must be in (0, 1), got {self.target_error}")
        need(isinstance(self.s_pattern, dict) and all(isinstance(k, str) and isinstance(v, int) and v >= 1
                                                      for k, v in self.s_pattern.items()),
             "s_pattern must map name patterns to positive ints")
        need(isinstance(self.value_bits_pattern, dict) and all(
            isinstance(k, str) and v in SUPPORTED_BITS for k, v in self.value_bits_pattern.items()),
             "value_bits_pattern must map name patterns to value bits in 2..16 or 32")
        need(isinstance(self.dense_bits_pattern, dict) and all(
            isinstance(k, str) and v in SUPPORTED_BITS for k, v in self.dense_bits_pattern.items()),
             "dense_bits_pattern must map tensor name patterns to widths in 2..16 or 32")
        need(not (self.dense_bits_pattern and self.dense_dtype is not None),
             "dense_bits_pattern sets uniform grids, dense_dtype stores dense tensors as a float dtype: choose one")
        for field_name in ("s_pattern", "value_bits_pattern", "dense_bits_pattern"):
            for pattern in getattr(self, field_name):
                check_pattern(pattern, f"{field_name} key")
        need(self.k2 is None or (isinstance(self.k2, int) and self.k2 >= 1), f"k2 must be a positive int or None, got {self.k2!r}")
        need(self.dict_ratio is None or (isinstance(self.dict_ratio, int) and self.dict_ratio >= 1),
             f"dict_ratio must be a positive int or None, got {self.dict_ratio!r}")
        need(isinstance(self.seed, int) and 0 <= self.seed < 2**32, f"seed must be in [0, 2**32), got {self.seed!r}")
        need(self.mode == "auto" or self.mode in MODES, f"mode must be 'auto' or one of {MODES}")
        need(self.coder in CODERS, f"coder must be one of {CODERS}, got {self.coder!r}")
        need(self.value_bits in SUPPORTED_BITS, f"value_bits must be 2..16 or 32, got {self.value_bits}")
        need(self.index_coding == "auto" or self.index_coding in CODINGS,
             f"index_coding must be 'auto' or one of {CODINGS}, got {self.index_coding!r}")
        need(isinstance(self.brotli_quality, int) and 0 <= self.brotli_quality <= 11,
             f"brotli_quality must be an int in 0..11, got {self.brotli_quality!r}")
        need(self.dense_dtype is None or self.dense_dtype in DENSE_DTYPES,
             f"dense_dtype must be None (uniform quantization) or one of {DENSE_DTYPES}, got {self.dense_dtype!r}")
        need(self.dense_bits is None or self.dense_bits in SUPPORTED_BITS,
             f"dense_bits must be None (= value_bits), 2..16 or 32, got {self.dense_bits!r}")
        need(self.symbol_coding in SYMBOL_CODINGS, f"symbol_coding must be one of {SYMBOL_CODINGS}, got {self.symbol_coding!r}")
        need(isinstance(self.store_names, bool), f"store_names must be a bool, got {self.store_names!r}")
        return self

    def dense_value_bits(self) -> int:
        """The width of the uniform quantizer for tensors SINR does not code (32 = raw float32)."""
        return self.dense_bits if self.dense_bits is not None else self.value_bits

    def dense_storage(self, tensor, name: str | None = None):
        """How a float tensor SINR does not code is stored: a fitted uniform quantizer or a dtype name.

        ``name`` (the tensor's state_dict key) picks its width from ``dense_bits_pattern``."""
        from ..core.quantization import UniformQuantizer

        if self.dense_dtype is not None:
            return self.dense_dtype
        bits = self.dense_value_bits() if name is None else lookup(name, self.dense_bits_pattern,
                                                                    self.dense_value_bits())
        return "float32" if bits == 32 else UniformQuantizer.fit(tensor.detach(), bits)

    def to_dict(self) -> dict:
        return asdict(self)
