"""Score conversions (and reconstructions) listed in ``conversions.jsonl`` against a real corpus.

For each output of ``speechvq convert`` / ``speechvq reconstruct`` (a row of
``DIR/conversions.jsonl``: source, source_speaker, utterance, target_speaker, output):

* ``target_similarity`` / ``source_similarity``: cosine similarity of the output's speaker
  embedding to the target / source speaker's centroid, built from that speaker's real
  utterances in the reference corpus that are neither sources nor outputs in the scored set;
  ``closer_to_target``: target_similarity > source_similarity (null for reconstructions,
  where target = source); ``target_identified``: the target's centroid is the nearest of all
  the scored speakers' centroids (for a reconstruction: the renderer makes its own speaker
  recognisable among the others; null with fewer than two centroids);
* ``mcd_db``: mel-cepstral distortion (DTW) against the target speaker's real recording of
  the same utterance key (unless both have transcripts and they differ), else (VCTK) of the
  same normalised transcript; null where the corpus has none. For a reconstruction this is the
  source recording itself, so scoring a
  reconstruction directory gives the reconstruction MCD;
* ``code_agreement``: share of frames whose code in the output equals the source's (only
  with a VQ-VAE; null otherwise);
* ``phone_agreement``: with a VQ-VAE and a probe result (``speechvq probe``'s JSON), the
  share of the source's phone-aligned frames whose output code maps, through the probe's
  many-to-one code -> phone mapping, to the aligned phone; null where the source has no
  alignment in the corpus;
* ``voiced_retention``: of the source's voiced frames, the share voiced in the output (WORLD
  F0, 10 ms frames, compared frame by frame over the common length: an output has its
  source's length); null where the source has no voiced frame;
* ``f0_error_cents``: for a reconstruction only (a conversion moves the pitch on purpose), the
  median absolute difference in cents between the output's and the source's F0 over the
  frames voiced in both;
* ``output_flatness`` / ``source_flatness``: median spectral flatness (0 tonal .. about 0.5 for
  white noise) over the frames within 40 dB of the signal's loudest; ``flatness_ratio``:
  output / source (above 1: the output is noisier than its source);
* ``envelope_r2``: for a reconstruction only, the share of the source's spectral-envelope
  movements that the output reproduces frame by frame (`metrics.envelope_dynamics_r2`: R^2 of
  band-mean-removed log-mel spectrograms; 1 for a copy, about 0.94 for WORLD resynthesis);
* ``envelope_shape_db``: against the reference (the source's recording for a reconstruction, the
  target speaker's for a conversion), the rms difference in dB of the two average spectral
  shapes (`metrics.envelope_shape_error_db`: the speaker's timbre, which envelope_r2 leaves out);
  ``envelope_tilt_db``: against the same reference, how many dB brighter the output's average
  shape is (its bands above about 1.8 kHz against those below, `metrics.envelope_tilt_db`);
* ``output_log_f0``: the mean natural log of the output's F0 (hertz) over its voiced frames;
  ``f0_closer_to_target``: whether it is nearer the target speaker's mean log F0 than the
  source speaker's, each pooled over the voiced frames of the real utterances of that
  speaker's centroid (null for reconstructions and where a mean is unknown).

With ``real=True`` (``score --real``) each row's output is replaced by its reference, the
target speaker's real recording of the utterance, and scored the same way: the ceiling of
every metric. Rows without a reference are left out. A conversion's reference is another
recording than its source, so its frame-by-frame ``voiced_retention`` is only indicative.

The result is ``{"conversions": [...], "pairs": {"SRC->TGT": {...}}, "overall": {...},
"real": bool}``; in ``pairs`` and ``overall`` the metrics are means over the rows that have
them, except ``f0_error_cents`` (the median); ``closer_to_target``, ``target_identified`` and
``f0_closer_to_target`` are the shares of the rows that have them, ``count`` the rows and
``mcd_count`` the rows with a reference recording.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from speechvq.analysis.metrics import (
    SpeakerEncoder,
    centroid,
    cosine_similarity,
    encode_codes,
    envelope_dynamics_r2,
    envelope_shape,
    envelope_shape_error_db,
    envelope_tilt_db,
    f0_error_cents,
    mcd_frames,
    mcep_features,
    phone_agreement,
    share_equal,
    spectral_flatness,
    voiced_retention,
)
from speechvq.analysis.probe import phone_frame_labels
from speechvq.audio import load_audio
from speechvq.data.alignments import read_alignment
from speechvq.data.corpus import SourceUtterance
from speechvq.errors import DataError, SpeechVQError
from speechvq.f0 import f0_stats, world_f0
from speechvq.fileio import read_jsonl
from speechvq.inference.convert import CONVERSIONS_FILE

CONVERSION_KEYS = ("source", "source_speaker", "utterance", "target_speaker", "output")
METRICS = ("target_similarity", "source_similarity", "closer_to_target", "target_identified", "mcd_db",
           "code_agreement", "phone_agreement", "voiced_retention", "f0_error_cents", "output_flatness",
           "source_flatness", "flatness_ratio", "envelope_r2", "envelope_shape_db", "envelope_tilt_db",
           "output_log_f0", "f0_closer_to_target")
DEFAULT_MAX_REFERENCE_UTTERANCES = 20
F0_HOP_LENGTH = 160  # 10 ms WORLD frames at 16 kHz for the voicing and pitch metrics
_MIC_SUFFIX = re.compile(r"_mic[12]$")


@dataclass(frozen=True)
class Conversion:
    """One row of conversions.jsonl: `source` audio decoded as `target_speaker` into `output`."""

    source: Path
    source_speaker: str
    utterance: str
    target_speaker: str
    output: Path

    @property
    def pair(self) -> str:
        """The pair key, ``"<source_speaker>-><target_speaker>"``."""
        return f"{self.source_speaker}->{self.target_speaker}"


def read_conversions(dirs: Sequence[str | os.PathLike]) -> list[Conversion]:
    """The rows of ``DIR/conversions.jsonl`` of every DIR, in order.

    A relative output path is relative to DIR; an absolute one that no longer exists is looked
    up by file name inside DIR (so a moved directory still scores). Raises DataError for a
    missing or malformed file.
    """
    conversions = []
    for directory in dirs:
        directory = Path(directory)
        path = directory / CONVERSIONS_FILE
        if not path.is_file():
            raise DataError(f"{directory}: no {CONVERSIONS_FILE} (write one with `speechvq convert` or `reconstruct`)")
        try:
            rows = read_jsonl(path)
        except ValueError:
            raise DataError(f"{path}: malformed JSON lines") from None
        for number, row in enumerate(rows, start=1):
            missing = [k for k in CONVERSION_KEYS if not isinstance(row, dict) or k not in row]
            if missing:
                raise DataError(f"{path}:{number}: missing key(s) {', '.join(missing)}")
            output = Path(row["output"])
            if not output.is_absolute():
                output = directory / output
            elif not output.exists() and (directory / output.name).exists():
                output = directory / output.name
            conversions.append(Conversion(Path(row["source"]), str(row["source_speaker"]), str(row["utterance"]),
                                          str(row["target_speaker"]), output))
    return conversions


def read_probe(path: str | os.PathLike) -> dict:
    """A `speechvq probe` JSON result with its many-to-one ``code_to_phone`` mapping (DataError if not)."""
    path = Path(path)
    try:
        probe = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such probe result") from None
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{path}: not a JSON file") from None
    mapping = probe.get("code_to_phone") if isinstance(probe, dict) else None
    if not isinstance(mapping, list) or not all(isinstance(p, str) for p in mapping):
        raise DataError(f"{path}: not a `speechvq probe` result (no code_to_phone list)")
    return probe


def normalize_text(text: str) -> str:
    """Transcript for matching sentences: lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "").split())


