"""Import paths from before the package was arranged in rooms (core, nn, tune, format, inr).

``import torch_sinr.transform`` or ``from torch_sinr.codec.quantization import UniformQuantizer``
keeps working: a finder placed first on ``sys.meta_path`` answers each old name with the module
at its new home (the same module object, so classes and registries are shared), and warns once
with a ``DeprecationWarning`` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> its new home; a package's submodules follow it (longest prefix wins)
MOVED = {
    "torch_sinr.autotune": "torch_sinr.tune.autotune",
    "torch_sinr.baselines": "torch_sinr.tune.baselines",
    "torch_sinr.codec": "torch_sinr.format.codec",
    "torch_sinr.codec.quantization": "torch_sinr.core.quantization",
    "torch_sinr.coders": "torch_sinr.core.coders",
    "torch_sinr.config": "torch_sinr.nn.config",
    "torch_sinr.datasets": "torch_sinr.inr.datasets",
    "torch_sinr.dictionary": "torch_sinr.core.dictionary",
    "torch_sinr.finetune": "torch_sinr.tune.finetune",
    "torch_sinr.fitting": "torch_sinr.inr.fitting",
    "torch_sinr.handlers": "torch_sinr.nn.handlers",
    "torch_sinr.hashgrid": "torch_sinr.inr.hashgrid",
    "torch_sinr.images": "torch_sinr.inr.images",
    "torch_sinr.layer": "torch_sinr.nn.layer",
    "torch_sinr.matching": "torch_sinr.nn.matching",
    "torch_sinr.occupancy": "torch_sinr.inr.occupancy",
    "torch_sinr.pipeline": "torch_sinr.tune.pipeline",
    "torch_sinr.report": "torch_sinr.nn.report",
    "torch_sinr.serialization": "torch_sinr.format",
    "torch_sinr.sparsity": "torch_sinr.core.sparsity",
    "torch_sinr.statedict": "torch_sinr.format.statedict",
    "torch_sinr.storage": "torch_sinr.nn.storage",
    "torch_sinr.tensor_codes": "torch_sinr.core.tensor_codes",
    "torch_sinr.transform": "torch_sinr.api",  # compress_model moved above nn and format
}


def new_name(old: str) -> str | None:
    """The new home of an old module name, or None if it never moved."""
    prefix = max((p for p in MOVED if old == p or old.startswith(p + ".")), key=len, default=None)
    return None if prefix is None else MOVED[prefix] + old[len(prefix):]


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        # the module was executed under its new name; binding it under the old one is all
        # that is left (importlib stores it in sys.modules under the requested name)
        pass


class _OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        target_name = new_name(fullname)
        if target_name is None:
            return None
        warnings.warn(f"{fullname} moved to {target_name}; the old path keeps working but will not learn new names",
                      DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(target_name))


def install() -> None:
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPathFinder())
    # An old module named like a public function (torch_sinr.autotune) is bound now: importing it
    # through the finder would make the import system set the package attribute to the module,
    # and `torch_sinr.autotune(...)` would stop being the function.
    package = sys.modules["torch_sinr"]
    for old, new in MOVED.items():
        parent, _, leaf = old.rpartition(".")
        if parent == "torch_sinr" and hasattr(package, leaf) and old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
