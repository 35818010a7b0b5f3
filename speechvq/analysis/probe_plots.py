"""The probe's figures: the code x phone co-occurrence heatmap and a probe's confusion matrix (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from speechvq.fileio import atomic_path


def plot_cooccurrence(table: np.ndarray, label_names: Sequence[str], path: str | os.PathLike,
                      title: str = "code x phone co-occurrence") -> Path:
    """Heatmap of p(phone | code) for the used codes, written as PNG to `path` (atomically).

    table: (K, P) co-occurrence counts (codes x phones). Rows of the figure are the phones in
    the given order; columns are the used codes sorted by their dominant phone (then by how
    pure they are), so phone-like codes form a diagonal.
    """
    from matplotlib.figure import Figure

    table = np.asarray(table, dtype=np.float64)
    used = np.flatnonzero(table.sum(axis=1) > 0)
    conditional = table[used] / table[used].sum(axis=1, keepdims=True)  # (U, P) p(phone | code)
    dominant = conditional.argmax(axis=1)
    order = np.lexsort((-conditional.max(axis=1), dominant))
    image = conditional[order].T  # (P, U)
    fig = Figure(figsize=(max(6.0, min(24.0, 0.03 * len(used) + 3)), max(4.0, 0.22 * len(label_names) + 1.5)))
    ax = fig.add_subplot()
    mesh = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(np.arange(len(label_names)), labels=list(label_names), fontsize=7)
    ax.set_xlabel(f"code ({len(used)} used; sorted by dominant phone)")
    ax.set_ylabel("phone")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="p(phone | code)")
    return _save_figure(fig, path)


def plot_confusion(confusion: np.ndarray, label_names: Sequence[str], path: str | os.PathLike,
                   title: str = "linear probe confusion") -> Path:
    """Row-normalised (C, C) confusion matrix (rows true, columns predicted) as PNG at `path`."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, dtype=np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = max(5.0, 0.22 * len(label_names) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    mesh = ax.imshow(normalised, interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, labels=list(label_names), rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels=list(label_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="share of the true phone's frames")
    return _save_figure(fig, path)


def _save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path
