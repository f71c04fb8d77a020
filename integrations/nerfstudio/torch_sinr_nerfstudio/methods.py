"""The sinr-* methods, registered with nerfstudio through the ``nerfstudio.method_configs``
entry point (see setup.py): nerfstudio's vanilla-nerf and nerfacto with the SINR training hook.

Their configs are nerfstudio's own, rebuilt here (importing nerfstudio's method_configs module
from an entry point would be circular). sinr-nerfacto uses the torch implementation: the tcnn
one has no nn.Linear to compress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig, RAdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from .hook import SINRHookMixin, SINRHookOptions


class SINRNeRFModel(SINRHookMixin, NeRFModel):
    """nerfstudio's vanilla NeRF, compressed with SINR during training."""


class SINRNerfactoModel(SINRHookMixin, NerfactoModel):
    """nerfstudio's nerfacto (torch implementation), compressed with SINR during training."""


@dataclass
class SINRVanillaModelConfig(VanillaModelConfig, SINRHookOptions):
    _target: Type = field(default_factory=lambda: SINRNeRFModel)


@dataclass
class SINRNerfactoModelConfig(NerfactoModelConfig, SINRHookOptions):
    _target: Type = field(default_factory=lambda: SINRNerfactoModel)
    implementation: str = "torch"  # tcnn's fused MLPs have no nn.Linear (see compat.check_tcnn_ported)


def _exponential(lr_final: float, max_steps: int) -> ExponentialDecaySchedulerConfig:
    return ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps)


def vanilla_nerf_config() -> TrainerConfig:
    return TrainerConfig(
        method_name="sinr-vanilla-nerf",
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(dataparser=BlenderDataParserConfig()),
            model=SINRVanillaModelConfig(),
        ),
        optimizers={
            "fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None},
            "temporal_distortion": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None},
        },
    )


def nerfacto_config() -> TrainerConfig:
    return TrainerConfig(
        method_name="sinr-nerfacto",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=VanillaPipelineConfig(
            datamanager=ParallelDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=SINRNerfactoModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
            ),
        ),
        optimizers={
            "proposal_networks": {"optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                                  "scheduler": _exponential(0.0001, 200000)},
            "fields": {"optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15), "scheduler": _exponential(0.0001, 200000)},
            "camera_opt": {"optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15), "scheduler": _exponential(1e-4, 5000)},
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


sinr_vanilla_nerf = MethodSpecification(
    config=vanilla_nerf_config(),
    description="vanilla-nerf whose field MLPs are compressed with SINR during training, then fine-tuned as codes",
)
sinr_nerfacto = MethodSpecification(
    config=nerfacto_config(),
    description="nerfacto (torch implementation) whose field MLPs are compressed with SINR during training",
)
