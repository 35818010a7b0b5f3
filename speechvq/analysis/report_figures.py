"""The samples page's figures: matplotlib Figures without pyplot (no global state), Agg canvas.

Each function takes plain data (`speechvq.analysis.report_data`) and returns a Figure; the
page (`speechvq.analysis.report`) saves it as PNG.
"""

from __future__ import annotations

import math

import numpy as np

from speechvq.analysis.report_data import UNIT_COLUMNS


def _figure(width_in: float, height_in: float, dpi: int = 100):
    """A pyplot-free matplotlib Figure (no global state) with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def spectrogram_figure(wav: np.ndarray, sample_rate: int):
    """Log-magnitude STFT of a (n,) float waveform at `sample_rate` hertz (512-point, hop 128) as a Figure."""
    import librosa

    n_fft = 512
    wav = np.pad(wav, (0, max(0, n_fft - wav.shape[0])))
    spec = np.abs(librosa.stft(wav, n_fft=n_fft, hop_length=128))
    db = librosa.amplitude_to_db(spec, ref=np.max(spec) if spec.max() > 0 else 1.0, top_db=80.0)
    fig = _figure(3.4, 1.5)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
              extent=(0, wav.shape[0] / sample_rate, 0, sample_rate / 2000))
    ax.set_axis_off()
    return fig


def f0_contour_figure(tracks: list[tuple[str, np.ndarray, str, str]], hop_seconds: float):
    """F0 contours on a log-frequency axis as a Figure; unvoiced frames (0) are not drawn.

    tracks: (legend label, (F,) F0 in hertz, matplotlib colour, line style) per line.
    hop_seconds: the time between frames.
    """
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    from speechvq.f0 import F0_CEIL, F0_FLOOR

    fig = _figure(7.0, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    voiced_values = []
    for label, f0, color, style in tracks:
        f0 = np.asarray(f0, dtype=np.float64)
        voiced = f0 > 0
        voiced_values.append(f0[voiced])
        ax.plot(np.arange(f0.shape[0]) * hop_seconds, np.where(voiced, f0, np.nan), color=color, ls=style,
                lw=1.6 if style == "-" else 1.2, label=label)
    values = np.concatenate(voiced_values) if voiced_values else np.zeros(0)
    low, high = (values.min() / 1.1, values.max() * 1.1) if values.size else (F0_FLOOR, F0_CEIL)
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ticks = [t for t in (50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600, 800) if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks or [round(math.sqrt(low * high))]))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    if not values.size:
        ax.text(0.5, 0.5, "no voiced frames", transform=ax.transAxes, ha="center", va="center", color="#777")
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("F0 (Hz)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", axis="y", color="#eee")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def units_figure(rows: dict[str, dict]):
    """Bar charts of the codes against the baselines (`unit_comparison` rows), one per figure but
    utterance speaker ID; the codes' bar is orange."""
    fig = _figure(10.0, 2.6)
    for i, (label, key) in enumerate(c for c in UNIT_COLUMNS if c[1] != "utterance_speaker_accuracy"):
        ax = fig.add_subplot(1, 4, i + 1)
        shown = [(name, row[key]) for name, row in rows.items() if isinstance(row.get(key), (int, float))]
        ax.barh([n for n, _ in shown][::-1], [v for _, v in shown][::-1],
                color=["C1" if n == "codes" else "C0" for n, _ in shown][::-1])
        ax.set_title(label + ("\n(error rate: lower is better)" if key.endswith("_speaker") else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def code_usage_figure(counts: dict[str, np.ndarray]):
    """Code frequencies sorted by rank (log scale), one line per split, with its used codes and perplexity."""
    from speechvq.quantization.usage import codebook_usage

    fig = _figure(7.0, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    for split, c in counts.items():
        freq = np.sort(c)[::-1] / max(1, c.sum())
        usage = codebook_usage(c)
        ax.semilogy(np.arange(1, len(freq) + 1), np.where(freq > 0, freq, np.nan),
                    label=f"{split}: {int(usage.used_codes)} used, perplexity {float(usage.perplexity):.0f}")
    ax.set_xlabel("code rank")
    ax.set_ylabel("frequency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(series: dict[str, list[tuple[int, float]]], tags: list[str]):
    """Training curves: one small plot per tag of `series` (tag -> [(step, value)]), three per row."""
    cols = min(3, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig = _figure(3.3 * cols, 2.2 * rows)
    for i, tag in enumerate(tags):
        ax = fig.add_subplot(rows, cols, i + 1)
        steps, values = zip(*series[tag])
        ax.plot(steps, values, lw=1.2)
        ax.set_title(tag, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    fig.tight_layout()
    return fig
