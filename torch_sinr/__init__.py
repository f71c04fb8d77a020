"""torch_sinr: compress implicit neural representations with SINR (CVPR 2025).

Weights are coded as sparse combinations of the atoms of a seeded random Gaussian dictionary;
only the non-zero values and their indices are stored.
"""

from ._version import __version__
from .autotune import AutotuneResult, ByteBudget, MaxDrop, autotune
from .config import SINRConfig
from .handlers import ModuleHandler, register_module_handler
from .errors import SINRAlreadyCompressedError, SINRConfigError, SINRError, SINRFormatError, SINRInputError
from .layer import SINRLinear
from .pipeline import PIPELINE_CONFIG, PipelineResult, compress
from .serialization import FileReport, FileSummary, decode_state_dict, load_compressed, read_compressed, save_compressed
from .tensor_codes import CodedTensor, decode_codes, encode_tensor, encode_tensors
from .transform import compress_model, decompress_model, plan_targets

__all__ = [
    "AutotuneResult",
    "ByteBudget",
    "CodedTensor",
    "FileReport",
    "FileSummary",
    "MaxDrop",
    "SINRAlreadyCompressedError",
    "SINRConfig",
    "SINRConfigError",
    "SINRError",
    "SINRFormatError",
    "SINRInputError",
    "SINRLinear",
    "PIPELINE_CONFIG",
    "PipelineResult",
    "__version__",
    "autotune",
    "register_module_handler",
    "ModuleHandler",
    "compress",
    "compress_model",
    "decode_codes",
    "decode_state_dict",
    "decompress_model",
    "encode_tensor",
    "encode_tensors",
    "load_compressed",
    "plan_targets",
    "read_compressed",
    "save_compressed",
]
