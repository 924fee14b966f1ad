"""Data-parallel runs under torchrun: the process group, which rank writes, and the few collectives the run
needs. A leaf (torch only). Without torchrun every function is the identity of a single process, so a plain
`python main.py` behaves exactly as before (no process group, nothing reduced or gathered).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.run) set WORLD_SIZE and RANK for every process it starts."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def launched_processes() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1)) if launched_by_torchrun() else 1


def init_distributed(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and return this rank's device: on CUDA the
    GPU of its LOCAL_RANK. A single process (no torchrun) keeps `device` and starts no group."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Rank 0: the only process that writes checkpoints, logs, CSV, TensorBoard and results."""
    return rank() == 0


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the rank's GPU; gloo on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_num_boxes(num_boxes: float) -> float:
    """The loss normaliser as DETR computes it under data parallelism: the ground-truth segments of all
    ranks' batches, / world size, clamped to >= 1. DDP averages gradients over ranks, so each rank's loss
    divided by this is the global batch's loss: N ranks x batch b optimise as 1 rank x batch N*b."""
    if not is_distributed():
        return num_boxes
    total = torch.tensor([num_boxes], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return max(float(total.item()) / world_size(), 1.0)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Every logged loss averaged over ranks (= the global batch's loss, see `reduce_num_boxes`); all ranks
    get the same numbers, so a non-finite loss stops every rank together instead of leaving some waiting."""
    if not is_distributed():
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[key] for key in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(stacked)
    return {key: float(value) / world_size() for key, value in zip(keys, stacked.tolist())}


def shard_bounds(length: int) -> tuple[int, int]:
    """This rank's contiguous slice [start, end) of `length` items: disjoint, covering every item once (no
    padding duplicates, unlike DistributedSampler), and in rank order the dataset's order."""
    n, r = world_size(), rank()
    return length * r // n, length * (r + 1) // n


def gather_in_order(items: list) -> list:
    """The concatenation over ranks (in rank order) of every rank's `items`, on every rank; with the
    contiguous shards of `shard_bounds` this is the single-process list."""
    if not is_distributed():
        return items
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def first_error(message: str | None) -> str | None:
    """The first rank's error message (None if every rank succeeded), on every rank: a step where ranks may
    differ (rank 0 alone takes the lock and opens outputs) fails on all ranks with the same line, no hang.
    Also a barrier."""
    if not is_distributed():
        return message
    messages: list = [None] * world_size()
    dist.all_gather_object(messages, message)
    return next((m for m in messages if m is not None), None)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel under torchrun (rank 0's weights broadcast, gradients
    averaged); the model itself in a single process. Some parameters take no part in a configuration's
    losses (e.g. the class head under --enable_classAgnostic), hence find_unused_parameters."""
    if not is_distributed():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
