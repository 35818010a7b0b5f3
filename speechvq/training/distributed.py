"""Data-parallel set-up under torchrun: process group, device, rank helpers.

torchrun (``python -m torch.distributed.run --nproc_per_node N ...``) sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; without them training runs in one process. The backend is
NCCL on CUDA and gloo on CPU. Rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from speechvq.errors import SpeechVQError

# Rank 0 validates and checkpoints while the other ranks wait in a collective; NCCL's default
# watchdog (10 minutes) would abort them. SPEECHVQ_DIST_TIMEOUT_MIN overrides this default.
DEFAULT_TIMEOUT_MIN = 60.0
TIMEOUT_ENV = "SPEECHVQ_DIST_TIMEOUT_MIN"


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``device`` it trains on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process (and a process group initialised)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that logs, validates and checkpoints."""
        return self.rank == 0


def _choose_device(preference: str, local_rank: int) -> torch.device:
    if preference not in ("auto", "cpu", "cuda"):
        raise SpeechVQError(f"trainer.device={preference!r}: choose auto, cpu or cuda")
    if preference == "cuda" and not torch.cuda.is_available():
        raise SpeechVQError("trainer.device=cuda: no CUDA device is available")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        # LOCAL_RANK % count would put two ranks on one GPU: NCCL then fails with "duplicate GPU".
        raise SpeechVQError(f"LOCAL_RANK={local_rank} but only {count} CUDA device(s) are visible: "
                            f"run at most {count} processes per node (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


def process_group_timeout(minutes: float | None = None) -> datetime.timedelta:
    """How long a collective may wait: `minutes`, else $SPEECHVQ_DIST_TIMEOUT_MIN, else 60 minutes.

    It must cover what rank 0 does alone while the others wait at a barrier (validation,
    checkpoints, sample generation).
    """
    if minutes is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            minutes = float(raw) if raw else DEFAULT_TIMEOUT_MIN
        except ValueError:
            raise SpeechVQError(f"{TIMEOUT_ENV}={raw!r}: expected a number of minutes") from None
    if not minutes > 0:
        raise SpeechVQError(f"process group timeout must be positive, got {minutes} minutes")
    return datetime.timedelta(minutes=minutes)


def setup_distributed(device: str = "auto", timeout_min: float | None = None) -> DistContext:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1) and pick the device.

    Args:
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``; under torchrun
            each process takes ``cuda:LOCAL_RANK`` (refused when LOCAL_RANK has no device).
        timeout_min: collective timeout in minutes (`process_group_timeout`: default
            $SPEECHVQ_DIST_TIMEOUT_MIN or 60).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ctx = DistContext(rank, local_rank, world_size, _choose_device(device, local_rank))
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if ctx.device.type == "cuda" else "gloo"
        timeout = process_group_timeout(timeout_min)
        if ctx.device.type == "cuda":
            dist.init_process_group(backend, timeout=timeout, device_id=ctx.device)
        else:
            dist.init_process_group(backend, timeout=timeout)
    return ctx


def teardown_distributed() -> None:
    """Destroy the process group if one was initialised (safe to call always)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def check_same_step(ctx: DistContext, step: int, source: str = "checkpoints/last.pt") -> None:
    """Fail fast, on every rank alike, unless every rank is at rank 0's `step` (no-op in one process).

    Each rank resumes from its own view of `source`; ranks that do not share the run directory
    (rank 0 alone writes checkpoints) or see different files would start at different steps and
    then wait forever in mismatched collectives. One all_gather, then the same one-line
    SpeechVQError everywhere.
    """
    if not ctx.distributed:
        return
    mine = torch.tensor([int(step)], dtype=torch.int64, device=ctx.device)
    gathered = [torch.zeros_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    steps = [int(t) for t in gathered]  # once, before the first training step
    if any(s != steps[0] for s in steps):
        others = ", ".join(f"rank {r} at step {s}" for r, s in enumerate(steps) if s != steps[0])
        raise SpeechVQError(f"ranks would resume from different steps (rank 0 at step {steps[0]}; {others}): "
                            f"every rank must see the same {source}; put run_dir on a file system shared "
                            "by all ranks (rank 0 alone writes checkpoints)")
