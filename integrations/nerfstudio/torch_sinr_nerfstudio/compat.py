"""nerfstudio's realities, each handled in one place with a message that says what to do.

- nerfstudio is an optional dependency: importing this package without it says how to install it.
- tiny-cuda-nn ("tcnn") fuses a field's MLP into one CUDA kernel with no ``nn.Linear`` inside,
  and its hash grid places vertices differently from nerfstudio's torch ``HashEncoding`` (a
  +0.5 offset, ``base * b**l - 1`` scales, dense coarse levels), so a tcnn checkpoint cannot be
  converted to the torch layout exactly: refuse, say why, and tell the user to train with the
  torch implementation, rather than silently compress nothing or a different scene.
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
    "{what} uses the tiny-cuda-nn ('tcnn') implementation, which cannot be converted exactly: its fused "
    "MLPs contain no nn.Linear, and its hash grids are another function than nerfstudio's torch "
    "HashEncoding (vertices at x * (base * b**l - 1) + 0.5 with dense coarse levels, against x * "
    "floor(min_res * b**l) hashed everywhere), so no reordering of the fused 'params' tensor gives the "
    "torch layout the same scene. Train the scene with the torch implementation instead: "
    "ns-train {method} --pipeline.model.implementation torch ... (then compress that run)."
)


def check_not_tcnn(model: nn.Module, method_name: str = "<method>") -> None:
    """Refuse a model configured for, or built with, tiny-cuda-nn.

    The config is checked as well as the modules: without tcnn installed nerfstudio silently
    falls back to torch layers, but a file made from such a run would not load into the same
    config on a machine that has tcnn (its state has different keys), so the config is what
    decides.
    """
    implementation = getattr(getattr(model, "config", None), "implementation", None)
    if implementation == "tcnn":
        raise SINRConfigError(TCNN_MESSAGE.format(what="the model's config (implementation='tcnn')",
                                                  method=method_name))
    fused = sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                    if type(m).__module__.split(".")[0] in ("tinycudann", "tcnn")})
    if fused:
        raise SINRConfigError(TCNN_MESSAGE.format(what=f"the model ({', '.join(fused)})", method=method_name))


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
