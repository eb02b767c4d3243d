"""Data parallelism for one run, under `accelerate launch` (or torchrun): DistributedDataParallel around the
task's loss module (`tasks.TaskModel`), so gradients are averaged by DDP's bucketed all-reduce, overlapped
with the backward pass. Every rank trains on its share of each global batch (`data.StepBatches`); rank 0
alone evaluates and writes files, the others wait for it.

    accelerate launch --num_processes 4 -m vlpeft.cli train …
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    device: torch.device | None = None   # the device accelerate assigned this rank (None: single process)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP around the loss module when there are several ranks; the module itself otherwise."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a scalar (the global batch's loss, for logging and the divergence check)."""
        if self.world > 1:
            t = t.detach().clone()
            torch.distributed.all_reduce(t)
            t /= self.world
        return t

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def ranks() -> Ranks:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    from accelerate import PartialState  # initialises the process group (gloo on CPU, NCCL on CUDA)
    state = PartialState()
    return Ranks(state.process_index, state.num_processes, state.device)
