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

Three modules make the page: `report_data` reads the run (plain data), `report_figures`
draws the figures, and this one copies the assets and fills the Jinja2 template
``templates/samples.html.j2`` (autoescaped: every text from the run is escaped there).
"""

from __future__ import annotations

import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from speechvq.analysis.report_data import (
    DIAGNOSE_JSON,
    EVALUATE_JSON,
    PROBE_JSON,
    UNIT_COLUMNS,
    Utterance,
    code_usage_counts,
    collect_utterances,
    curve_tags,
    decoder_name,
    fmt,
    headline_figures,
    is_scalar,
    read_json,
    read_scalars,
    scalar_items,
    score_caption,
    score_rows,
    score_tables,
    table_columns,
    unit_comparison,
)
from speechvq.analysis.report_figures import (
    code_usage_figure,
    curves_figure,
    f0_contour_figure,
    spectrogram_figure,
    units_figure,
)
from speechvq.errors import AudioError, DataError, SpeechVQError
from speechvq.fileio import atomic_path, write_text_atomic

REPORT_DIR = "report"
PAGE_NAME = "index.html"
TEMPLATE = "samples.html.j2"


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


# ----------------------------------------------------------------------------- sections (template data)


def _audio_card(assets: _Assets, wav_path: Path, label: str, stem: str, caption: str | None = None) -> dict:
    """A labelled <audio> player with the wav's spectrogram below it (and an optional caption);
    an unreadable wav gives a card with its error instead."""
    from speechvq.audio import SAMPLE_RATE, load_audio  # imports torch: only when there is audio to show

    try:
        wav = load_audio(wav_path)
    except AudioError as exc:
        return {"label": label, "error": str(exc)}
    audio = assets.audio(wav_path, stem)
    image = assets.figure(spectrogram_figure(wav, SAMPLE_RATE), stem + "_spec")
    return {"label": label, "error": None, "seconds": wav.shape[0] / SAMPLE_RATE, "audio": audio, "image": image,
            "caption": caption}


def _f0_plot(assets: _Assets, utt: Utterance, stem: str, notes: list[str]) -> dict | None:
    """The F0 contours of an utterance's source, reconstruction, conversions and references
    (None when none can be read): {src, dashed (the caption's second sentence or "")}."""
    from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, load_audio

    try:
        from speechvq.f0 import world_f0
    except ImportError as exc:  # pragma: no cover - pyworld is a dependency
        notes.append(f"F0 contours left out ({exc})")
        return None
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
        return None
    rel = assets.figure(f0_contour_figure(tracks, HOP_LENGTH / SAMPLE_RATE), stem + "_f0")
    dashed = " Dashed: the target speaker's real recording of the sentence." if utt.references else ""
    return {"src": rel, "dashed": dashed}


def _samples_section(run: Path, assets: _Assets, max_utterances: int, notes: list[str]) -> list[dict]:
    """Per source utterance: {stem, split, text, cards (original, reconstruction, conversions), f0}."""
    utterances = collect_utterances(run, max_utterances, notes)
    if not utterances:
        notes.append("no conversions or reconstructions found under convert/; samples left out")
        return []
    scores = score_rows(run, notes)
    blocks = []
    for utt in utterances:
        stem = utt.id or f"{utt.speaker}_{utt.key}"
        cards = [_audio_card(assets, utt.source, f"original ({utt.speaker})", stem + "_original")]
        if utt.reconstruction is not None:
            cards.append(_audio_card(assets, utt.reconstruction, f"reconstruction ({utt.speaker})",
                                     stem + "_reconstruction",
                                     score_caption(scores.get(utt.reconstruction.resolve()))))
        for target in sorted(utt.conversions):
            output = utt.conversions[target]
            cards.append(_audio_card(assets, output, f"converted to {target}", f"{stem}_to_{target}",
                                     score_caption(scores.get(output.resolve()))))
        blocks.append({"stem": stem, "split": utt.split, "text": utt.text, "cards": cards,
                       "f0": _f0_plot(assets, utt, stem, notes)})
    return blocks


def _prior_section(run: Path, assets: _Assets, notes: list[str]) -> dict | None:
    """{evaluate: rows of evaluate.json or None, samples: cards of the prior's samples}; None without either."""
    evaluate = read_json(run / EVALUATE_JSON, notes)
    samples = sorted((run / "prior" / "samples").glob("*.wav")) if (run / "prior" / "samples").is_dir() else []
    cards = [_audio_card(assets, p, p.stem, "prior_" + p.stem) for p in samples]
    if not samples:
        notes.append("no prior samples (prior/samples/*.wav); left out")
    if not evaluate:
        notes.append("no prior evaluation (prior/evaluate.json); left out")
    if not evaluate and not cards:
        return None
    return {"evaluate": scalar_items(evaluate) if evaluate else None, "samples": cards}


def _units_comparison(probe: dict, assets: _Assets) -> dict | None:
    """Table and bar chart of the codes against the k-means baselines and other representations (None without them)."""
    rows = unit_comparison(probe)
    if not rows:
        return None
    chart = assets.figure(units_figure(rows), "probe_units_vs_baselines")
    count = (probe.get("abx") or {}).get("num_items")
    return {"columns": [label for label, _ in UNIT_COLUMNS],
            "rows": [(name, [row.get(key) for _, key in UNIT_COLUMNS]) for name, row in rows.items()],
            "chart": chart, "caption": f"ABX on {count} triphone items of the test split." if count is not None else ""}


def _probe_section(run: Path, assets: _Assets, notes: list[str]) -> dict | None:
    """{units, kv (its scalar values), details (per-phone tables), images (src, stem)}; None without probe results."""
    probe = read_json(run / PROBE_JSON, notes)
    images = sorted(p for p in (run / "probe").rglob("*") if p.suffix.lower() in (".png", ".svg", ".jpg")) \
        if (run / "probe").is_dir() else []
    if not probe and not images:
        notes.append("no probe results (probe/probe.json); left out")
        return None
    section: dict = {"units": None, "kv": None, "details": [], "images": []}
    if probe:
        section["units"] = _units_comparison(probe, assets)
        section["kv"] = scalar_items(probe)
        section["details"] = [  # per-phone tables (e.g. F1 per phone), one level deep
            (key, [(str(k), v) for k, v in value.items()]) for key, value in probe.items()
            if isinstance(value, dict) and value and all(is_scalar(v) for v in value.values())]
    section["images"] = [(assets.image(image, "probe_" + image.stem), image.stem) for image in images]
    return section


def _codes_section(run: Path, assets: _Assets, notes: list[str]) -> dict | None:
    """{diagnose: rows of diagnose.json or None, usage: the code usage plot or None}; None without either."""
    diagnose = read_json(run / DIAGNOSE_JSON, notes)
    usage = None
    if (run / "codes" / "manifest.jsonl").is_file():
        try:
            counts = code_usage_counts(run / "codes")
        except DataError as exc:
            counts = {}
            notes.append(f"codes: {exc}; code usage left out")
        if counts:
            usage = assets.figure(code_usage_figure(counts), "code_usage")
    else:
        notes.append("no codes directory (codes/manifest.jsonl); code usage plot left out")
    if not diagnose:
        notes.append("no codebook diagnosis (vqvae/diagnose.json); left out")
    if not diagnose and usage is None:
        return None
    return {"diagnose": scalar_items(diagnose) if diagnose else None, "usage": usage}


def _curves_section(run: Path, assets: _Assets, notes: list[str]) -> list[tuple[str, str]]:
    """(title, plot) per training run with TensorBoard scalars: the VQ-VAE's, the prior's."""
    plots = []
    for name, title in (("vqvae", "VQ-VAE"), ("prior", "prior")):
        tb = run / name / "tb"
        series = read_scalars(tb) if tb.is_dir() else {}
        if not series:
            notes.append(f"no TensorBoard scalars in {name}/tb; {title} training curves left out")
            continue
        plots.append((title, assets.figure(curves_figure(series, curve_tags(series)), f"curves_{name}")))
    return plots


def _scores_section(run: Path, notes: list[str]) -> list[dict]:
    """{title, columns, rows (name, metrics)} per score file with tables."""
    tables = [{"title": title, "columns": table_columns(rows), "rows": list(rows.items())}
              for title, rows in score_tables(run, notes)]
    if not tables:
        notes.append("no score results (score/*.json); score tables left out")
    return tables


# ----------------------------------------------------------------------------- the page


@lru_cache(maxsize=1)
def _template():
    """The page's Jinja2 template (package data), autoescaped."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("speechvq.analysis", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    return env.get_template(TEMPLATE)


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
    page = {  # built in this order: the notes and the asset names follow it
        "title": f"speechvq samples — {run.resolve().name}",
        "decoder": decoder_name(run, notes),
        "summary": figures,
        "samples": _samples_section(run, assets, max_utterances, notes),
        "prior": _prior_section(run, assets, notes),
        "probe": _probe_section(run, assets, notes),
        "codes": _codes_section(run, assets, notes),
        "curves": _curves_section(run, assets, notes),
        "scores": _scores_section(run, notes),
    }
    if not figures:
        notes.append("no headline figures (probe, diagnose, evaluate and score results all missing)")
    page["notes"] = list(dict.fromkeys(notes))
    index = out / PAGE_NAME
    write_text_atomic(index, _template().render(page))
    return index


__all__ = ["build_report", "code_usage_counts", "decoder_name", "f0_contour_figure", "headline_figures",
           "read_scalars", "spectrogram_figure", "unit_comparison"]
