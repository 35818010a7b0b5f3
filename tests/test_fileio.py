"""Atomic writes: whole or absent, and, with fsync, durable (file before the rename, directory after)."""

from __future__ import annotations

import os

import pytest
import torch

from speechvq import fileio
from speechvq.checkpoint import save_checkpoint
from speechvq.fileio import atomic_path, write_bytes_atomic, write_json_atomic, write_jsonl_atomic, write_text_atomic


def _expected(path):
    return [(os.stat(path).st_ino, False), (os.stat(path.parent).st_ino, True)]


def test_fsync_flushes_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch, fsyncs):
    path = tmp_path / "sub" / "manifest.jsonl"
    order = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(("replace", len(fsyncs))), real_replace(a, b)))
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_text("x\n")
    assert path.read_text() == "x\n"
    assert fsyncs == _expected(path)  # the rename keeps the inode: the file fsynced is the final file
    assert order == [("replace", 1)]  # file fsynced before the rename, directory after it


def test_without_fsync_nothing_is_flushed(tmp_path, fsyncs):
    with atomic_path(tmp_path / "a.wav") as tmp:
        tmp.write_bytes(b"abc")
    write_text_atomic(tmp_path / "b.txt", "b", fsync=False)
    assert fsyncs == []


@pytest.mark.parametrize("write", [
    lambda p: write_text_atomic(p, "text"),
    lambda p: write_bytes_atomic(p, b"bytes"),
    lambda p: write_json_atomic(p, {"a": 1}),
    lambda p: write_jsonl_atomic(p, [{"a": 1}, {"b": 2}]),
])
def test_small_file_helpers_fsync_by_default(tmp_path, fsyncs, write):
    path = tmp_path / "out.json"
    write(path)
    assert fsyncs == _expected(path)


def test_checkpoints_are_fsynced(tmp_path, fsyncs):
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", {"kind": "vqvae", "model": {"w": torch.zeros(3)}})
    assert fsyncs == _expected(path)


def test_a_failed_write_leaves_nothing_and_flushes_nothing(tmp_path, fsyncs):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.json", fsync=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == [] and fsyncs == []


def test_fsync_dir_tolerates_file_systems_that_refuse(tmp_path, monkeypatch):
    def refuse(fd):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "fsync", refuse)
    fileio.fsync_dir(tmp_path)  # no error
