"""nerfstudio's realities, each handled in one place with a message that says what to do.

- nerfstudio is an optional dependency: importing this package without it says how to install it.
- tiny-cuda-nn ("tcnn") fuses a field's MLP into one CUDA kernel with no ``nn.Linear`` inside,
  and its hash grid is another function than nerfstudio's torch ``HashEncoding`` (a +0.5
  offset, ``base * b**l - 1`` scales, dense coarse levels), so a tcnn scene is never read into
  the torch layout: ``tcnn_scene`` converts it to the torch port of tcnn (``tcnn_port``), which
  computes tcnn's own function. ``check_tcnn_ported`` refuses any model still holding, or
  configured for, tcnn modules that were not converted (the training hook cannot convert a
  live run).
- torch >= 2.6 loads checkpoints with ``weights_only=True``; nerfstudio's checkpoints hold numpy
  scalars (optimizer and scheduler state), which that unpickler refuses. We allow exactly those
  numpy types, only while a checkpoint is being loaded, and never turn ``weights_only`` off.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from torch_sinr import SINRConfigError

INSTALL_HINT = 'install the nerfstudio extra: pip install -e ".[nerfstudio]" (from the torch_sinr repository)'


def require_nerfstudio() -> None:
    try:
        import nerfstudio  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"torch_sinr_nerfstudio needs nerfstudio ({exc}); {INSTALL_HINT}") from None


TCNN_MESSAGE = (
    "{what} uses tiny-cuda-nn ('tcnn') modules that were not converted to the torch port of tcnn: "
    "ns-sinr-compress and ns-sinr-eval convert a tcnn run themselves (torch_sinr_nerfstudio.tcnn_scene); "
    "the sinr-* training methods compress during training and need the torch implementation: "
    "ns-train {method} --pipeline.model.implementation torch ..."
)


def is_tcnn_model(model: nn.Module) -> bool:
    """Configured for tcnn (``implementation='tcnn'``) or holding tinycudann modules.

    The config decides as well as the modules: without tcnn installed nerfstudio silently
    builds torch layers for a tcnn config, whose checkpoint nonetheless holds tcnn's fused
    ``params`` tensors.
    """
    return getattr(getattr(model, "config", None), "implementation", None) == "tcnn" or bool(fused_tcnn_modules(model))


def fused_tcnn_modules(model: nn.Module) -> list[str]:
    return sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                   if type(m).__module__.split(".")[0] in ("tinycudann", "tcnn")})


def check_tcnn_ported(model: nn.Module, method_name: str = "<method>") -> None:
    """Refuse a model configured for, or built with, tiny-cuda-nn unless it was converted to the port."""
    fused = fused_tcnn_modules(model)
    if fused:
        raise SINRConfigError(TCNN_MESSAGE.format(what=f"the model ({', '.join(fused)})", method=method_name))
    implementation = getattr(getattr(model, "config", None), "implementation", None)
    if implementation == "tcnn" and not getattr(model, "sinr_tcnn_port", None):
        raise SINRConfigError(TCNN_MESSAGE.format(what="the model's config (implementation='tcnn')",
                                                  method=method_name))


def checkpoint_safe_globals() -> list:
    """The numpy types nerfstudio checkpoints contain, beyond what ``weights_only`` allows.

    Optimizer/scheduler state of nerfstudio runs holds numpy float64 scalars (e.g. a learning
    rate computed with numpy), pickled as ``numpy.core.multiarray.scalar`` with a ``numpy.dtype``
    argument of class ``Float64DType``.
    """
    import numpy as np

    # numpy 2 moved the scalar reconstructor to numpy._core; pickles name whichever module wrote them.
    try:
        from numpy._core.multiarray import scalar
    except ImportError:
        from numpy.core.multiarray import scalar
    # (object, name) pairs: allow the reconstructor under both names, whichever numpy reads it.
    scalars = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    return [*scalars, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]


@contextlib.contextmanager
def nerfstudio_checkpoint_loading() -> Iterator[None]:
    """While active, ``torch.load`` (``weights_only=True``) accepts nerfstudio's numpy scalars, and
    nothing else beyond its defaults."""
    with torch.serialization.safe_globals(checkpoint_safe_globals()):
        yield
