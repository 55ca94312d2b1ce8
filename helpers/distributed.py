"""Which process this is when a stage runs as several (``accelerate launch``, ``torchrun``), and a barrier.

One process (a notebook, ``python -m helpers.<stage>``) is rank 0 of a world of 1 and nothing here
touches torch.distributed. Under a multi-process launcher the process group is started on first
use (NCCL on CUDA, gloo on CPU) unless the trainer's accelerate state has started it already.
The ranks are assumed to share one filesystem (one host), since they exchange results as files.
"""

from __future__ import annotations

import os

import torch


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless launched as several processes."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
            return 0, 1
        from accelerate import PartialState

        # init_process_group from the launcher's environment; cpu=True picks gloo where there is no GPU
        # (without it accelerate starts a group but reports a single process)
        PartialState(cpu=not torch.cuda.is_available())
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Whether this process writes what all processes share (rank 0, or the only process)."""
    return rank_world()[0] == 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    import torch.distributed as dist

    if rank_world()[1] > 1:
        # NCCL: name this process's GPU, or the barrier guesses one (and warns)
        dist.barrier(device_ids=[torch.cuda.current_device()] if dist.get_backend() == "nccl" else None)
