"""Data-parallel training over processes started by `torchrun --nproc_per_node N`: one process per GPU (NCCL) or per
CPU slot (gloo), gradients averaged by DistributedDataParallel.

`--batch-size` stays the global batch: every rank draws the same index sequence from the same seed and takes its own
contiguous share of each batch, so N ranks see exactly the faces one process sees. Rank 0 alone evaluates, logs,
writes the run folder and saves checkpoints. Batch norm keeps per-rank statistics on a CPU (gloo has no SyncBN); on
CUDA it is synchronised, so a step on N GPUs is the step one process takes on the whole batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from facelm.errors import UserError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env() -> Ranks:
    """This process's rank and the world size, as torchrun sets them (one process when not under torchrun)."""
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def per_rank_batch(batch_size: int, ranks: Ranks) -> int:
    if batch_size % ranks.world:
        raise UserError(f"--batch-size {batch_size} does not split across {ranks.world} ranks; pass a multiple of "
                        f"{ranks.world} (it is the global batch, {ranks.world} shares of it per step)")
    return batch_size // ranks.world


def init_distributed(device: str, ranks: Ranks) -> str:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if ranks.world == 1:
        return device
    if torch.device(device).type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def close_distributed(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


class RankShare(Sampler[list[int]]):
    """Each global batch of a batch sampler, cut into `world` contiguous shares; this rank's share."""

    def __init__(self, batches: Sampler[list[int]], ranks: Ranks):
        self.batches, self.ranks = batches, ranks

    def __iter__(self):
        for batch in self.batches:
            share = len(batch) // self.ranks.world
            yield batch[self.ranks.rank * share: (self.ranks.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.batches)


class _LossModule(torch.nn.Module):
    """A training step as a module, so DDP sees the forward pass that builds the loss."""

    def __init__(self, model: torch.nn.Module, step):
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: dict):
        return self.step(batch)


def data_parallel(model: torch.nn.Module, step, ranks: Ranks, device: str):
    """The step function with gradients averaged over the ranks (the step itself with one process). Heads that get
    no face in a batch take part with zero gradients (find_unused_parameters)."""
    if ranks.world == 1:
        return step
    if torch.device(device).type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped = DistributedDataParallel(_LossModule(model, step), find_unused_parameters=True)
    return wrapped