class ReferenceIndex:
    """Looks up, in a corpus's utterances, a conversion's source entry, its reference and centroid sets."""

    def __init__(self, utterances: Sequence[SourceUtterance]):
        self.utterances = list(utterances)
        self._by_path = {_resolved(u.path): u for u in self.utterances}
        self._by_key = {(u.speaker, u.key): u for u in self.utterances}
        self._by_text: dict[tuple[str, str], SourceUtterance] = {}
        for u in self.utterances:
            if u.text:
                self._by_text.setdefault((u.speaker, normalize_text(u.text)), u)

    def source_entry(self, conv: Conversion) -> SourceUtterance | None:
        """The corpus entry of `conv.source`: by file path, else by speaker and utterance key."""
        entry = self._by_path.get(_resolved(conv.source))
        if entry is not None:
            return entry
        stem = conv.utterance
        without_speaker = stem[len(conv.source_speaker) + 1:] if stem.startswith(f"{conv.source_speaker}_") else stem
        for key in dict.fromkeys((stem, without_speaker, _MIC_SUFFIX.sub("", without_speaker))):
            entry = self._by_key.get((conv.source_speaker, key))
            if entry is not None:
                return entry
        return None

    def reference(self, conv: Conversion) -> SourceUtterance | None:
        """The target speaker's recording of the same sentence, or None.

        The recording with the same utterance key, unless both have transcripts that differ
        (in VCTK most sentence numbers are different sentences for different speakers); else
        the recording with the same normalised transcript.
        """
        entry = self.source_entry(conv)
        if entry is None:
            return None
        match = self._by_key.get((conv.target_speaker, entry.key))
        if match is not None and entry.text and match.text and normalize_text(entry.text) != normalize_text(match.text):
            match = None
        if match is None and entry.text:
            match = self._by_text.get((conv.target_speaker, normalize_text(entry.text)))
        return match

    def centroid_utterances(self, speaker: str, exclude: set[Path], limit: int) -> list[SourceUtterance]:
        """Up to `limit` of `speaker`'s utterances whose resolved path is not in `exclude` (evenly spread)."""
        pool = [u for u in self.utterances if u.speaker == speaker and _resolved(u.path) not in exclude]
        if len(pool) > limit:
            pool = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, limit).round()]
        return pool


