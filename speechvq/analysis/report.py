"""The samples page of a recipe run: one static HTML file with its audio and images.

``build_report(RUN)`` reads what the recipe's stages left in the run directory and writes
``RUN/report/index.html`` plus ``RUN/report/assets/`` (copied wavs, PNG spectrograms and
plots). Every link in the page is relative, so the folder can be copied or served as is.
A part whose inputs are missing is left out with a note; the page is always written.

The run directory (``recipes/vctk/run.sh --out RUN``)::

    RUN/data/manifest.jsonl           prepared corpus: ids, speakers, splits, texts of the sources;
                                      target speakers' recordings of the sources' sentences (F0 plots)
    RUN/vqvae/config.yaml             VQ-VAE config                   -> which decoder (WaveNet, source-filter)
    RUN/vocoder/config.yaml           unit vocoder config, if any     -> the decoder of the conversions
    RUN/vqvae/tb/                     VQ-VAE TensorBoard logs         -> training curves
    RUN/vqvae/diagnose.json           `speechvq diagnose`             -> usage, collapse gap
    RUN/codes/                        `speechvq encode --data`        -> code usage plot
    RUN/prior/tb/                     prior TensorBoard logs          -> training curves
    RUN/prior/evaluate.json           `speechvq evaluate`             -> bits per code, bitrate
    RUN/prior/samples/*.wav           `speechvq sample`               -> prior samples
    RUN/probe/probe.json, *.png       `speechvq probe`                -> probe numbers and figures
    RUN/convert/**/conversions.jsonl  `speechvq convert|reconstruct`  -> originals, reconstructions, conversions
    RUN/score/*.json                  `speechvq score`                -> score tables
    RUN/score/real.json               `speechvq score --real`         -> the real recordings' scores (ceiling)

Rows of ``conversions.jsonl`` whose target speaker is the source speaker are
reconstructions; the others are conversions. Each source utterance also gets a plot of the
WORLD F0 contours of the source, its reconstruction, its conversions and (dashed) the target
speakers' real recordings of the same sentence.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechvq.errors import AudioError, DataError, SpeechVQError
from speechvq.fileio import atomic_path, read_jsonl, write_text_atomic

REPORT_DIR = "report"
PAGE_NAME = "index.html"
DIAGNOSE_JSON = Path("vqvae") / "diagnose.json"
EVALUATE_JSON = Path("prior") / "evaluate.json"
PROBE_JSON = Path("probe") / "probe.json"
SCORE_DIR = Path("score")
REAL_SCORE_JSON = SCORE_DIR / "real.json"
VQVAE_CONFIG = Path("vqvae") / "config.yaml"
VOCODER_CONFIG = Path("vocoder") / "config.yaml"
_MIC_SUFFIX = re.compile(r"_mic[12]$")
CONVERSIONS_FILE = "conversions.jsonl"

# Scalars plotted per training run (TensorBoard tag substrings, in this order); others follow.
_CURVE_FIRST = ("loss", "nll", "bits", "perplexity", "used_codes", "grad_norm", "lr")
_MAX_CURVES = 12


@dataclass
class _Utterance:
    """One source utterance on the page with its reconstruction and conversions (paths on disk)."""

    source: Path
    speaker: str
    key: str
    id: str | None = None
    split: str | None = None
    text: str | None = None
    reconstruction: Path | None = None
    conversions: dict[str, Path] = field(default_factory=dict)  # target speaker -> output wav
    references: dict[str, Path] = field(default_factory=dict)  # target speaker -> real recording of the sentence


class _Assets:
    """Writes the page's files under OUT/assets and returns their paths relative to OUT."""

    def __init__(self, out: Path):
        self.out = out
        self.dir = out / "assets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._used: set[str] = set()

    def _name(self, stem: str, suffix: str) -> Path:
        base = re.sub(r"[^A-Za-z0-9._+-]+", "_", stem).strip("_") or "file"
        name, n = f"{base}{suffix}", 1
        while name in self._used:
            n += 1
            name = f"{base}_{n}{suffix}"
        self._used.add(name)
        return self.dir / name

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def audio(self, src: Path, stem: str) -> str:
        """Copy a wav into the assets; return its relative path."""
        dest = self._name(stem, src.suffix.lower() or ".wav")
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        return self.rel(dest)

    def figure(self, fig, stem: str) -> str:
        """Save a matplotlib Figure as PNG; return its relative path."""
        dest = self._name(stem, ".png")
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi)
        return self.rel(dest)

    def image(self, src: Path, stem: str) -> str:
        """Copy an existing PNG/SVG/JPEG image; return its relative path."""
        dest = self._name(stem, src.suffix.lower())
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        return self.rel(dest)


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


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return html.escape(str(value))


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (int, float, bool, str))


