"""Training in several processes started by ``torchrun`` (DDP), or in one.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) each process joins the group —
NCCL with one GPU per process when CUDA is there, gloo on the CPU — and the model is wrapped
in DistributedDataParallel, which averages gradients, so N processes with batch B take the
steps one process with batch N·B would. On GPUs batch norm is synchronised across processes
(``SyncBatchNorm``, as the RMSIN authors train); torch has no CPU kernel for that, so on the
CPU each process normalises over its own share of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Group:
    """This process's place: rank, world size, and its device (None: the caller's choice)."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` as this process trains it: itself alone, else wrapped in DDP."""
        if self.world == 1:
            return module
        if self.device is not None and self.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index],
                                                       find_unused_parameters=True)
        return nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (a list of one without DDP)."""
        if self.world == 1:
            return [obj]
        everyone = [None] * self.world
        dist.all_gather_object(everyone, obj)
        return everyone


@contextmanager
def group(device: str) -> Iterator[Group]:
    """The process group ``torchrun`` asks for (left when done), or a group of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Group()
        return
    cuda = torch.cuda.is_available() and device != "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        where = torch.device("cuda", local) if cuda else torch.device("cpu")
        yield Group(dist.get_rank(), dist.get_world_size(), where)
    finally:
        dist.destroy_process_group()
