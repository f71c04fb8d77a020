"""Data-parallel training past one machine: ``torchrun`` runs this module once per process.

One machine, two processes (CPU, gloo)::

    torchrun --nproc_per_node 2 -m torch_sinr_shacira.launch --image big.npy --steps 2000 --out model.safetensors

Several machines: the same command on each, with ``--nnodes N --node_rank R
--rdzv_backend c10d --rdzv_endpoint HOST:PORT`` (HOST reachable by every node), and the image at
the same path on every node (a shared file system, or a copy: each rank samples its own pixels,
so each node needs the whole image, memory-mapped). ``--backend nccl`` on GPUs.

Every rank builds the same model; DistributedDataParallel broadcasts rank 0's weights and
all-reduces the gradients, so all ranks hold identical parameters after every step; rank 0
writes the checkpoint and the file (integer latents, float32 decoders).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import torch
import torch.distributed as dist

from .codec import prepare_for_coding, write_baseline
from .data import PixelSource
from .model import ImageModel, ImageModelConfig, RateModel
from .train import CPU_TRAINING, TrainConfig, train


def worker(image: str, out: str | None, model_config: ImageModelConfig, train_config: TrainConfig,
           checkpoint: str | None = None, state_out: str | None = None, progress: bool = False) -> ImageModel:
    """What each rank runs once the process group is up (``torchrun`` or a test's spawn)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    source = PixelSource.open(image)
    torch.manual_seed(train_config.seed)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    model = ImageModel(model_config)
    train(model, source, train_config, rate=RateModel(model_config.latent_dim), checkpoint=checkpoint,
          progress=progress and rank == 0)
    if state_out is not None:  # every rank's parameters, to check that they agree
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{state_out}.rank{rank}")
    if out is not None and rank == 0:
        prepare_for_coding(model)
        write_baseline(model, out)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun ... -m torch_sinr_shacira.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="an image file or an (H, W, 3) uint8 .npy")
    parser.add_argument("--out", default=None, help="rank 0 writes the file here")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--steps", type=int, default=CPU_TRAINING.steps)
    parser.add_argument("--batch", type=int, default=CPU_TRAINING.batch, help="pixels per step and rank")
    parser.add_argument("--levels", type=int, default=16)
    parser.add_argument("--log2-table", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        print("run this module with torchrun (see --help); for one process use benchmarks.shacira", file=sys.stderr)
        return 2
    dist.init_process_group(args.backend)
    try:
        source = PixelSource.open(args.image)
        model_config = ImageModelConfig.for_image(source.height, source.width, levels=args.levels,
                                                  log2_table=args.log2_table, hidden=args.hidden)
        train_config = replace(CPU_TRAINING, steps=args.steps, batch=args.batch)
        worker(args.image, args.out, model_config, train_config, checkpoint=args.checkpoint, progress=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
