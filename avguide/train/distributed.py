"""Data-parallel training with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m avguide.cli train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; without
them everything runs in one process. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from avguide.errors import BadInputError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """Initialise the process group if launched by torchrun; pick the device.

    Args:
        device: "auto" (cuda:LOCAL_RANK if available else cpu), "cpu" or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda and not (torch.cuda.is_available() and local < torch.cuda.device_count()):
        raise BadInputError(f"device={device}: no CUDA device {local} on this machine (torch sees "
                            f"{torch.cuda.device_count() if torch.cuda.is_available() else 'none'}); "
                            "use device=cpu or device=auto")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank, world, dev)


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """Move to the device and wrap in DDP when running several processes."""
    model = model.to(ctx.device)
    if ctx.world_size > 1:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (for state dicts)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def mean_across(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average logged floats over processes (identity with one process)."""
    if ctx.world_size == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def from_main(flag: bool, ctx: DistContext) -> bool:
    """The main process's ``flag`` on every process (identity with one process)."""
    if ctx.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def assert_replicas_equal(model: torch.nn.Module, ctx: DistContext) -> None:
    """Check every process holds bit-identical parameters (cheap: one checksum vector).

    Raises:
        RuntimeError: the replicas drifted (a DDP bug or non-deterministic update).
    """
    if ctx.world_size == 1:
        return
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in unwrap(model).parameters()]).to(ctx.device)
    gathered = [torch.empty_like(sums) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, sums)
    if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
        raise RuntimeError("data-parallel replicas differ after the update")
