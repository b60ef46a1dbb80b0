"""torchrun plumbing for cache builds: rank and world size, and a barrier that fails every rank when one fails.

Never imports torch unless a process group exists (or ``WORLD_SIZE`` > 1): building caches is torch-free.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def init_distributed_from_env(backend: str | None = None) -> tuple[int, int]:
    """Initialise ``torch.distributed`` from torchrun's environment; returns (rank, world_size).

    Does nothing (returns (0, 1)) unless ``WORLD_SIZE`` > 1. The backend defaults to nccl when
    CUDA is available (each rank then uses GPU ``LOCAL_RANK``) and gloo otherwise. Safe to call
    when the process group is already initialised.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch  # lazy: building and reading caches is torch-free; torch only under torchrun
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        logger.info("initialised torch.distributed (%s): rank %d of %d",
                    backend, dist.get_rank(), dist.get_world_size())
    return dist.get_rank(), dist.get_world_size()


def rank_world() -> tuple[int, int]:
    """(rank, world_size) of an initialised process group, else (0, 1); never imports torch itself."""
    if "torch" not in sys.modules:
        return 0, 1
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def phase(world: int, active: bool, fn: Callable[[], Any]) -> None:
    """Run ``fn`` where ``active``, then synchronise all ranks; every rank raises if any failed.

    The synchronisation doubles as the barrier between build steps, and keeps a failure on one
    rank from leaving the others waiting at a barrier forever.
    """
    error: BaseException | None = None
    if active:
        try:
            fn()
        except BaseException as exc:  # re-raised below, after telling the other ranks
            error = exc
    ok = all_ok(error is None, world)
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError("teacher cache build failed on another rank; see that rank's log")


def all_ok(ok: bool, world: int) -> bool:
    """All-reduce a success flag across ranks (a barrier); trivially ``ok`` in one process."""
    if world == 1:
        return ok
    import torch  # lazy: building and reading caches is torch-free; torch only under torchrun
    import torch.distributed as dist  # lazy: building and reading caches is torch-free; torch only under torchrun

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) == 0
