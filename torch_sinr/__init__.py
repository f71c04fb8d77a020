"""torch_sinr: compress implicit neural representations with SINR (CVPR 2025).

Weights are coded as sparse combinations of the atoms of a seeded random Gaussian dictionary;
only the non-zero values and their indices are stored.
"""

from . import _old_paths
from ._version import __version__
from .api import compress_model, decompress_model, plan_targets
from .core.tensor_codes import CodedTensor, decode_codes, encode_tensor, encode_tensors
from .errors import SINRAlreadyCompressedError, SINRConfigError, SINRError, SINRFormatError, SINRInputError
from .format import FileReport, FileSummary, decode_state_dict, load_compressed, read_compressed, save_compressed
from .nn.config import SINRConfig
from .nn.handlers import ModuleHandler, register_module_handler
from .nn.layer import SINRLinear
from .tune.autotune import AutotuneResult, ByteBudget, MaxDrop, autotune
from .tune.pipeline import PIPELINE_CONFIG, PipelineResult, compress

_old_paths.install()  # `torch_sinr.transform`, `torch_sinr.codec.*`, ... still import (see _old_paths)

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
