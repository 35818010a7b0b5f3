"""Process-group set-up: one GPU per local rank (refused otherwise) and a collective timeout that
covers rank 0's validation and checkpoints."""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist

from speechvq.errors import SpeechVQError
from speechvq.training import distributed


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend 2 CUDA devices are present; records set_device and init_process_group calls."""
    calls = {"set_device": [], "init": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls["set_device"].append(device))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: calls["init"].append((args, kwargs)))
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    return calls


def _torchrun_env(monkeypatch, local_rank: int, world_size: int = 2) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_each_local_rank_takes_its_own_gpu_with_a_long_timeout(fake_cuda, monkeypatch):
    _torchrun_env(monkeypatch, 1)
    ctx = distributed.setup_distributed("auto")
    assert ctx.device == torch.device("cuda", 1) and ctx.distributed
    assert fake_cuda["set_device"] == [torch.device("cuda", 1)]
    [(args, kwargs)] = fake_cuda["init"]
    assert args == ("nccl",)
    assert kwargs["device_id"] == torch.device("cuda", 1)
    assert kwargs["timeout"] == datetime.timedelta(minutes=distributed.DEFAULT_TIMEOUT_MIN)
    assert kwargs["timeout"] > datetime.timedelta(minutes=10)  # NCCL's default watchdog


@pytest.mark.parametrize("local_rank", [2, 3])
def test_more_local_ranks_than_gpus_is_refused_in_one_line(fake_cuda, monkeypatch, local_rank):
    """LOCAL_RANK % device_count would put two ranks on one GPU (NCCL: duplicate GPU)."""
    _torchrun_env(monkeypatch, local_rank, world_size=4)
    with pytest.raises(SpeechVQError, match=rf"LOCAL_RANK={local_rank} but only 2 CUDA device") as info:
        distributed.setup_distributed("cuda")
    assert "\n" not in str(info.value)
    assert fake_cuda["init"] == [] and fake_cuda["set_device"] == []


def test_timeout_from_argument_and_environment(fake_cuda, monkeypatch):
    _torchrun_env(monkeypatch, 0)
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    distributed.setup_distributed("cuda")
    distributed.setup_distributed("cuda", timeout_min=5)
    assert [kwargs["timeout"] for _, kwargs in fake_cuda["init"]] == [datetime.timedelta(minutes=90),
                                                                       datetime.timedelta(minutes=5)]
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(SpeechVQError, match="SPEECHVQ_DIST_TIMEOUT_MIN"):
        distributed.setup_distributed("cuda")
    with pytest.raises(SpeechVQError, match="positive"):
        distributed.process_group_timeout(0)


def test_gloo_on_cpu_gets_the_timeout_too(fake_cuda, monkeypatch):
    _torchrun_env(monkeypatch, 0)
    ctx = distributed.setup_distributed("cpu")
    assert ctx.device == torch.device("cpu")
    [(args, kwargs)] = fake_cuda["init"]
    assert args == ("gloo",) and "device_id" not in kwargs
    assert kwargs["timeout"] == datetime.timedelta(minutes=distributed.DEFAULT_TIMEOUT_MIN)


def test_single_process_initialises_nothing(fake_cuda, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup_distributed("auto")
    assert ctx.device == torch.device("cuda", 0) and not ctx.distributed
    assert fake_cuda["init"] == []


def _gathering(monkeypatch, steps):
    """dist.all_gather that returns `steps` (one per rank) whatever each rank sends."""
    def all_gather(out, tensor):
        assert tensor.dtype == torch.int64 and tensor.shape == (1,)
        for slot, step in zip(out, steps):
            slot.fill_(step)

    monkeypatch.setattr(dist, "all_gather", all_gather)


def test_ranks_resumed_at_the_same_step_go_on(monkeypatch):
    _gathering(monkeypatch, [30, 30])
    ctx = distributed.DistContext(1, 1, 2, torch.device("cpu"))
    distributed.check_same_step(ctx, 30)


@pytest.mark.parametrize("rank", [0, 1])
def test_ranks_resumed_at_different_steps_fail_fast_in_one_line(monkeypatch, rank):
    """Without a shared run_dir rank 1 finds no last.pt and would start at 0 while rank 0 resumes at 30:
    every rank gets the same error instead of hanging in a collective."""
    _gathering(monkeypatch, [30, 0])
    ctx = distributed.DistContext(rank, rank, 2, torch.device("cpu"))
    with pytest.raises(SpeechVQError, match=r"rank 0 at step 30; rank 1 at step 0.*shared") as info:
        distributed.check_same_step(ctx, 30 if rank == 0 else 0, "RUN/checkpoints/last.pt")
    assert "\n" not in str(info.value) and "RUN/checkpoints/last.pt" in str(info.value)


def test_one_process_checks_nothing(monkeypatch):
    monkeypatch.setattr(dist, "all_gather", lambda *args: pytest.fail("no collective in one process"))
    distributed.check_same_step(distributed.DistContext(0, 0, 1, torch.device("cpu")), 12)
