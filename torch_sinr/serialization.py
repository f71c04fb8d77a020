"""Saving and loading compressed models (the file format lives in ``torch_sinr.format``).

Kept as the import path users already have: ``from torch_sinr.serialization import
save_compressed, load_compressed, decode_state_dict, read_compressed``.
"""

from .format import (FORMAT_VERSION, FileReport, FileSummary, decode_state_dict, load_compressed, read_compressed,
                     save_compressed)

__all__ = ["FORMAT_VERSION", "FileReport", "FileSummary", "decode_state_dict", "load_compressed", "read_compressed",
           "save_compressed"]
