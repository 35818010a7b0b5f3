"""The state of a run outside the model: random-number generators and the checkpoint directory.

RNG states are stored as tensors and plain lists only, so checkpoints are read with
``weights_only=True``. Of the CUDA generators only the one of the device a process trains on is
saved, so a run resumes on a machine with fewer (or other) visible GPUs. Run directory layout of
checkpoints (`CheckpointDir`)::

    RUN/checkpoints/step_NNNNNNN.pt      every trainer.checkpoint_every steps (the last keep_last kept)
    RUN/checkpoints/last.pt              the latest checkpoint (resumed from by default)
    RUN/checkpoints/best.pt              best validation figure so far
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from speechvq.checkpoint import save_checkpoint
from speechvq.fileio import atomic_path

STEP_FILE = re.compile(r"^step_(\d{7,})\.pt$")


def rng_state(device: torch.device | str | None = None) -> dict:
    """Python, NumPy, torch CPU and, when `device` is a CUDA device, its generator's states as
    checkpoint-safe values (``cuda``: that device's state alone, a ByteTensor)."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    cuda = _cuda_device(device)
    if cuda is not None:
        state["cuda"] = torch.cuda.get_rng_state(cuda)
    return state


def _cuda_device(device: torch.device | str | None) -> torch.device | None:
    """`device` as a CUDA device with an index (None for CPU, None, or without CUDA)."""
    if device is None or not torch.cuda.is_available():
        return None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def set_rng_state(state: Mapping, device: torch.device | str | None = None) -> None:
    """Restore what `rng_state` returned; the CUDA state goes to `device` (when it is a CUDA device).

    Checkpoints of older versions stored every visible device's state (a list): the entry of
    `device`'s index is taken, and a missing one is skipped with a warning (that generator
    keeps its seeded state).
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = _cuda_device(device)
    saved = state.get("cuda")
    if cuda is None or saved is None:
        return
    if isinstance(saved, (list, tuple)):  # every device's state (older checkpoints)
        if cuda.index >= len(saved):
            warnings.warn(f"the checkpoint holds no RNG state for {cuda} (it saved {len(saved)} device(s)): "
                          "that generator is not restored", UserWarning, stacklevel=2)
            return
        saved = saved[cuda.index]
    torch.cuda.set_rng_state(saved, cuda)


def load_scaler_state(scaler: torch.amp.GradScaler, state: Mapping | None) -> bool:
    """Load a GradScaler `state` unless it is empty (a bf16/fp32 run saves its disabled scaler as
    ``{}``, which an enabled scaler refuses): an fp16 run resumed from such a checkpoint starts
    with a fresh scale. True if loaded."""
    if not state:
        return False
    scaler.load_state_dict(dict(state))
    return True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class CheckpointDir:
    """``RUN/checkpoints``: step files, ``last.pt`` and ``best.pt``; writes are atomic, rank 0 only."""

    def __init__(self, run_dir: str | Path, keep_last: int) -> None:
        self.path = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, int(keep_last))

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    def step_files(self) -> list[Path]:
        """step_NNNNNNN.pt files, oldest first."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, payload: dict, step: int) -> Path:
        """Write step_NNNNNNN.pt and point last.pt at the same content; drop step files beyond keep_last."""
        self.path.mkdir(parents=True, exist_ok=True)
        step_path = save_checkpoint(self.path / f"step_{step:07d}.pt", payload)
        self._link(step_path, self.last)
        for old in self.step_files()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return step_path

    def save_best(self, payload: dict) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(self.best, payload)

    @staticmethod
    def _link(source: Path, target: Path) -> None:
        """Make `target` a hard link to `source` atomically (a copy where links are not supported);
        fsynced like the checkpoint itself."""
        with atomic_path(target, fsync=True) as tmp:
            tmp = Path(tmp)
            tmp.unlink(missing_ok=True)
            try:
                tmp.hardlink_to(source)
            except OSError:
                tmp.write_bytes(source.read_bytes())