def score_conversions(
    conversions: Sequence[Conversion],
    references: Sequence[SourceUtterance],
    vqvae: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
    max_reference_utterances: int = DEFAULT_MAX_REFERENCE_UTTERANCES,
    f0_method: str = "harvest",
    speaker_encoder: SpeakerEncoder | None = None,
    probe: dict | None = None,
    progress: bool = True,
    real: bool = False,
) -> tuple[dict, list[tuple[Path, str]]]:
    """Score every conversion; returns (the result dict described in the module docstring, failures).

    references: the reference corpus's utterances (`speechvq.data.corpus.list_corpus`).
    vqvae: a VQ-VAE for code agreement (None: ``code_agreement`` is null). probe: a
    `run_probe` result of the same VQ-VAE (its ``code_to_phone`` and ``phone_map``) for phone
    agreement (None: null). real: score each conversion's reference (the target speaker's
    real recording of the utterance) in place of its output, leaving out conversions without
    one (SpeechVQError if none has one). A conversion whose output or source cannot be read is
    listed in the failures as (path, reason) and kept in the result with null metrics and an
    ``error`` field.
    """
    if max_reference_utterances < 1:
        raise SpeechVQError(f"--max-reference-utterances must be at least 1, got {max_reference_utterances}")
    if probe is not None and vqvae is not None and len(probe["code_to_phone"]) != int(vqvae.num_codes):
        raise SpeechVQError(f"the probe result maps {len(probe['code_to_phone'])} codes but the VQ-VAE has "
                            f"{int(vqvae.num_codes)}; probe the same checkpoint")
    index = ReferenceIndex(references)
    if real:
        listed = len(conversions)
        conversions = [replace(c, output=ref.path) for c in conversions if (ref := index.reference(c)) is not None]
        if not conversions:
            raise SpeechVQError(f"--real: none of the {listed} listed conversions has a real recording by its "
                                "target speaker in the reference corpus")
    encoder = speaker_encoder or SpeakerEncoder(device="cpu")
    embed = _Cache(lambda path: encoder.embed(load_audio(path)))
    features = _Cache(lambda path: mcep_features(load_audio(path), f0_method=f0_method))
    shape = _Cache(lambda path: envelope_shape(load_audio(path)))
    pitch = _Cache(lambda path: world_f0(load_audio(path), hop_length=F0_HOP_LENGTH))
    flatness = _Cache(lambda path: spectral_flatness(load_audio(path)))

    # Held out of the centroids: the sources, and (with `real`) the real recordings scored as outputs.
    held_out = {_resolved(p) for c in conversions for p in (c.source, c.output)}
    failures: list[tuple[Path, str]] = []
    centroids: dict[str, np.ndarray | None] = {}
    log_f0_means: dict[str, float | None] = {}
    for speaker in tqdm(sorted({s for c in conversions for s in (c.source_speaker, c.target_speaker)}),
                        desc="score: speaker centroids", unit="spk", disable=not progress):
        embeddings, tracks = [], []
        for utt in index.centroid_utterances(speaker, held_out, max_reference_utterances):
            try:
                embeddings.append(embed(utt.path))
                tracks.append(pitch(utt.path))
            except SpeechVQError as exc:
                failures.append((utt.path, str(exc)))
        centroids[speaker] = centroid(embeddings) if embeddings else None
        stats = f0_stats(tracks)
        log_f0_means[speaker] = None if stats is None else stats.mean

    known = {name: c for name, c in centroids.items() if c is not None}  # candidates for target_identified
    rows = []
    for conv in tqdm(conversions, desc="score (real)" if real else "score", unit="utt", disable=not progress):
        row = {"source": str(conv.source), "output": str(conv.output), "source_speaker": conv.source_speaker,
               "target_speaker": conv.target_speaker, "utterance": conv.utterance, **dict.fromkeys(METRICS)}
        reference = index.reference(conv)
        row["reference"] = None if reference is None else str(reference.path)
        try:
            embedding = embed(conv.output)
            target, source = centroids.get(conv.target_speaker), centroids.get(conv.source_speaker)
            row["target_similarity"] = None if target is None else cosine_similarity(embedding, target)
            row["source_similarity"] = None if source is None else cosine_similarity(embedding, source)
            if conv.target_speaker != conv.source_speaker and target is not None and source is not None:
                row["closer_to_target"] = row["target_similarity"] > row["source_similarity"]
            if target is not None and len(known) > 1:
                nearest = max(known, key=lambda name: cosine_similarity(embedding, known[name]))
                row["target_identified"] = nearest == conv.target_speaker
            if reference is not None:
                row["mcd_db"] = mcd_frames(features(reference.path), features(conv.output))
                row["envelope_shape_db"] = envelope_shape_error_db(shape(reference.path), shape(conv.output))
                row["envelope_tilt_db"] = envelope_tilt_db(shape(reference.path), shape(conv.output))
            if vqvae is not None:
                codes = encode_codes(vqvae, load_audio(conv.output), device)
                source_wav = load_audio(conv.source)
                row["code_agreement"] = share_equal(codes, encode_codes(vqvae, source_wav, device))
                entry = index.source_entry(conv)
                if probe is not None and entry is not None and entry.alignment is not None:
                    labels = phone_frame_labels(read_alignment(entry.alignment), len(source_wav),
                                                probe.get("phone_map"))
                    row["phone_agreement"] = phone_agreement(codes, probe["code_to_phone"], labels)
            row.update(_voicing_metrics(conv, pitch, flatness, log_f0_means))
            if conv.target_speaker == conv.source_speaker:
                row["envelope_r2"] = envelope_dynamics_r2(load_audio(conv.source), load_audio(conv.output))
        except SpeechVQError as exc:
            failures.append((conv.output, str(exc)))
            row.update(dict.fromkeys(METRICS), error=str(exc))
        rows.append(row)

    pairs: dict[str, list[dict]] = {}
    for conv, row in zip(conversions, rows):
        pairs.setdefault(conv.pair, []).append(row)
    result = {
        "conversions": rows,
        "pairs": {pair: aggregate(members) for pair, members in sorted(pairs.items())},
        "overall": aggregate(rows),
        "real": bool(real),
    }
    return result, failures


