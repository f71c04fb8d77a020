"""Data-parallel training: two CPU processes (gloo) end with identical parameters, and their
parameters differ from a single process's (each rank sampled its own pixels)."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_sinr_shacira.launch import worker
from torch_sinr_shacira.model import ImageModelConfig
from torch_sinr_shacira.train import TrainConfig

SMALL = ImageModelConfig.for_image(64, 64, levels=4, log2_table=10, hidden=16)
STEPS = TrainConfig(steps=6, batch=512, checkpoint_every=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, image: str, state_out: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        worker(image, out, SMALL, STEPS, state_out=state_out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_parameters(tmp_path):
    rng = np.random.default_rng(0)
    image = tmp_path / "image.npy"
    np.save(image, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    state = tmp_path / "state"
    mp.spawn(_rank, args=(2, _free_port(), str(image), str(state), str(tmp_path / "m.safetensors")), nprocs=2,
             join=True)
    first = torch.load(f"{state}.rank0", weights_only=True)
    second = torch.load(f"{state}.rank1", weights_only=True)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert (tmp_path / "m.safetensors").stat().st_size > 0  # rank 0 wrote the file
    # one process alone samples differently: the ranks really trained on their own pixels
    worker(str(image), None, SMALL, STEPS, state_out=str(tmp_path / "alone"))
    alone = torch.load(f"{tmp_path / 'alone'}.rank0", weights_only=True)
    assert not torch.equal(alone["mlp.0.weight"], first["mlp.0.weight"])
