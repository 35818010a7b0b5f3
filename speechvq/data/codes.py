"""The codes of a corpus on disk: ``CODES/manifest.jsonl`` + one flat int16 file per split.

Layout (written by ``speechvq encode CKPT --data PREPARED --out CODES``)::

    CODES/meta.json        {"num_codes": 512, "codes_per_second": 250, "checkpoint": "...", "speakers": [...]}
    CODES/manifest.jsonl   one line per utterance: id, speaker, split, offset, num_codes
    CODES/<split>.int16    the codes of the split's utterances, concatenated (offset/num_codes in codes)

Codes are indices into the VQ-VAE's codebook, 250 per second of 16 kHz audio.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from speechvq.errors import DataError
from speechvq.fileio import atomic_path, fsync_dir, fsync_file, read_jsonl, write_json_atomic

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class CodeEntry:
    """One utterance's codes: `num_codes` int16 values at `offset` in ``<split>.int16``."""

    id: str
    speaker: str
    split: str
    offset: int
    num_codes: int


class CodesCorpus:
    """Read-only view of a codes directory; codes are memory-mapped, not loaded whole."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / "manifest.jsonl"
        if not manifest.is_file():
            raise DataError(f"{self.root}: not a codes directory (no manifest.jsonl); "
                            "create one with `speechvq encode CKPT --data PREPARED --out DIR`")
        try:
            self._entries = [CodeEntry(**{k: row[k] for k in CodeEntry.__dataclass_fields__})
                             for row in read_jsonl(manifest)]
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise DataError(f"{manifest}: malformed codes manifest ({exc})") from None
        meta_path = self.root / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path}: malformed JSON ({exc})") from None
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def num_codes(self) -> int:
        """Codebook size K (512 unless the VQ-VAE says otherwise)."""
        return int(self.meta.get("num_codes", 512))

    @property
    def speakers(self) -> list[str]:
        """All speaker names, sorted (the VQ-VAE's list when recorded in meta.json)."""
        return list(self.meta.get("speakers") or sorted({e.speaker for e in self._entries}))

    def entries(self, split: str | None = None) -> list[CodeEntry]:
        """Entries of one split (or all), in manifest order."""
        return [e for e in self._entries if split is None or e.split == split]

    def _split_array(self, split: str) -> np.ndarray:
        if split not in self._arrays:
            path = self.root / f"{split}.int16"
            if not path.is_file():
                raise DataError(f"{path}: codes file missing")
            self._arrays[split] = np.memmap(path, dtype=np.int16, mode="r")
        return self._arrays[split]

    def codes(self, entry: CodeEntry) -> np.ndarray:
        """(num_codes,) int64 codes of one utterance."""
        data = self._split_array(entry.split)
        if entry.offset + entry.num_codes > data.shape[0]:
            raise DataError(f"{self.root}: codes of {entry.id} run past the end of {entry.split}.int16")
        return np.asarray(data[entry.offset : entry.offset + entry.num_codes], dtype=np.int64)


def write_corpus_codes(out: str | os.PathLike, items: Iterable[tuple[dict, np.ndarray]], meta: dict) -> CodesCorpus:
    """Write a codes directory from ``(info, codes)`` pairs; info has id, speaker, split.

    Everything is written into a temporary sibling directory that replaces `out` only when
    complete, so an interrupted run leaves no half-written codes directory behind (and the
    temporary directory is removed). Its files and entries are flushed to the device before the
    rename and the parent directory after it, so this also holds after a power loss.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {}
    offsets = {s: 0 for s in SPLITS}
    rows = []
    try:
        try:
            for info, codes in items:
                split = info["split"]
                if split not in files:
                    files[split] = open(tmp / f"{split}.int16", "wb")
                    offsets.setdefault(split, 0)
                arr = np.asarray(codes, dtype=np.int16).reshape(-1)
                files[split].write(arr.tobytes())
                rows.append(CodeEntry(info["id"], info["speaker"], split, offsets[split], int(arr.shape[0])))
                offsets[split] += int(arr.shape[0])
        finally:
            for f in files.values():
                f.close()
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(asdict(row)) + "\n")
        write_json_atomic(tmp / "meta.json", meta, fsync=False)
        for path in sorted(tmp.iterdir()):
            fsync_file(path)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    return CodesCorpus(out)


def save_codes(path: str | os.PathLike, codes: np.ndarray) -> Path:
    """Save one utterance's (F,) codes as int16 ``.npy`` (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(codes, dtype=np.int16).reshape(-1))
    return path


def load_codes(path: str | os.PathLike, num_codes: int) -> np.ndarray:
    """Load a ``.npy`` file of (F,) codes as int64, checking the range [0, num_codes)."""
    path = Path(path)
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy codes file ({exc})") from None
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0:
        raise DataError(f"{path}: empty codes file")
    if not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"{path}: codes must be integers, got {codes.dtype}")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise DataError(f"{path}: codes out of range [0, {num_codes}) (min {codes.min()}, max {codes.max()})")
    return codes.astype(np.int64)