def _voicing_metrics(conv: Conversion, pitch: _Cache, flatness: _Cache,
                     log_f0_means: dict[str, float | None]) -> dict:
    """The voicing, pitch and flatness fields of `conv`'s row (see the module docstring)."""
    source_f0, output_f0 = pitch(conv.source), pitch(conv.output)
    reconstruction = conv.target_speaker == conv.source_speaker
    stats = f0_stats([output_f0])
    output_log_f0 = None if stats is None else stats.mean
    target_mean, source_mean = log_f0_means.get(conv.target_speaker), log_f0_means.get(conv.source_speaker)
    closer = None
    if not reconstruction and None not in (output_log_f0, target_mean, source_mean):
        closer = bool(abs(output_log_f0 - target_mean) < abs(output_log_f0 - source_mean))
    output_flatness, source_flatness = flatness(conv.output), flatness(conv.source)
    return {
        "voiced_retention": voiced_retention(source_f0, output_f0),
        "f0_error_cents": f0_error_cents(source_f0, output_f0) if reconstruction else None,
        "output_flatness": output_flatness,
        "source_flatness": source_flatness,
        "flatness_ratio": output_flatness / source_flatness if source_flatness > 0 else None,
        "output_log_f0": output_log_f0,
        "f0_closer_to_target": closer,
    }


