"""Training on several processes with torch.distributed (DDP), in the environment torchrun sets.

`torchrun --nproc_per_node N ...` (or a worker started so on several nodes) gives every process RANK,
WORLD_SIZE and LOCAL_RANK. Then each process joins the group (NCCL on GPUs, gloo on CPUs), trains on its
own share of every epoch (a DistributedSampler) with the per-process batch of the schedule, and DDP averages
the gradients before each optimizer step: one step learns from the global batch (batch x processes), and
the loss it follows is the mean of the processes' losses. Only rank 0 reports progress and writes
checkpoints, in the single-process format (the unwrapped model's state). Each rank seeds its own sampling
(RPN and RoI samplers) with seed + rank, so the processes do not draw the same anchors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from worker.engine.detector import Detector


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the group torchrun described, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", 0)))


def join(place: World, device: torch.device) -> None:
    """Join the process group once (MASTER_ADDR and MASTER_PORT from the environment)."""
    if place.distributed and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", rank=place.rank, world_size=place.size
        )


def process_gpu(place: World) -> torch.device:
    """In a group on a GPU node, each process takes its own GPU (LOCAL_RANK)."""
    torch.cuda.set_device(place.local_rank)
    return torch.device("cuda", place.local_rank)


@contextmanager
def replicated(detector: Detector, place: World, device: torch.device) -> Iterator[None]:
    """While training, the detector's model is wrapped in DDP (its gradients averaged over the group)."""
    if not place.distributed:
        yield
        return
    plain = detector.model
    ids = [device.index] if device.type == "cuda" else None
    detector.model = DistributedDataParallel(plain, device_ids=ids)  # type: ignore[assignment]
    try:
        yield
    finally:
        detector.model = plain


def unwrapped(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model
