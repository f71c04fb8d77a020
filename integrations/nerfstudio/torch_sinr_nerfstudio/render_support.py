"""Whether this machine can render a scene: instant-ngp cannot without CUDA.

nerfstudio's ``instant-ngp`` (``models/instant_ngp.py``, ``NGPModel``) samples rays through
nerfacc's occupancy grid (``VolumetricSampler`` -> ``nerfacc.OccGridEstimator.sampling`` ->
``nerfacc.grid.traverse_grids``) and composites with nerfacc's packed scans
(``render_weight_from_density`` -> ``nerfacc.scan.exclusive_sum``). Both call ``nerfacc.cuda._C``,
a CUDA extension built on first use (``nerfacc/cuda/_backend.py``): there is no CPU kernel, and on
a machine without CUDA the build fails deep inside ``torch.utils.cpp_extension``. Everything that
renders (evaluation, the PSNR target of the hash tables, fine-tuning) is refused up front instead,
naming what still works: coding to a byte target, and ``ns-sinr-decompress``, which decode
weights and never render.
"""

from __future__ import annotations

from torch import nn

from torch_sinr import SINRConfigError


def render_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot render where it is (None when it can)."""
    from nerfacc import OccGridEstimator

    first = next(iter(model.parameters()), None)
    on_cuda = first is not None and first.device.type == "cuda"
    if on_cuda or not any(isinstance(m, OccGridEstimator) for m in model.modules()):
        return None
    return (f"{type(model).__name__} samples rays with nerfacc's occupancy grid, whose kernels are CUDA-only "
            "(nerfacc.grid.traverse_grids, nerfacc.scan), and this model is not on a CUDA device")


def check_can_render(model: nn.Module, needed_for: str, instead: str = "") -> None:
    """Raise ``SINRConfigError`` when ``model`` cannot render here; ``needed_for`` names what
    would have rendered, ``instead`` what the user can do without rendering."""
    problem = render_problem(model)
    if problem is not None:
        raise SINRConfigError(f"{needed_for} renders the scene, but {problem}: run it on a machine with CUDA"
                              + (f"; {instead}" if instead else ""))
