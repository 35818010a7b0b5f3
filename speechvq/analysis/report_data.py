"""What the samples page shows, read from a run directory (layout: `speechvq.analysis.report`).

Plain data only, no HTML and no figures: the headline figures, the decoder's name, the source
utterances with their reconstructions, conversions and real references, the per-output
scores, the probe's codes-against-baselines rows, the score tables, code counts and
TensorBoard scalars. Problems that leave a part out are appended to a ``notes`` list.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechvq.fileio import read_jsonl

DIAGNOSE_JSON = Path("vqvae") / "diagnose.json"
EVALUATE_JSON = Path("prior") / "evaluate.json"
PROBE_JSON = Path("probe") / "probe.json"
SCORE_DIR = Path("score")
REAL_SCORE_JSON = SCORE_DIR / "real.json"
VQVAE_CONFIG = Path("vqvae") / "config.yaml"
VOCODER_CONFIG = Path("vocoder") / "config.yaml"
CONVERSIONS_FILE = "conversions.jsonl"
_MIC_SUFFIX = re.compile(r"_mic[12]$")

# Scalars plotted per training run (TensorBoard tag substrings, in this order); others follow.
_CURVE_FIRST = ("loss", "nll", "bits", "perplexity", "used_codes", "grad_norm", "lr")
MAX_CURVES = 12

# Columns of the codes-against-baselines table: (label, where the figure comes from).
UNIT_COLUMNS = (("many-to-one", "many_to_one_accuracy"), ("PNMI", "pnmi"),
                ("utterance speaker ID", "utterance_speaker_accuracy"),
                ("ABX within speaker", "within_speaker"), ("ABX across speaker", "across_speaker"))


@dataclass
class Utterance:
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


# ----------------------------------------------------------------------------- values and JSON


def fmt(value) -> str:
    """A table cell's text: "–" for None, yes/no, ints as they are, floats to 4 significant digits."""
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
    return str(value)


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (int, float, bool, str))


def scalar_items(metrics: dict) -> list[tuple[str, object]]:
    """A JSON object's scalar entries, in order (the rows of a two-column table)."""
    return [(str(k), v) for k, v in metrics.items() if is_scalar(v)]