def _table(rows: dict[str, dict], first_header: str) -> str:
    """HTML table: one row per key of `rows`, one column per scalar key found in any row."""
    columns: list[str] = []
    for metrics in rows.values():
        for key, value in metrics.items():
            if _is_scalar(value) and key not in columns:
                columns.append(key)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [first_header, *columns])
    body = "".join(
        "<tr><td>" + html.escape(name) + "</td>" + "".join(f"<td>{_fmt(m.get(c))}</td>" for c in columns) + "</tr>"
        for name, m in rows.items()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(metrics: dict) -> str:
    """Two-column table of a JSON object's scalar entries."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items() if _is_scalar(v))
    return f"<table class='kv'><tbody>{body}</tbody></table>"


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        notes.append(f"{path.name}: unreadable JSON ({exc}); left out")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name}: not a JSON object; left out")
        return None
    return data


# ----------------------------------------------------------------------------- headline figures


def _num(value, digits: int = 3) -> str:
    """A number with fixed decimals ("–" when missing or not a number)."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _share(value, digits: int = 0) -> str:
    """A 0..1 share as a percentage ("–" when missing or not a number)."""
    return f"{value:.{digits}%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def decoder_name(run: str | os.PathLike, notes: list[str] | None = None) -> str | None:
    """Which decoder generated the run's outputs, in words; None when the run has no config.

    The unit vocoder's (RUN/vocoder/config.yaml) when the run has one, since the conversions
    then used it, else the VQ-VAE's own decoder (RUN/vqvae/config.yaml):
    ``config["model"]["decoder"]["type"]`` (default ``wavenet``). An unreadable config gives
    None and a note in `notes`.
    """
    import yaml

    run = Path(run)
    vocoder = (run / VOCODER_CONFIG).is_file()
    path = run / (VOCODER_CONFIG if vocoder else VQVAE_CONFIG)
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        kind = config["model"]["decoder"].get("type", "wavenet")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        if notes is not None:
            notes.append(f"{path.relative_to(run)}: no model.decoder in it ({type(exc).__name__}); decoder not named")
        return None
    words = {"wavenet": "autoregressive WaveNet", "source_filter": "source-filter"}.get(str(kind), str(kind))
    if vocoder:
        return f"{words} unit vocoder (RUN/vocoder)"
    return "source-filter (VQ-VAE decoder)" if kind == "source_filter" else words


def headline_figures(run: str | os.PathLike) -> list[tuple[str, str]]:
    """The run's key numbers as (label, value text) pairs, from the JSON results present.

    The decoder that generated the outputs, probe many-to-one accuracy against the majority
    baseline, the collapse gap, the prior's bits per code against the unigram entropy,
    conversion speaker similarity (target vs source), the share closer to the target (also of
    the real recordings, RUN/score/real.json), the share whose F0 is closer to the target's,
    code agreement, MCD, and for reconstructions the voiced frames kept, the median F0 error
    and the spectral flatness ratio. Keys missing from a score file show as "–".
    """
    run = Path(run)
    notes: list[str] = []
    out: list[tuple[str, str]] = []
    decoder = decoder_name(run)
    if decoder is not None:
        out.append(("decoder", decoder))
    probe = _read_json(run / PROBE_JSON, notes)
    if probe and probe.get("many_to_one_accuracy") is not None:
        m2o, base = probe["many_to_one_accuracy"], probe.get("majority_baseline")
        ratio = f" ({m2o / base:.1f}x)" if base else ""
        out.append(("probe many-to-one accuracy", f"{_num(m2o)} vs majority baseline {_num(base)}{ratio}"))
        if probe.get("pnmi") is not None:
            out.append(("probe PNMI", _num(probe["pnmi"])))
    diagnose = _read_json(run / DIAGNOSE_JSON, notes)
    if diagnose and diagnose.get("collapse_gap_bits_per_sample") is not None:
        out.append(("collapse gap", f"{_num(diagnose['collapse_gap_bits_per_sample'])} bits/sample "
                    f"(own codes {_num(diagnose.get('nll_true_bits_per_sample'))}, "
                    f"other codes {_num(diagnose.get('nll_other_bits_per_sample'))})"))
        out.append(("codebook", f"{_fmt(diagnose.get('used_codes'))} codes used, "
                    f"perplexity {_num(diagnose.get('perplexity'), 1)}"))
    evaluate = _read_json(run / EVALUATE_JSON, notes)
    if evaluate and evaluate.get("prior_bits_per_code") is not None:
        out.append(("prior", f"{_num(evaluate['prior_bits_per_code'])} bits/code vs unigram "
                    f"{_num(evaluate.get('unigram_bits_per_code'))}, "
                    f"bitrate {_num(evaluate.get('bitrate_bits_per_second'), 0)} bit/s"))
    real = _read_json(run / REAL_SCORE_JSON, notes)
    real_overall = (real or {}).get("overall")
    real_line = None
    if real is not None:
        share = real_overall.get("closer_to_target") if isinstance(real_overall, dict) else None
        share = _share(share)
        real_line = ("closer to target (real recordings)", f"{share} of real recordings" if share != "–" else "–")
    for name, label in (("conversions", "conversion"), ("reconstructions", "reconstruction")):
        score = _read_json(run / SCORE_DIR / f"{name}.json", notes)
        overall = (score or {}).get("overall") or {}
        if not isinstance(overall, dict) or not overall:
            continue
        if label == "conversion":
            out.append(("speaker similarity", f"target {_num(overall.get('target_similarity'))} "
                        f"vs source {_num(overall.get('source_similarity'))}"))
            share = _share(overall.get("closer_to_target"))
            out.append(("closer to target", f"{share} of conversions" if share != "–" else "–"))
            if real_line is not None:
                out.append(real_line)
                real_line = None
            share = _share(overall.get("f0_closer_to_target"))
            out.append(("F0 closer to target", f"{share} of conversions" if share != "–" else "–"))
        out.append((f"{label} code agreement", _num(overall.get("code_agreement"))))
        mcd = overall.get("mcd_db")
        out.append((f"{label} MCD", f"{_num(mcd, 2)} dB" if mcd is not None else "– (no parallel references)"))
        if label == "reconstruction":
            kept = _share(overall.get("voiced_retention"), 1)
            out.append(("voicing kept", f"{kept} of the sources' voiced frames" if kept != "–" else "–"))
            cents = _num(overall.get("f0_error_cents"), 0)
            out.append(("F0 error", f"{cents} cents (median)" if cents != "–" else "–"))
            ratio = _num(overall.get("flatness_ratio"), 2)
            out.append(("flatness ratio", f"{ratio}x (output / source spectral flatness)" if ratio != "–" else "–"))
    if real_line is not None:
        out.append(real_line)
    return out


# ----------------------------------------------------------------------------- sections


def _manifest_key(row: dict) -> str:
    """A manifest row's utterance key: its id without the speaker (``p225_001`` -> ``001``), else its file's stem."""
    speaker, name = str(row.get("speaker")), str(row.get("id") or Path(str(row.get("source") or "")).stem)
    if name.startswith(f"{speaker}_"):
        name = name[len(speaker) + 1:]
    return _MIC_SUFFIX.sub("", name)


def _same_sentence(a: dict, b: dict) -> bool:
    """False when both manifest rows have transcripts and they differ (VCTK reuses numbers across sentences)."""
    ta, tb = a.get("text"), b.get("text")
    norm = lambda t: re.sub(r"[^a-z0-9' ]+", " ", str(t).lower()).split()  # noqa: E731
    return not (ta and tb) or norm(ta) == norm(tb)


def _collect_utterances(run: Path, max_utterances: int, notes: list[str]) -> list[_Utterance]:
    """Source utterances from every conversions.jsonl under RUN/convert, test split first.

    With the run's manifest, each conversion's target speaker's real recording of the same
    utterance key (and the same transcript where both have one) is its reference.
    """
    rows: list[tuple[Path, dict]] = []
    for jsonl in sorted((run / "convert").rglob(CONVERSIONS_FILE)) if (run / "convert").is_dir() else []:
        try:
            rows.extend((jsonl.parent, r) for r in read_jsonl(jsonl))
        except (json.JSONDecodeError, OSError) as exc:
            notes.append(f"{jsonl.relative_to(run)}: unreadable ({exc}); left out")
    manifest: dict[Path, dict] = {}
    by_key: dict[tuple[str, str], dict] = {}
    if (run / "data" / "manifest.jsonl").is_file():
        for r in read_jsonl(run / "data" / "manifest.jsonl"):
            if r.get("source"):
                manifest[Path(r["source"]).resolve()] = r
                by_key.setdefault((str(r.get("speaker")), _manifest_key(r)), r)
    utterances: dict[Path, _Utterance] = {}
    for folder, r in rows:
        try:
            source = Path(r["source"]).resolve()
            output = Path(r["output"])
            output = output if output.is_absolute() else folder / output
            speaker, target = str(r["source_speaker"]), str(r["target_speaker"])
        except KeyError as exc:
            notes.append(f"a conversions.jsonl row lacks {exc}; row left out")
            continue
        if not output.is_file() or not source.is_file():
            notes.append(f"{output.name if not output.is_file() else source.name}: file missing; left out")
            continue
        utt = utterances.get(source)
        if utt is None:
            info = manifest.get(source, {})
            utt = utterances[source] = _Utterance(
                source=source, speaker=speaker, key=str(r.get("utterance") or source.stem),
                id=info.get("id"), split=info.get("split"), text=info.get("text"))
        if target == speaker:
            utt.reconstruction = output
        else:
            utt.conversions[target] = output
            info = manifest.get(source) or {"speaker": speaker, "id": utt.key}
            ref = by_key.get((target, _manifest_key(info)))
            if ref is not None and _same_sentence(info, ref) and Path(ref["source"]).is_file():
                utt.references[target] = Path(ref["source"])
    order = sorted(utterances.values(), key=lambda u: (u.split != "test", u.id or "", str(u.source)))
    if len(order) > max_utterances:
        notes.append(f"{len(order)} source utterances were converted; the page shows {max_utterances}")
    return order[:max_utterances]


def _score_rows(run: Path, notes: list[str]) -> dict[Path, dict]:
    """Per-output scores from RUN/score/*.json ("conversions" lists), keyed by the resolved output path.

    Files of real recordings (``"real": true``) are left out: their rows score corpus recordings, not outputs.
    """
    rows: dict[Path, dict] = {}
    for path in sorted((run / SCORE_DIR).glob("*.json")) if (run / SCORE_DIR).is_dir() else []:
        score = _read_json(path, notes) or {}
        if score.get("real") is True:
            continue
        for row in score.get("conversions") or []:
            if isinstance(row, dict) and row.get("output"):
                rows[Path(row["output"]).resolve()] = row
    return rows


def _score_caption(row: dict | None) -> str | None:
    """'similarity to target 0.81 / source 0.62 · MCD 7.1 dB · code agreement 0.4 · voicing kept 93% ·
    F0 error 35 cents · flatness ratio 1.21' from a score row (the parts it has)."""
    if not row:
        return None
    parts = []
    if row.get("target_similarity") is not None:
        parts.append(f"similarity to target {_fmt(row['target_similarity'])} / source {_fmt(row.get('source_similarity'))}")
    if row.get("mcd_db") is not None:
        parts.append(f"MCD {row['mcd_db']:.2f} dB")
    if row.get("code_agreement") is not None:
        parts.append(f"code agreement {_fmt(row['code_agreement'])}")
    if _share(row.get("voiced_retention")) != "–":
        parts.append(f"voicing kept {_share(row['voiced_retention'])}")
    if _num(row.get("f0_error_cents"), 0) != "–":
        parts.append(f"F0 error {_num(row['f0_error_cents'], 0)} cents")
    if _num(row.get("flatness_ratio"), 2) != "–":
        parts.append(f"flatness ratio {_num(row['flatness_ratio'], 2)}")
    return " · ".join(parts) or None


def _audio_card(assets: _Assets, wav_path: Path, label: str, stem: str, caption: str | None = None) -> str:
    """A labelled <audio> player with the wav's spectrogram below it (and an optional caption)."""
    from speechvq.audio import SAMPLE_RATE, load_audio  # imports torch: only when there is audio to show

    try:
        wav = load_audio(wav_path)
    except AudioError as exc:
        return f"<div class='card missing'><b>{html.escape(label)}</b><p>{html.escape(str(exc))}</p></div>"
    audio = assets.audio(wav_path, stem)
    image = assets.figure(spectrogram_figure(wav, SAMPLE_RATE), stem + "_spec")
    seconds = wav.shape[0] / SAMPLE_RATE
    return (f"<div class='card'><b>{html.escape(label)}</b> <span class='dur'>{seconds:.2f} s</span>"
            f"<audio controls preload='metadata' src='{audio}'></audio>"
            f"<img src='{image}' alt='spectrogram: {html.escape(label)}'>"
            + (f"<p class='score'>{html.escape(caption)}</p>" if caption else "") + "</div>")


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


def _f0_plot(assets: _Assets, utt: _Utterance, stem: str, notes: list[str]) -> str:
    """The <figure> with the F0 contours of an utterance's source, reconstruction, conversions and
    references ("" when none can be read)."""
    from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, load_audio

    try:
        from speechvq.f0 import world_f0
    except ImportError as exc:  # pragma: no cover - pyworld is a dependency
        notes.append(f"F0 contours left out ({exc})")
        return ""
    colors = {utt.speaker: "C0"}
    for i, target in enumerate(sorted(set(utt.conversions) | set(utt.references))):
        colors.setdefault(target, f"C{(i + 1) % 10}")
    lines = [(f"original ({utt.speaker})", utt.source, colors[utt.speaker], "-")]
    if utt.reconstruction is not None:
        lines.append((f"reconstruction ({utt.speaker})", utt.reconstruction, colors[utt.speaker], ":"))
    for target in sorted(utt.conversions):
        lines.append((f"converted to {target}", utt.conversions[target], colors[target], "-"))
        if target in utt.references:
            lines.append((f"real recording ({target})", utt.references[target], colors[target], "--"))
    tracks = []
    for label, path, color, style in lines:
        try:
            tracks.append((label, world_f0(load_audio(path), SAMPLE_RATE, HOP_LENGTH), color, style))
        except AudioError as exc:
            notes.append(f"{path.name}: {exc}; left out of the F0 plot")
    if not tracks:
        return ""
    rel = assets.figure(f0_contour_figure(tracks, HOP_LENGTH / SAMPLE_RATE), stem + "_f0")
    dashed = " Dashed: the target speaker's real recording of the sentence." if utt.references else ""
    return (f"<figure class='f0'><img class='plot' src='{rel}' alt='F0 contours: {html.escape(stem)}'>"
            f"<figcaption>WORLD F0 (Hz, log scale; unvoiced frames not drawn).{html.escape(dashed)}</figcaption></figure>")


def _samples_section(run: Path, assets: _Assets, max_utterances: int, notes: list[str]) -> str:
    utterances = _collect_utterances(run, max_utterances, notes)
    if not utterances:
        notes.append("no conversions or reconstructions found under convert/; samples left out")
        return ""
    scores = _score_rows(run, notes)
    blocks = []
    for utt in utterances:
        stem = utt.id or f"{utt.speaker}_{utt.key}"
        cards = [_audio_card(assets, utt.source, f"original ({utt.speaker})", stem + "_original")]
        if utt.reconstruction is not None:
            cards.append(_audio_card(assets, utt.reconstruction, f"reconstruction ({utt.speaker})", stem + "_reconstruction",
                                     _score_caption(scores.get(utt.reconstruction.resolve()))))
        for target in sorted(utt.conversions):
            output = utt.conversions[target]
            cards.append(_audio_card(assets, output, f"converted to {target}", f"{stem}_to_{target}",
                                     _score_caption(scores.get(output.resolve()))))
        split = f" <span class='split'>{html.escape(utt.split)} split</span>" if utt.split else ""
        text = f"<p class='text'>“{html.escape(utt.text)}”</p>" if utt.text else ""
        f0 = _f0_plot(assets, utt, stem, notes)
        blocks.append(f"<div class='utt'><h3>{html.escape(stem)}{split}</h3>{text}<div class='row'>{''.join(cards)}</div>"
                      f"{f0}</div>")
    return "<section id='samples'><h2>Reconstructions and conversions</h2>" + "".join(blocks) + "</section>"


def _prior_section(run: Path, assets: _Assets, notes: list[str]) -> str:
    parts = []
    evaluate = _read_json(run / EVALUATE_JSON, notes)
    if evaluate:
        parts.append("<h3>Held-out likelihood</h3>" + _key_values(evaluate))
    samples = sorted((run / "prior" / "samples").glob("*.wav")) if (run / "prior" / "samples").is_dir() else []
    if samples:
        cards = "".join(_audio_card(assets, p, p.stem, "prior_" + p.stem) for p in samples)
        parts.append(f"<h3>Samples from the prior</h3><div class='row'>{cards}</div>")
    else:
        notes.append("no prior samples (prior/samples/*.wav); left out")
    if not evaluate:
        notes.append("no prior evaluation (prior/evaluate.json); left out")
    return "<section id='prior'><h2>Prior over codes</h2>" + "".join(parts) + "</section>" if parts else ""


# Columns of the codes-against-baselines table: (label, where the figure comes from).
_UNIT_COLUMNS = (("many-to-one", "many_to_one_accuracy"), ("PNMI", "pnmi"),
                 ("utterance speaker ID", "utterance_speaker_accuracy"),
                 ("ABX within speaker", "within_speaker"), ("ABX across speaker", "across_speaker"))


def unit_comparison(probe: dict) -> dict[str, dict[str, float | None]]:
    """The probe's codes against its baselines: representation -> {figure key: value}.

    Rows: the codes (many-to-one, PNMI, utterance speaker ID, ABX), z_q and z_e (ABX), each
    k-means baseline (many-to-one, PNMI, utterance speaker ID) and log-mel frames (ABX). Empty
    when the probe JSON has neither ``baselines`` nor ``abx``.
    """
    baselines = {k: v for k, v in (probe.get("baselines") or {}).items()
                 if k != "codes_over_best" and isinstance(v, dict)}
    abx = probe.get("abx") or {}
    if not baselines and not abx:
        return {}

    def abx_of(name: str) -> dict:
        return {mode: (abx.get(mode) or {}).get(name) for mode in ("within_speaker", "across_speaker")}

    rows = {"codes": {key: probe.get(key) for key in ("many_to_one_accuracy", "pnmi", "utterance_speaker_accuracy")}
            | abx_of("codes"), "z_q": abx_of("z_q"), "z_e": abx_of("z_e")}
    rows.update({name.replace("_", " "): dict(b) for name, b in baselines.items()})
    rows["log-mel frames"] = abx_of("logmel")
    return rows


def _units_comparison(probe: dict, assets: _Assets) -> str:
    """Table and bar chart of the codes against the k-means baselines and other representations ("" without them)."""
    rows = unit_comparison(probe)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in _UNIT_COLUMNS)
    body = "".join(f"<tr><td>{html.escape(name)}</td>"
                   + "".join(f"<td>{_fmt(row.get(key))}</td>" for _, key in _UNIT_COLUMNS) + "</tr>"
                   for name, row in rows.items())
    fig = _figure(10.0, 2.6)
    for i, (label, key) in enumerate(c for c in _UNIT_COLUMNS if c[1] != "utterance_speaker_accuracy"):
        ax = fig.add_subplot(1, 4, i + 1)
        shown = [(name, row[key]) for name, row in rows.items() if isinstance(row.get(key), (int, float))]
        ax.barh([n for n, _ in shown][::-1], [v for _, v in shown][::-1],
                color=["C1" if n == "codes" else "C0" for n, _ in shown][::-1])
        ax.set_title(label + ("\n(error rate: lower is better)" if key.endswith("_speaker") else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    rel = assets.figure(fig, "probe_units_vs_baselines")
    count = (probe.get("abx") or {}).get("num_items")
    caption = f"ABX on {count} triphone items of the test split." if count is not None else ""
    return (f"<h3>Codes against baselines</h3><table><thead><tr><th>representation</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table><figure><img class='plot' src='{rel}' alt='codes against baselines'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _probe_section(run: Path, assets: _Assets, notes: list[str]) -> str:
    probe = _read_json(run / PROBE_JSON, notes)
    images = sorted(p for p in (run / "probe").rglob("*") if p.suffix.lower() in (".png", ".svg", ".jpg")) \
        if (run / "probe").is_dir() else []
    if not probe and not images:
        notes.append("no probe results (probe/probe.json); left out")
        return ""
    parts = ["<section id='probe'><h2>Phone and speaker probes</h2>"]
    if probe:
        parts.append(_units_comparison(probe, assets))
        parts.append(_key_values(probe))
        for key, value in probe.items():  # per-phone tables (e.g. F1 per phone), one level deep
            if isinstance(value, dict) and value and all(_is_scalar(v) for v in value.values()):
                cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in value.items())
                parts.append(f"<details><summary>{html.escape(key)}</summary><table><tbody>{cells}</tbody></table></details>")
    for image in images:
        rel = assets.image(image, "probe_" + image.stem)
        parts.append(f"<figure><img class='plot' src='{rel}' alt='{html.escape(image.stem)}'>"
                     f"<figcaption>{html.escape(image.stem)}</figcaption></figure>")
    return "".join(parts) + "</section>"


def code_usage_counts(codes_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Per split, (K,) int64 counts of each code in a codes directory (`speechvq encode --data`)."""
    from speechvq.data.codes import CodesCorpus

    corpus = CodesCorpus(codes_dir)
    counts: dict[str, np.ndarray] = {}
    for split in ("train", "valid", "test"):
        entries = corpus.entries(split)
        if entries:
            all_codes = np.concatenate([corpus.codes(e) for e in entries])
            counts[split] = np.bincount(all_codes, minlength=corpus.num_codes)
    return counts


def _codes_section(run: Path, assets: _Assets, notes: list[str]) -> str:
    parts = []
    diagnose = _read_json(run / DIAGNOSE_JSON, notes)
    if diagnose:
        parts.append("<h3>Codebook diagnosis</h3>" + _key_values(diagnose))
    if (run / "codes" / "manifest.jsonl").is_file():
        try:
            counts = code_usage_counts(run / "codes")
        except DataError as exc:
            counts = {}
            notes.append(f"codes: {exc}; code usage left out")
        if counts:
            fig = _figure(7.0, 2.6)
            ax = fig.add_subplot(1, 1, 1)
            for split, c in counts.items():
                freq = np.sort(c)[::-1] / max(1, c.sum())
                used = int((c > 0).sum())
                entropy = -np.sum(freq[freq > 0] * np.log2(freq[freq > 0]))
                ax.semilogy(np.arange(1, len(freq) + 1), np.where(freq > 0, freq, np.nan),
                            label=f"{split}: {used} used, perplexity {2 ** entropy:.0f}")
            ax.set_xlabel("code rank")
            ax.set_ylabel("frequency")
            ax.legend(fontsize=8)
            fig.tight_layout()
            rel = assets.figure(fig, "code_usage")
            parts.append(f"<h3>Code usage (sorted by frequency)</h3><img class='plot' src='{rel}' alt='code usage'>")
    else:
        notes.append("no codes directory (codes/manifest.jsonl); code usage plot left out")
    if not diagnose:
        notes.append("no codebook diagnosis (vqvae/diagnose.json); left out")
    return "<section id='codes'><h2>Codebook</h2>" + "".join(parts) + "</section>" if parts else ""


def read_scalars(tb_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a TensorBoard log folder (and its sub-folders): tag -> [(step, value)].

    Tags of sub-folder writers are prefixed with the sub-folder's relative path.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    series: dict[str, list[tuple[int, float]]] = {}
    folders = sorted({p.parent for p in tb_dir.rglob("events.out.tfevents.*")})
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        prefix = "" if folder == tb_dir else folder.relative_to(tb_dir).as_posix() + "/"
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(prefix + tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def _curve_order(tag: str) -> tuple[int, str]:
    lowered = tag.lower()
    for i, word in enumerate(_CURVE_FIRST):
        if word in lowered:
            return i, tag
    return len(_CURVE_FIRST), tag


def _curves_section(run: Path, assets: _Assets, notes: list[str]) -> str:
    parts = []
    for name, title in (("vqvae", "VQ-VAE"), ("prior", "prior")):
        tb = run / name / "tb"
        series = read_scalars(tb) if tb.is_dir() else {}
        if not series:
            notes.append(f"no TensorBoard scalars in {name}/tb; {title} training curves left out")
            continue
        tags = sorted(series, key=_curve_order)[:_MAX_CURVES]
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
        rel = assets.figure(fig, f"curves_{name}")
        parts.append(f"<h3>{title}</h3><img class='plot' src='{rel}' alt='{title} training curves'>")
    return "<section id='curves'><h2>Training curves</h2>" + "".join(parts) + "</section>" if parts else ""


def _scores_section(run: Path, notes: list[str]) -> str:
    files = sorted((run / SCORE_DIR).glob("*.json")) if (run / SCORE_DIR).is_dir() else []
    parts = []
    for path in files:
        score = _read_json(path, notes)
        if not score:
            continue
        title = path.stem.replace("_", " ")
        if score.get("real") is True:
            title += " (real recordings of the target speakers: the ceiling)"
        tables = {}
        if isinstance(score.get("overall"), dict):
            tables["overall"] = score["overall"]
        if isinstance(score.get("pairs"), dict):
            tables.update({k: v for k, v in score["pairs"].items() if isinstance(v, dict)})
        if tables:
            parts.append(f"<h3>{html.escape(title)}</h3>" + _table(tables, "pair"))
    if not parts:
        notes.append("no score results (score/*.json); score tables left out")
        return ""
    return "<section id='scores'><h2>Objective scores</h2>" + "".join(parts) + "</section>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
.row{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em;width:270px}
.card audio{width:100%;margin:.3em 0}.card img{width:100%;display:block}.dur,.split{color:#777;font-size:.85em}
.f0{margin:.6em 0 0}.f0 figcaption{color:#555;font-size:.8em}
.text{font-style:italic;margin:.2em 0 .5em}.score{font-size:.8em;color:#444;margin:.3em 0 0}.plot{max-width:100%}.notes{color:#555;font-size:.9em}
"""


def build_report(run: str | os.PathLike, out: str | os.PathLike | None = None, max_utterances: int = 4) -> Path:
    """Write the samples page of run directory `run`; return the path of its index.html.

    Args:
        run: a recipe run directory (layout in the module docstring).
        out: output folder (default ``RUN/report``); its ``assets/`` folder is rewritten.
        max_utterances: how many source utterances get players (test split first).
    """
    run = Path(run)
    if not run.is_dir():
        raise SpeechVQError(f"{run}: no such run directory")
    out = Path(out) if out is not None else run / REPORT_DIR
    shutil.rmtree(out / "assets", ignore_errors=True)
    assets = _Assets(out)
    notes: list[str] = []
    figures = headline_figures(run)
    decoder = decoder_name(run, notes)
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures)
    sections = [
        f"<section id='summary'><h2>Summary</h2><table class='kv'><tbody>{summary}</tbody></table></section>" if figures else "",
        _samples_section(run, assets, max_utterances, notes),
        _prior_section(run, assets, notes),
        _probe_section(run, assets, notes),
        _codes_section(run, assets, notes),
        _curves_section(run, assets, notes),
        _scores_section(run, notes),
    ]
    if not figures:
        notes.append("no headline figures (probe, diagnose, evaluate and score results all missing)")
    notes_html = ("<section id='notes'><h2>Left out</h2><ul class='notes'>"
                  + "".join(f"<li>{html.escape(n)}</li>" for n in dict.fromkeys(notes)) + "</ul></section>") if notes else ""
    title = f"speechvq samples — {html.escape(run.resolve().name)}"
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
            f"<body><h1>{title}</h1><p>VQ-VAE speech units (van den Oord et al. 2017): originals, reconstructions "
            f"from the discrete codes, and the same codes decoded with other speakers' identities.</p>"
            + (f"<p class='decoder'>Decoder of the outputs: <b>{html.escape(decoder)}</b></p>" if decoder else "")
            + "".join(sections) + notes_html + "</body></html>\n")
    index = out / PAGE_NAME
    write_text_atomic(index, page)
    return index
