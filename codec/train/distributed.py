"""Distributed data parallel training (torchrun), with helpers that do nothing in one process.

    torchrun --nproc_per_node 4 -m codec.train recipes/conv_16k.yaml     # one machine, 4 GPUs/processes
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 -m codec.train RECIPE

Backend: NCCL on CUDA, gloo on CPU. Each rank draws its own crops (seed + rank); gradients are
averaged by DDP; codebook statistics are summed across ranks and codebook changes broadcast
from rank 0 (``codec.quantization.vq``), so every rank holds the same codebooks; rank 0 alone
logs and writes checkpoints.
"""

import os

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns (rank, world size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def device_for(setting: str) -> torch.device:
    """The training device: ``auto`` picks this rank's GPU when CUDA is available."""
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no CUDA device is available")
    index = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def any_true(flag: bool) -> bool:
    """True if ``flag`` is true on any rank (collective decisions such as skipping a step)."""
    if not dist.is_initialized():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
