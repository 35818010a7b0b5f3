import argparse

import pytest
import torch

from speechvq.checkpoint import FORMAT_VERSION, load_checkpoint, resolve_checkpoint, save_checkpoint, unwrap_model
from speechvq.errors import CheckpointError


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    state = {"w": torch.randn(3, 4)}
    path = save_checkpoint(tmp_path / "a.pt", {"kind": "vqvae", "model": state, "speakers": ["a", "b"], "step": 7})
    payload = load_checkpoint(path, "vqvae")
    assert torch.equal(payload["model"]["w"], state["w"])
    assert payload["speakers"] == ["a", "b"] and payload["step"] == 7
    assert payload["format_version"] == FORMAT_VERSION
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_other_kind_and_newer_format_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "p.pt", {"kind": "prior", "model": {}})
    with pytest.raises(CheckpointError, match="'prior' checkpoint, expected 'vqvae'"):
        load_checkpoint(path, "vqvae")
    assert load_checkpoint(path)["kind"] == "prior"  # kind=None: either kind, read from the payload
    torch.save({"kind": "vocoder?", "format_version": FORMAT_VERSION, "model": {}}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="expected 'vqvae' or 'prior'"):
        load_checkpoint(tmp_path / "o.pt")
    torch.save({"kind": "vqvae", "format_version": FORMAT_VERSION + 1, "model": {}}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "new.pt", "vqvae")


def test_code_carrying_pickles_are_refused(tmp_path):
    # Any object outside weights_only's allow-list stands for a pickle that could run code.
    torch.save({"kind": "vqvae", "format_version": 1, "obj": argparse.Namespace(x=1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt", "vqvae")


def test_garbage_file_is_refused_with_its_name(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(tmp_path / "x.pt", "vqvae")


def test_run_directory_means_best_then_last(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        resolve_checkpoint(tmp_path)
    save_checkpoint(ckpts / "last.pt", {"kind": "vqvae"})
    assert resolve_checkpoint(tmp_path) == ckpts / "last.pt"
    save_checkpoint(ckpts / "best.pt", {"kind": "vqvae"})
    assert resolve_checkpoint(tmp_path) == ckpts / "best.pt"
    with pytest.raises(CheckpointError, match="no such"):
        resolve_checkpoint(tmp_path / "missing.pt")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", {"kind": "vqvae", "step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"kind": "vqvae", "step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path, "vqvae")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_unwrap_model_strips_compile_wrapper():
    net = torch.nn.Linear(2, 2)
    wrapped = torch.nn.Module()
    wrapped._orig_mod = net
    assert unwrap_model(wrapped) is net
