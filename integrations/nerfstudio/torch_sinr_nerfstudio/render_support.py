"""Whether a scene renders where it is, and making nerfstudio's instant-ngp render on a CPU.

nerfstudio's ``instant-ngp`` (``models/instant_ngp.py``, ``NGPModel``) samples rays through
nerfacc's occupancy grid and composites with nerfacc's packed scans, whose kernels are CUDA-only
(``nerfacc.cuda._C``, built on first use, with no CPU kernel). ``cpu_marching`` has the same
steps in plain torch; ``enable_cpu_rendering`` runs an NGP model's ``get_outputs`` inside it when
the model is not on CUDA, which covers everything the plugin renders (evaluation, the tables'
PSNR target, fine-tuning: all go through ``get_outputs``). Another model with an occupancy grid
is refused up front, naming what still works without rendering.
"""

from __future__ import annotations

import functools

from torch import nn

from torch_sinr import SINRConfigError

from .cpu_marching import nerfacc_on_cpu

CPU_MARCHING_FLAG = "sinr_cpu_marching"  # set on a model whose get_outputs runs in nerfacc_on_cpu


def _on_cuda(model: nn.Module) -> bool:
    first = next(iter(model.parameters()), None)
    return first is not None and first.device.type == "cuda"


def _has_occupancy_grid(model: nn.Module) -> bool:
    from nerfacc import OccGridEstimator

    return any(isinstance(m, OccGridEstimator) for m in model.modules())


def enable_cpu_rendering(model: nn.Module) -> bool:
    """Run an ``NGPModel``'s ``get_outputs`` inside ``nerfacc_on_cpu`` (this instance only; once).
    Returns whether the model now renders off CUDA through the torch marching."""
    from nerfstudio.models.instant_ngp import NGPModel

    if getattr(model, CPU_MARCHING_FLAG, False):
        return True
    if not isinstance(model, NGPModel):
        return False
    get_outputs = model.get_outputs

    @functools.wraps(get_outputs)
    def get_outputs_with_cpu_marching(ray_bundle):
        with nerfacc_on_cpu():  # CUDA tensors still go to nerfacc's kernels
            return get_outputs(ray_bundle)

    model.get_outputs = get_outputs_with_cpu_marching
    setattr(model, CPU_MARCHING_FLAG, True)
    return True


def render_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot render where it is (None when it can); an instant-ngp off CUDA is
    made to render here (``enable_cpu_rendering``)."""
    if _on_cuda(model) or not _has_occupancy_grid(model) or enable_cpu_rendering(model):
        return None
    return (f"{type(model).__name__} samples rays with nerfacc's occupancy grid, whose kernels are CUDA-only "
            "(nerfacc.grid.traverse_grids, nerfacc.scan), this model is not on a CUDA device, and the torch "
            "marching of torch_sinr_nerfstudio.cpu_marching is wired up for nerfstudio's NGPModel only")


def check_can_render(model: nn.Module, needed_for: str, instead: str = "") -> None:
    """Raise ``SINRConfigError`` when ``model`` cannot render here; ``needed_for`` names what
    would have rendered, ``instead`` what the user can do without rendering."""
    problem = render_problem(model)
    if problem is not None:
        raise SINRConfigError(f"{needed_for} renders the scene, but {problem}: run it on a machine with CUDA"
                              + (f"; {instead}" if instead else ""))
