"""Run logging: TensorBoard under RUN/tb and short console lines (rank 0 only).

`RunLogger` is a no-op on other ranks, so the trainer calls it unconditionally.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch


def _format(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


class RunLogger:
    """TensorBoard + console logging for one run.

    Args:
        run_dir: the run directory; events go to ``run_dir/tb``.
        enabled: False on ranks other than 0 (every method then does nothing).
        console: text stream for the one-line summaries (stderr by default).
        write_line: function that prints a line without breaking a tqdm bar (default: print to `console`).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, console=None, write_line=None) -> None:
        self.enabled = enabled
        self._console = console if console is not None else sys.stderr
        self._write_line = write_line
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Log each ``name: value`` as a TensorBoard scalar ``prefix/name``."""
        if not self.enabled:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}" if prefix else name, float(value), step)

    def histogram(self, name: str, counts: torch.Tensor | np.ndarray, step: int) -> None:
        """A histogram of integer counts per bin (e.g. code usage: counts[k] = uses of code k)."""
        if not self.enabled:
            return
        counts = np.asarray(torch.as_tensor(counts).cpu(), dtype=np.float64)
        edges = np.arange(len(counts) + 1, dtype=np.float64) - 0.5
        total = counts.sum()
        if total <= 0:
            return
        centres = np.arange(len(counts), dtype=np.float64)
        self._writer.add_histogram_raw(
            name,
            min=0.0,
            max=float(len(counts) - 1),
            num=float(total),
            sum=float((centres * counts).sum()),
            sum_squares=float((centres**2 * counts).sum()),
            bucket_limits=edges[1:].tolist(),
            bucket_counts=counts.tolist(),
            global_step=step,
        )

    def audio(self, name: str, wav: torch.Tensor | np.ndarray, step: int, sample_rate: int = 16000) -> None:
        """A mono clip, float (T,) in [-1, 1]."""
        if not self.enabled:
            return
        wav = torch.as_tensor(wav).detach().float().cpu().clamp(-1, 1).reshape(1, -1)
        self._writer.add_audio(name, wav, step, sample_rate=sample_rate)

    def text(self, name: str, text: str, step: int = 0) -> None:
        if self.enabled:
            self._writer.add_text(name, text, step)

    def line(self, message: str) -> None:
        """One console line (rank 0)."""
        if not self.enabled:
            return
        if self._write_line is not None:
            self._write_line(message)
        else:
            print(message, file=self._console, flush=True)

    def summary(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        """Console line ``prefix step N: a=1.2 b=3`` (values formatted compactly)."""
        self.line(f"{prefix} step {step}: " + " ".join(f"{k}={_format(float(v))}" for k, v in values.items()))

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled and self._writer is not None:
            self._writer.close()
            self._writer = None
