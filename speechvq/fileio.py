"""Atomic file writes: results appear whole under their final name or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


def fsync_file(path: str | os.PathLike) -> None:
    """Flush `path`'s data to the storage device (the file must exist)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush directory `path`'s entries (a rename into it) to the storage device, where supported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    The temporary file keeps the final suffix (so writers that dispatch on the extension,
    such as soundfile, still work). On an exception the temporary file is removed and
    `path` is left untouched.

    The rename alone is atomic against a crash of the process: `path` holds the old or the new
    content. With `fsync`, the file is flushed to the device before the rename and the directory
    after it, so that this also holds after a power loss or kernel crash (for checkpoints and
    manifests; it costs a few milliseconds per file, too much for thousands of audio files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; results are meant to be shared
        if fsync:
            fsync_file(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    """Write `text` to `path` atomically (UTF-8); fsynced unless `fsync` is False (see `atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `path` atomically; fsynced unless `fsync` is False."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj, fsync: bool = True) -> None:
    """Write `obj` as indented JSON to `path` atomically; fsynced unless `fsync` is False."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", fsync=fsync)


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict], fsync: bool = True) -> None:
    """Write one JSON object per line to `path` atomically (manifests); fsynced unless `fsync` is False."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows), fsync=fsync)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
