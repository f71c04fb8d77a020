"""The compressed file format, in three layers: ``schema`` (what a file says and how each field
is checked), ``kinds`` + ``container`` (entries to bytes and back, the safetensors file and its
integrity check) and ``model_io`` (a model to a file and back). ``v1`` keeps format 1 readable.
Below them, ``codec`` holds the stream coders only files use (bit packing, varints, index coding,
range and Brotli coding); ``statedict`` reads the dense checkpoints the CLI compresses.
"""

from .kinds import Kind, register_kind
from .model_io import FileSummary, decode_state_dict, load_compressed, read_compressed, save_compressed
from .report import FileReport
from .schema import VERSION as FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "FileReport", "FileSummary", "Kind", "decode_state_dict", "load_compressed",
           "read_compressed", "register_kind", "save_compressed"]