def aggregate(rows: Sequence[dict]) -> dict:
    """Means of the metrics over `rows` (ignoring nulls), the shares closer to the target, counts.

    ``f0_error_cents`` is the median (a few octave errors would swamp a mean);
    ``closer_to_target`` and ``f0_closer_to_target`` are shares of the conversions that have them.
    """
    def values(key: str) -> list[float]:
        return [float(r[key]) for r in rows if r.get(key) is not None]

    def mean(key: str) -> float | None:
        found = values(key)
        return float(np.mean(found)) if found else None

    def median(key: str) -> float | None:
        found = values(key)
        return float(np.median(found)) if found else None

    return {
        "count": len(rows),
        "target_similarity": mean("target_similarity"),
        "source_similarity": mean("source_similarity"),
        "closer_to_target": mean("closer_to_target"),
        "target_identified": mean("target_identified"),
        "mcd_db": mean("mcd_db"),
        "mcd_count": sum(r.get("mcd_db") is not None for r in rows),
        "code_agreement": mean("code_agreement"),
        "phone_agreement": mean("phone_agreement"),
        "voiced_retention": mean("voiced_retention"),
        "f0_error_cents": median("f0_error_cents"),
        "f0_closer_to_target": mean("f0_closer_to_target"),
        "flatness_ratio": mean("flatness_ratio"),
        "envelope_r2": mean("envelope_r2"),
        "envelope_shape_db": mean("envelope_shape_db"),
        "envelope_tilt_db": mean("envelope_tilt_db"),
    }


SUMMARY_COLUMNS = (  # (aggregate key, heading, width, decimals) of `format_summary`'s table
    ("target_similarity", "sim tgt", 8, 3), ("source_similarity", "sim src", 8, 3),
    ("closer_to_target", "closer", 7, 2), ("target_identified", "ident", 6, 2), ("mcd_db", "MCD dB", 7, 2),
    ("code_agreement", "codes", 6, 3), ("phone_agreement", "phones", 6, 3), ("voiced_retention", "voiced", 6, 3),
    ("f0_error_cents", "F0 ct", 6, 0), ("flatness_ratio", "flat x", 6, 2), ("envelope_r2", "env R2", 6, 3),
    ("envelope_shape_db", "shape", 6, 2), ("envelope_tilt_db", "tilt", 6, 2), ("f0_closer_to_target", "F0 cl", 6, 2),
)


def format_summary(result: dict) -> str:
    """A plain-text table of the per-pair and overall figures of a `score_conversions` result.

    Columns (`SUMMARY_COLUMNS`): speaker similarity to the target and source, share closer to the
    target, share identified as the target among the scored speakers, MCD (dB), code and phone
    agreement, voiced retention, median F0 error (cents), flatness ratio, envelope dynamics R^2
    (reconstructions), envelope shape error and tilt (dB) and share whose F0 is closer to the
    target's.
    """
    header = f"{'pair':<24} {'n':>4} " + " ".join(f"{heading:>{width}}" for _, heading, width, _ in SUMMARY_COLUMNS)
    lines = [header, "-" * len(header)]
    if result.get("real"):
        lines.insert(0, "real recordings of the target speakers (the ceiling)")
    for name, agg in [*result["pairs"].items(), ("overall", result["overall"])]:
        lines.append(f"{name:<24} {agg['count']:>4} "
                     + " ".join(_fmt(agg[key], width, digits) for key, _, width, digits in SUMMARY_COLUMNS))
    return "\n".join(lines)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


class _Cache:
    """Memoises `compute(path)` by resolved path (each file is embedded / analysed once)."""

    def __init__(self, compute: Callable[[Path], object]):
        self._compute = compute
        self._values: dict[Path, object] = {}

    def __call__(self, path: str | os.PathLike):
        key = _resolved(path)
        if key not in self._values:
            self._values[key] = self._compute(key)
        return self._values[key]
