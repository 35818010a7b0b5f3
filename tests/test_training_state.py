"""The state of a run outside the model: the CUDA RNG of the device in use only (resumable on fewer
GPUs), an empty GradScaler state skipped, last.pt fsynced."""

from __future__ import annotations

import os

import pytest
import torch

from speechvq.training import state
from speechvq.training.state import CheckpointDir, load_scaler_state, rng_state, set_rng_state


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two pretend CUDA devices whose generator states are byte tensors [index] * 4."""
    states = {0: torch.tensor([0] * 4, dtype=torch.uint8), 1: torch.tensor([1] * 4, dtype=torch.uint8)}
    calls = {"get": [], "set": []}

    def get(device="cuda"):
        device = torch.device(device)
        calls["get"].append(device)
        return states[device.index].clone()

    def set_(new, device="cuda"):
        device = torch.device(device)
        calls["set"].append((device, new.tolist()))
        states[device.index] = new.clone()

    def refuse(*args, **kwargs):
        raise AssertionError("every device's RNG state must not be read or written")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", get)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", refuse)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", refuse)
    return calls


def test_only_the_rng_state_of_the_device_in_use_is_saved_and_restored(fake_cuda):
    saved = rng_state(torch.device("cuda", 1))
    assert saved["cuda"].tolist() == [1] * 4 and fake_cuda["get"] == [torch.device("cuda", 1)]
    # resumed on a machine with one GPU: the state goes to the device in use
    set_rng_state(saved, torch.device("cuda", 0))
    assert fake_cuda["set"] == [(torch.device("cuda", 0), [1] * 4)]
    assert "cuda" not in rng_state(torch.device("cpu")) and "cuda" not in rng_state(None)
    assert rng_state("cuda")["cuda"].tolist() == [1] * 4  # "cuda" alone: the current device


def test_old_checkpoints_with_every_devices_state_are_read(fake_cuda):
    old = {**rng_state(None), "cuda": [torch.full((4,), 7, dtype=torch.uint8), torch.full((4,), 8, dtype=torch.uint8)]}
    set_rng_state(old, torch.device("cuda", 1))
    assert fake_cuda["set"] == [(torch.device("cuda", 1), [8] * 4)]
    with pytest.warns(UserWarning, match="no RNG state for cuda:3"):
        set_rng_state(old, torch.device("cuda", 3))
    assert len(fake_cuda["set"]) == 1
    set_rng_state(old, torch.device("cpu"))  # a CPU resume ignores CUDA states
    assert len(fake_cuda["set"]) == 1


def test_the_cpu_generators_are_restored():
    saved = rng_state(torch.device("cpu"))
    expected = torch.rand(3)
    torch.rand(5)
    set_rng_state(saved, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_an_empty_scaler_state_is_skipped():
    """A bf16 (or fp32) checkpoint stores its disabled GradScaler as {}: an fp16 resume skips it."""
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert disabled.state_dict() == {}
    enabled = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with pytest.raises(RuntimeError):
        enabled.load_state_dict({})  # what the trainer used to do
    assert not load_scaler_state(enabled, disabled.state_dict())
    assert not load_scaler_state(enabled, None)
    assert enabled.get_scale() == 1024.0
    other = torch.amp.GradScaler("cpu", init_scale=8.0)
    assert load_scaler_state(enabled, other.state_dict())
    assert enabled.state_dict()["scale"] == 8.0


def test_last_pt_is_fsynced(tmp_path, fsyncs):
    flushed = fsyncs
    checkpoints = CheckpointDir(tmp_path, keep_last=2)
    step = checkpoints.save({"kind": "vqvae", "model": {}}, 5)
    assert checkpoints.last.read_bytes() == step.read_bytes()
    directory = os.stat(checkpoints.path).st_ino
    # the step file, then last.pt (its own inode when hard-linked, a copy otherwise), each with the directory
    assert flushed[:2] == [(os.stat(step).st_ino, False), (directory, True)]
    assert flushed[2:] == [(os.stat(checkpoints.last).st_ino, False), (directory, True)]
    assert state.STEP_FILE.match(step.name)