def num(value, digits: int = 3) -> str:
    """A number with fixed decimals ("–" when missing or not a number)."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def share(value, digits: int = 0) -> str:
    """A 0..1 share as a percentage ("–" when missing or not a number)."""
    return f"{value:.{digits}%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def read_json(path: Path, notes: list[str]) -> dict | None:
    """A JSON object file; None when missing, or unreadable or not an object (with a note)."""
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
    probe = read_json(run / PROBE_JSON, notes)
    if probe and probe.get("many_to_one_accuracy") is not None:
        m2o, base = probe["many_to_one_accuracy"], probe.get("majority_baseline")
        ratio = f" ({m2o / base:.1f}x)" if base else ""
        out.append(("probe many-to-one accuracy", f"{num(m2o)} vs majority baseline {num(base)}{ratio}"))
        if probe.get("pnmi") is not None:
            out.append(("probe PNMI", num(probe["pnmi"])))
    diagnose = read_json(run / DIAGNOSE_JSON, notes)
    if diagnose and diagnose.get("collapse_gap_bits_per_sample") is not None:
        out.append(("collapse gap", f"{num(diagnose['collapse_gap_bits_per_sample'])} bits/sample "
                    f"(own codes {num(diagnose.get('nll_true_bits_per_sample'))}, "
                    f"other codes {num(diagnose.get('nll_other_bits_per_sample'))})"))
        out.append(("codebook", f"{fmt(diagnose.get('used_codes'))} codes used, "
                    f"perplexity {num(diagnose.get('perplexity'), 1)}"))
    evaluate = read_json(run / EVALUATE_JSON, notes)
    if evaluate and evaluate.get("prior_bits_per_code") is not None:
        out.append(("prior", f"{num(evaluate['prior_bits_per_code'])} bits/code vs unigram "
                    f"{num(evaluate.get('unigram_bits_per_code'))}, "
                    f"bitrate {num(evaluate.get('bitrate_bits_per_second'), 0)} bit/s"))
    real = read_json(run / REAL_SCORE_JSON, notes)
    real_overall = (real or {}).get("overall")
    real_line = None
    if real is not None:
        closer = share(real_overall.get("closer_to_target") if isinstance(real_overall, dict) else None)
        real_line = ("closer to target (real recordings)", f"{closer} of real recordings" if closer != "–" else "–")
    for name, label in (("conversions", "conversion"), ("reconstructions", "reconstruction")):
        score = read_json(run / SCORE_DIR / f"{name}.json", notes)
        overall = (score or {}).get("overall") or {}
        if not isinstance(overall, dict) or not overall:
            continue
        if label == "conversion":
            out.append(("speaker similarity", f"target {num(overall.get('target_similarity'))} "
                        f"vs source {num(overall.get('source_similarity'))}"))
            closer = share(overall.get("closer_to_target"))
            out.append(("closer to target", f"{closer} of conversions" if closer != "–" else "–"))
            if real_line is not None:
                out.append(real_line)
                real_line = None
            closer = share(overall.get("f0_closer_to_target"))
            out.append(("F0 closer to target", f"{closer} of conversions" if closer != "–" else "–"))
        out.append((f"{label} code agreement", num(overall.get("code_agreement"))))
        mcd = overall.get("mcd_db")
        out.append((f"{label} MCD", f"{num(mcd, 2)} dB" if mcd is not None else "– (no parallel references)"))
        if label == "reconstruction":
            kept = share(overall.get("voiced_retention"), 1)
            out.append(("voicing kept", f"{kept} of the sources' voiced frames" if kept != "–" else "–"))
            cents = num(overall.get("f0_error_cents"), 0)
            out.append(("F0 error", f"{cents} cents (median)" if cents != "–" else "–"))
            ratio = num(overall.get("flatness_ratio"), 2)
            out.append(("flatness ratio", f"{ratio}x (output / source spectral flatness)" if ratio != "–" else "–"))
            r2 = num(overall.get("envelope_r2"), 2)
            out.append(("envelope dynamics", f"R² {r2} (the source's formant movements reproduced)"
                        if r2 != "–" else "–"))
    if real_line is not None:
        out.append(real_line)
    return out


# ----------------------------------------------------------------------------- utterances and their scores


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


def collect_utterances(run: Path, max_utterances: int, notes: list[str]) -> list[Utterance]:
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
    utterances: dict[Path, Utterance] = {}
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
            utt = utterances[source] = Utterance(
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


def score_rows(run: Path, notes: list[str]) -> dict[Path, dict]:
    """Per-output scores from RUN/score/*.json ("conversions" lists), keyed by the resolved output path.

    Files of real recordings (``"real": true``) are left out: their rows score corpus recordings, not outputs.
    """
    rows: dict[Path, dict] = {}
    for path in sorted((run / SCORE_DIR).glob("*.json")) if (run / SCORE_DIR).is_dir() else []:
        score = read_json(path, notes) or {}
        if score.get("real") is True:
            continue
        for row in score.get("conversions") or []:
            if isinstance(row, dict) and row.get("output"):
                rows[Path(row["output"]).resolve()] = row
    return rows


def score_caption(row: dict | None) -> str | None:
    """'similarity to target 0.81 / source 0.62 · MCD 7.1 dB · code agreement 0.4 · voicing kept 93% ·
    F0 error 35 cents · flatness ratio 1.21' from a score row (the parts it has)."""
    if not row:
        return None
    parts = []
    if row.get("target_similarity") is not None:
        parts.append(f"similarity to target {fmt(row['target_similarity'])} "
                     f"/ source {fmt(row.get('source_similarity'))}")
    if row.get("mcd_db") is not None:
        parts.append(f"MCD {row['mcd_db']:.2f} dB")
    if row.get("code_agreement") is not None:
        parts.append(f"code agreement {fmt(row['code_agreement'])}")
    if share(row.get("voiced_retention")) != "–":
        parts.append(f"voicing kept {share(row['voiced_retention'])}")
    if num(row.get("f0_error_cents"), 0) != "–":
        parts.append(f"F0 error {num(row['f0_error_cents'], 0)} cents")
    if num(row.get("flatness_ratio"), 2) != "–":
        parts.append(f"flatness ratio {num(row['flatness_ratio'], 2)}")
    if num(row.get("envelope_r2"), 2) != "–":
        parts.append(f"envelope R² {num(row['envelope_r2'], 2)}")
    return " · ".join(parts) or None


def score_tables(run: Path, notes: list[str]) -> list[tuple[str, dict[str, dict]]]:
    """(title, {row name: metrics}) per RUN/score/*.json with an ``overall`` or ``pairs`` table."""
    files = sorted((run / SCORE_DIR).glob("*.json")) if (run / SCORE_DIR).is_dir() else []
    out = []
    for path in files:
        score = read_json(path, notes)
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
            out.append((title, tables))
    return out


def table_columns(rows: dict[str, dict]) -> list[str]:
    """The columns of a table with one row per key of `rows`: every scalar key found in any row, in order."""
    columns: list[str] = []
    for metrics in rows.values():
        for key, value in metrics.items():
            if is_scalar(value) and key not in columns:
                columns.append(key)
    return columns


# ----------------------------------------------------------------------------- probe, codes, curves


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


def curve_tags(series: dict[str, list]) -> list[str]:
    """The tags plotted of a training run: losses first (`_CURVE_FIRST` order), at most `MAX_CURVES`."""
    def order(tag: str) -> tuple[int, str]:
        lowered = tag.lower()
        for i, word in enumerate(_CURVE_FIRST):
            if word in lowered:
                return i, tag
        return len(_CURVE_FIRST), tag

    return sorted(series, key=order)[:MAX_CURVES]
