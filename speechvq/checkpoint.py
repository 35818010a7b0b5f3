"""Self-contained, atomic, code-free checkpoints.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, always read with
``torch.load(..., weights_only=True)`` so that a file from elsewhere cannot run code. Keys:

- ``format_version`` (int) and ``kind`` (``"vqvae"`` or ``"prior"``): checked on load;
- ``model``: the unwrapped module's state dict (no ``module.`` / ``_orig_mod.`` prefixes);
- ``config``: the resolved config as a plain dict;
- ``speakers``: list of speaker names, index = embedding row;
- ``step`` and, for resuming, ``optimizer``, ``scheduler``, ``scaler``, ``rng``;
- anything else the writer adds (e.g. the prior's ``code_counts``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from speechvq.errors import CheckpointError
from speechvq.fileio import atomic_path

FORMAT_VERSION = 1
KINDS = ("vqvae", "prior")


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` (must carry ``kind``) to `path` atomically and durably (fsync), stamping the format version."""
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {payload.get('kind')!r}")
    payload = {**payload, "format_version": FORMAT_VERSION}
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp:  # a checkpoint must survive a power loss too
        torch.save(payload, tmp)
    return path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory meaning its ``best.pt`` else ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        for candidate in (
            path / "checkpoints" / "best.pt",
            path / "checkpoints" / "last.pt",
            path / "best.pt",
            path / "last.pt",
        ):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path}: run directory has no checkpoints/best.pt or checkpoints/last.pt")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, map_location="cpu") -> dict:
    """Load a checkpoint safely (weights_only); refuse newer formats and kinds other than `kind`.

    kind: "vqvae" or "prior"; None accepts either (read ``payload["kind"]`` to tell which).
    """
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable speechvq checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or "kind" not in payload or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a speechvq checkpoint (no kind/format_version)")
    expected = KINDS if kind is None else (kind,)
    if payload["kind"] not in expected:
        wanted = " or ".join(repr(k) for k in expected)
        raise CheckpointError(f"{path}: is a {payload['kind']!r} checkpoint, expected {wanted}")
    if int(payload["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload['format_version']} is newer than this "
            f"speechvq supports ({FORMAT_VERSION}); upgrade speechvq"
        )
    payload["path"] = str(path)
    return payload


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
