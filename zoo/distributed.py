"""torchrun support: process-group setup from the environment, broadcasts, reductions. No-ops when alone. And
the name of this process among the workers sharing one piece of work."""
from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as td


def worker_name() -> str:
    """This process among the workers of any launcher: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); returns (rank, world)."""
    world = world_size()
    if world == 1:
        return 0, 1
    if not td.is_initialized():
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return td.get_rank(), td.get_world_size()


def is_active() -> bool:
    return td.is_available() and td.is_initialized() and td.get_world_size() > 1


@torch.no_grad()
def broadcast_module(model: torch.nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (what DistributedDataParallel does when it wraps)."""
    if is_active():
        for t in [*model.parameters(), *model.buffers()]:
            td.broadcast(t.data, src=0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_active():
        t = t.clone()
        td.all_reduce(t)
    return t


def average(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors averaged over torchrun's ranks in one all-reduce (unchanged when alone): the gradients of a
    step, each rank's from its own shard of the batch."""
    if not is_active():
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    td.all_reduce(flat)
    flat /= world_size()
    return [f.view_as(t) for f, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def barrier() -> None:
    if is_active():
        td.barrier()


def log(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def max_param_diff(model: torch.nn.Module) -> float:
    """Largest |w - w_rank0| over all parameters and ranks: 0.0 when DDP kept the replicas identical."""
    if not is_active():
        return 0.0
    flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    ref = flat.clone()
    td.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    td.all_reduce(diff, op=td.ReduceOp.MAX)
    return float(diff)


def resolve_device(device: str) -> torch.device:
    """--device as a torch.device: auto is CUDA when there is one, else the CPU; CUDA asked for without one is
    a one-line error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} asked for but CUDA is not available; use --device cpu")
    return torch.device(device)
