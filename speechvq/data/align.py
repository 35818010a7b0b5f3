"""Forced alignment of transcripts to phones with pocketsphinx 5 (its bundled en-us model and CMUdict).

`align_corpus(src, out)` writes one TextGrid (tier "phones": lower-case ARPAbet without
stress, silence ``sil``) per utterance that has a transcript, at the audio file's path
relative to `src` with the suffix ``.TextGrid``, so that ``speechvq prepare SRC OUT
--alignments DIR`` attaches them. Utterances that cannot be aligned (words missing from the
dictionary, unreadable audio, a failed search) are listed in ``DIR/align_failures.tsv``;
the rest go on.

How one utterance is aligned (`align_utterance`): the audio gets 0.2 s of silence on each
side and a little Gaussian noise (pocketsphinx fails on perfectly clean synthetic audio
otherwise); a fresh Decoder whose dictionary holds only the utterance's words runs a
word-level pass (``set_align_text``) and then the phone-level pass (``set_alignment``),
with bestpath disabled (it causes "impossible duration" failures) and wide beams. Frames
are 10 ms; their times are shifted by half of pocketsphinx's 25.6 ms analysis window, the
centre of what a frame hears (it removes a 12 ms early bias against espeak-ng's timings).

`compare_alignments` measures an alignment against a reference (absolute and signed error of
the start times of the phones both agree on), `compare_corpus` does so for every TextGrid of
an output folder, and `boundary_report` sums the errors up: mean absolute and signed error,
median signed error, per broad phone class, and the share of boundaries within 10, 20 and
50 ms. That is how the aligner is checked against espeak-ng's timings (`speechvq align
--compare-to`).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechvq.audio import SAMPLE_RATE, float_to_int16, load_audio
from speechvq.data.alignments import Phone, read_alignment, write_textgrid
from speechvq.data.corpus import SourceUtterance, list_corpus
from speechvq.data.phones import OTHER_CLASS, PHONE_CLASSES, SILENCE, normalize_alignment, normalize_phone, phone_class
from speechvq.errors import AudioError, SpeechVQError
from speechvq.fileio import write_text_atomic

PAD_S = 0.2
NOISE_STD = 1e-3  # added noise, in full-scale units (about -60 dBFS)
# Search beams wider than pocketsphinx's defaults (1e-48, 1e-48, 7e-29): the alignment search
# is a single word sequence, so they cost nothing measurable, and the defaults lose the path
# on fast, high-pitched synthetic voices.
BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}
FAILURES_FILE = "align_failures.tsv"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


class AlignmentFailure(Exception):
    """An utterance that could not be aligned: the reason (one line, the message) and, once
    `align_corpus` knows them, the utterance's id and audio path and whether the audio itself
    was unreadable (rather than the transcript or the search failing)."""

    def __init__(self, reason: str, id: str = "", path: str = "", unreadable_audio: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.id = id
        self.path = path
        self.unreadable_audio = unreadable_audio


@dataclass(frozen=True)
class AlignSummary:
    """What `align_corpus` did: utterances aligned now, already aligned, without transcript, failed."""

    aligned: int
    skipped: int
    untranscribed: int
    failures: list[AlignmentFailure]

    @property
    def total(self) -> int:
        return self.aligned + self.skipped + len(self.failures)


@dataclass(frozen=True)
class AlignmentScore:
    """An alignment against a reference: `matched` of the reference's `total` non-silence
    phones found with the same label in the same order; `mean_boundary_error_s` the mean
    absolute difference of the matched phones' start times in seconds; `signed_errors_s`
    (matched,) hypothesis start minus reference start in seconds (positive: the hypothesis
    is late) and `phones` (matched,) the normalised labels of those phones."""

    mean_boundary_error_s: float
    matched: int
    total: int
    signed_errors_s: tuple[float, ...] = ()
    phones: tuple[str, ...] = ()


# --- one utterance ------------------------------------------------------------------------

def transcript_words(text: str) -> list[str]:
    """Lower-case words of a transcript: punctuation dropped, hyphens split, apostrophes kept."""
    return _WORD.findall(text.lower().replace("-", " "))


@lru_cache(maxsize=2)
def load_dictionary(path: str | None = None) -> dict[str, list[str]]:
    """CMUdict as {word: [pronunciation lines "word PH ON ES", alternates as "word(2) ..."]}.

    `path` defaults to the dictionary bundled with pocketsphinx. Read once per process.
    """
    if path is None:
        from pocketsphinx import get_model_path

        path = get_model_path("en-us/cmudict-en-us.dict")
    entries: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            word = fields[0].split("(")[0]
            entries.setdefault(word, []).append(" ".join(fields))
    return entries


def align_utterance(wav: np.ndarray, text: str, dictionary: dict[str, list[str]] | None = None,
                    seed: int = 0) -> list[Phone]:
    """Phone alignment of `text` to `wav` ((n,) float32, 16 kHz), in seconds from the audio's start.

    Labels are lower-case ARPAbet without stress; silences (including pocketsphinx's noise
    phones) are ``sil``. `seed` seeds the added noise. Raises AlignmentFailure naming words
    missing from `dictionary` (CMUdict by default) or when pocketsphinx finds no alignment.
    """
    from pocketsphinx import Decoder

    dictionary = load_dictionary() if dictionary is None else dictionary
    words = transcript_words(text)
    if not words:
        raise AlignmentFailure("transcript has no words")
    missing = sorted({w for w in words if w not in dictionary})
    if missing:
        raise AlignmentFailure(f"words not in the dictionary: {' '.join(missing)}")

    pad = np.zeros(int(PAD_S * SAMPLE_RATE), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_STD, wav.size + 2 * pad.size).astype(np.float32)
    pcm = float_to_int16(np.concatenate([pad, wav, pad]) + noise).tobytes()

    with tempfile.TemporaryDirectory(prefix="speechvq-align-") as tmp:
        dict_path = Path(tmp) / "words.dict"
        dict_path.write_text("".join(line + "\n" for w in sorted(set(words)) for line in dictionary[w]),
                             encoding="utf-8")
        decoder = Decoder(lm=None, dict=str(dict_path), bestpath=False, loglevel="FATAL", **BEAMS)
        frame_rate = int(decoder.config["frate"])
        # pocketsphinx's frame t starts its analysis window (wlen = 25.625 ms) at t / frate; what
        # the frame hears is centred half a window later. Measured against espeak-ng's exact
        # timings (`speechvq synth --voices 6 --utterances 8 --seed 1`, 1394 boundaries,
        # `align --compare-to`): boundaries were early by 12.3 ms median, 16.1 ms mean, before
        # this shift of wlen / 2 = 12.8 ms.
        shift_s = float(decoder.config["wlen"]) / 2
        try:
            decoder.set_align_text(" ".join(words))
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            if decoder.hyp() is None:
                raise AlignmentFailure("word alignment found no path")
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            alignment = decoder.get_alignment()
        except RuntimeError as exc:
            raise AlignmentFailure(f"pocketsphinx: {str(exc).strip() or type(exc).__name__}") from None
    if alignment is None:
        raise AlignmentFailure("phone alignment is empty")
    duration_s = wav.size / SAMPLE_RATE
    phones = []
    for entry in alignment.phones():
        start = min(max(entry.start / frame_rate + shift_s - PAD_S, 0.0), duration_s)
        end = min(max((entry.start + entry.duration) / frame_rate + shift_s - PAD_S, 0.0), duration_s)
        if end > start:
            phones.append(Phone(entry.name, start, end))
    if not any(normalize_phone(p.phone, phone_set="arpabet") != SILENCE for p in phones):
        raise AlignmentFailure("phone alignment is empty")
    return normalize_alignment(phones, phone_set="arpabet", fold=False)


# --- a corpus -----------------------------------------------------------------------------

def output_path(utterance: SourceUtterance, src: Path, out: Path) -> Path:
    """Where the TextGrid of `utterance` goes: its audio path relative to `src`, under `out`."""
    return (out / utterance.path.relative_to(src)).with_suffix(".TextGrid")


def _align_job(job: tuple[SourceUtterance, Path, int]) -> AlignmentFailure | None:
    """Align one utterance and write its TextGrid; returns the failure, or None on success."""
    utterance, target, seed = job
    try:
        wav = load_audio(utterance.path)
    except AudioError as exc:
        return AlignmentFailure(str(exc), utterance.id, str(utterance.path), unreadable_audio=True)
    try:
        phones = align_utterance(wav, utterance.text or "", seed=seed)
    except AlignmentFailure as exc:
        return AlignmentFailure(exc.reason, utterance.id, str(utterance.path), unreadable_audio=False)
    write_textgrid(target, phones, wav.size / SAMPLE_RATE)
    return None


def align_corpus(src: str | os.PathLike, out: str | os.PathLike, layout: str = "auto", workers: int = 2,
                 seed: int = 0, progress: bool = True) -> AlignSummary:
    """Write a phone TextGrid under `out` for every transcribed utterance of the corpus at `src`.

    `seed` seeds the noise added to each utterance (the same seed gives the same TextGrids).
    Utterances whose TextGrid exists already are skipped (a rerun resumes). Failures go to
    ``out/align_failures.tsv`` (id, audio path, reason), which is rewritten on every run.
    Raises SpeechVQError when `src` is not a corpus or none of its utterances has a transcript.
    """
    if workers < 1:
        raise SpeechVQError(f"--workers must be at least 1, got {workers}")
    src, out = Path(src), Path(out)
    utterances = list_corpus(src, layout=layout)
    transcribed = [u for u in utterances if u.text]
    if not transcribed:
        raise SpeechVQError(f"{src}: none of its {len(utterances)} utterances has a transcript")
    jobs = [(u, output_path(u, src, out), seed) for u in transcribed]
    todo = [job for job in jobs if not job[1].is_file()]
    failures: list[AlignmentFailure] = []
    if todo:
        load_dictionary()  # read once here so that forked workers share it
        processes = min(workers, len(todo))
        with multiprocessing.Pool(processes) as pool:
            results = pool.imap_unordered(_align_job, todo, chunksize=4)
            for failure in tqdm(results, total=len(todo), desc="align", unit="utt", disable=not progress):
                if failure is not None:
                    failures.append(failure)
    failures.sort(key=lambda f: f.id)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / FAILURES_FILE, "id\tpath\treason\n"
                      + "".join(f"{f.id}\t{f.path}\t{f.reason}\n" for f in failures))
    return AlignSummary(aligned=len(todo) - len(failures), skipped=len(jobs) - len(todo),
                        untranscribed=len(utterances) - len(transcribed), failures=failures)


# --- checking an alignment ----------------------------------------------------------------

def compare_alignments(reference: list[Phone], hypothesis: list[Phone]) -> AlignmentScore:
    """Score `hypothesis` against `reference` (any phone sets: both are normalised and folded).

    The non-silence label sequences are matched by edit distance; for phones matched with
    equal labels the start times are compared.
    """
    ref = [p for p in normalize_alignment(reference) if p.phone != SILENCE]
    hyp = [p for p in normalize_alignment(hypothesis) if p.phone != SILENCE]
    pairs = _matched_pairs([p.phone for p in ref], [p.phone for p in hyp])
    signed = tuple(hyp[j].start_s - ref[i].start_s for i, j in pairs)
    mean = float(np.mean(np.abs(signed))) if signed else float("nan")
    return AlignmentScore(mean_boundary_error_s=mean, matched=len(pairs), total=len(ref),
                          signed_errors_s=signed, phones=tuple(ref[i].phone for i, _ in pairs))


def boundary_report(scores: list[AlignmentScore]) -> dict:
    """Boundary errors of several alignments pooled over their matched phones (JSON-ready).

    Returns num_alignments, num_boundaries (matched phones), matched_share (of the references'
    non-silence phones), mean_abs_error_s, mean_signed_error_s and median_signed_error_s
    (hypothesis minus reference, seconds), share_within_10_ms / _20_ms / _50_ms (absolute
    error at most that), and by_class: for each broad phone class (`phone_class`) its
    num_boundaries, mean_abs_error_s, mean_signed_error_s and median_signed_error_s. Figures
    without boundaries are None.
    """
    errors = np.array([e for s in scores for e in s.signed_errors_s], dtype=np.float64)
    classes = np.array([phone_class(p) for s in scores for p in s.phones], dtype=object)
    total = sum(s.total for s in scores)

    def summary(e: np.ndarray) -> dict:
        if not e.size:
            return {"num_boundaries": 0, "mean_abs_error_s": None, "mean_signed_error_s": None,
                    "median_signed_error_s": None}
        return {"num_boundaries": int(e.size), "mean_abs_error_s": float(np.mean(np.abs(e))),
                "mean_signed_error_s": float(np.mean(e)), "median_signed_error_s": float(np.median(e))}

    report = {"num_alignments": len(scores), **summary(errors),
              "matched_share": errors.size / total if total else None}
    for ms in (10, 20, 50):
        # A hair of tolerance: boundaries on the 10 ms frame grid land exactly on 10, 20, 50 ms.
        within = np.abs(errors) <= ms / 1000 + 1e-9
        report[f"share_within_{ms}_ms"] = float(within.mean()) if errors.size else None
    report["by_class"] = {name: summary(errors[classes == name]) for name in (*PHONE_CLASSES, OTHER_CLASS)}
    return report


def compare_corpus(out: str | os.PathLike, reference: str | os.PathLike) -> list[AlignmentScore]:
    """Scores of every TextGrid under `out` against the reference alignment at the same relative
    path under `reference` (any supported format: .TextGrid, .phn, .lab; e.g. the espeak-ng
    TextGrids `speechvq synth` writes beside its audio). TextGrids without a reference are
    skipped. Raises SpeechVQError when none has one.
    """
    out, reference = Path(out), Path(reference)
    scores = []
    for grid in sorted(out.rglob("*.TextGrid")):
        stem = reference / grid.relative_to(out).with_suffix("")
        found = [p for p in (stem.parent / (stem.name + ext) for ext in (".TextGrid", ".phn", ".lab")) if p.is_file()]
        if found and found[0].resolve() != grid.resolve():
            scores.append(compare_alignments(read_alignment(found[0]), read_alignment(grid)))
    if not scores:
        raise SpeechVQError(f"{reference}: no reference alignment matches a TextGrid under {out}")
    return scores


def _matched_pairs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j) with a[i] == b[j] on a minimum edit-distance path between a and b."""
    n, m = len(a), len(b)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + (0 if a[i - 1] == b[j - 1] else 1))
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if a[i - 1] == b[j - 1] and cost[i, j] == cost[i - 1, j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j - 1] + 1:
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]
