"""Prepare a corpus once: resample every utterance to 16 kHz int16 and store it in one flat file
per split, with a manifest, so that training reads random segments without decoding files.

Output folder OUT:

- ``OUT/<split>.int16`` for split in train, valid, test: raw little-endian int16 samples at
  16 kHz, utterances one after another (read them with ``np.memmap``).
- ``OUT/manifest.jsonl``: one line per utterance with exactly the keys ``id``, ``speaker``,
  ``split``, ``num_samples``, ``offset`` (samples into the split's file), ``source`` (absolute
  path of the audio), ``text`` (or null) and ``alignment`` (absolute path of the phone
  alignment, or null).
- ``OUT/rejected.tsv``: ``path<TAB>reason`` for every file that could not be used.
- ``OUT/speakers.txt``: a table (TSV with header) of speakers, utterance counts and seconds.
- ``OUT/prepare.json``: the options of the run, checked when a run is resumed.
- ``OUT/<split>.f0``: WORLD F0 of every frame (`speechvq.data.f0cache`), computed after the audio.

Splits are decided per utterance *key* (the id without the speaker), so on a parallel corpus
a sentence lands in the same split for every speaker. Keys are ranked by a SHA-1 hash; the
first ``test_fraction`` of them are test, the next ``valid_fraction`` valid, the rest train.
Explicit test keys (``test_ids``) replace the test fraction, and held-out speakers go to test
entirely.

Resumable: audio is appended and flushed before the manifest lines that point at it, and
both are fsynced in batches. A restarted run drops a torn last manifest line, truncates the
split files to what the manifest accounts for and skips the utterances (and rejected files)
already recorded, so an interrupted and resumed run gives the same bytes as one that was not
interrupted.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from speechvq.audio import SAMPLE_RATE, float_to_int16, load_audio
from speechvq.data.alignments import read_alignment
from speechvq.data.corpus import SourceUtterance, detect_layout, list_corpus, read_speaker_info
from speechvq.errors import DataError, SpeechVQError
from speechvq.fileio import write_json_atomic, write_text_atomic

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.jsonl"
REJECTED = "rejected.tsv"
OPTIONS = "prepare.json"
SPEAKERS = "speakers.txt"
MANIFEST_KEYS = ("id", "speaker", "split", "num_samples", "offset", "source", "text", "alignment")
SAMPLE_BYTES = 2  # int16
COMMIT_INTERVAL_S = 0.5  # how often appended audio is fsynced and its manifest lines written


def split_file(out: str | os.PathLike, split: str) -> Path:
    """The flat int16 audio file of `split` in the prepared corpus `out`."""
    return Path(out) / f"{split}.int16"


@dataclass
class PrepareSummary:
    """What a prepared corpus holds (after this run and any earlier ones)."""

    out: Path
    utterances: dict[str, int]
    seconds: dict[str, float]
    speakers: int
    rejected: int
    new_utterances: int = 0
    new_rejected: int = 0
    rejected_this_run: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        """A few human-readable lines."""
        total_h = sum(self.seconds.values()) / 3600
        lines = [f"prepared {sum(self.utterances.values())} utterances of {self.speakers} speakers "
                 f"({total_h:.2f} h of audio) in {self.out}"]
        for split in SPLITS:
            lines.append(f"  {split:5s}: {self.utterances.get(split, 0):6d} utterances, "
                         f"{self.seconds.get(split, 0.0) / 3600:.2f} h")
        lines.append(f"  rejected: {self.rejected} (see {self.out / REJECTED})" if self.rejected
                     else "  rejected: 0")
        lines.append(f"  this run: {self.new_utterances} utterances added, {self.new_rejected} rejected")
        return "\n".join(lines)


def read_test_ids(path: str | os.PathLike) -> set[str]:
    """Utterance keys (or full ids) from a text file, one per line; blank lines and # comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such test-ids file")
    ids = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    if not ids:
        raise DataError(f"{path}: no utterance keys in the test-ids file")
    return ids


def assign_splits(sources: list[SourceUtterance], valid_fraction: float, test_fraction: float,
                  test_ids: Iterable[str] | None = None, holdout_speakers: Iterable[str] = ()) -> dict[str, str]:
    """Map each utterance id to "train", "valid" or "test".

    Keys are ranked by SHA-1; the first round(test_fraction * keys) are test (at least one
    when the fraction is positive and there are 3 keys or more), the next valid likewise, the
    rest train. With `test_ids`, exactly the listed keys (or ids) are test and
    `test_fraction` is unused. Utterances of `holdout_speakers` are all test.
    """
    for name, value in (("valid fraction", valid_fraction), ("test fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DataError(f"{name} must be in [0, 1), got {value}")
    holdout = set(holdout_speakers)
    explicit = None if test_ids is None else set(test_ids)
    keys = sorted({s.key for s in sources}, key=lambda k: (hashlib.sha1(k.encode("utf-8")).hexdigest(), k))

    if explicit is not None:
        if not any(s.key in explicit or s.id in explicit for s in sources):
            raise DataError("none of the test ids occur in the corpus (expected utterance keys such as "
                            f"{sources[0].key!r} or ids such as {sources[0].id!r})")
        explicit_keys = [k for k in keys if k in explicit]
        remaining = [k for k in keys if k not in explicit]
        n_valid = _held_out_count(valid_fraction, len(remaining))
        key_split = {k: "test" for k in explicit_keys}
        key_split.update({k: "valid" if i < n_valid else "train" for i, k in enumerate(remaining)})
    else:
        if valid_fraction + test_fraction >= 1.0:
            raise DataError(f"valid fraction + test fraction must be below 1, got {valid_fraction + test_fraction}")
        n_test = _held_out_count(test_fraction, len(keys))
        n_valid = _held_out_count(valid_fraction, len(keys))
        if n_test + n_valid >= len(keys) and len(keys) > 0 and (n_test or n_valid):
            raise DataError(f"only {len(keys)} utterance keys: the valid and test fractions leave none for training")
        key_split = {k: "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
                     for i, k in enumerate(keys)}

    splits = {}
    for s in sources:
        if s.speaker in holdout or (explicit is not None and s.id in explicit):
            splits[s.id] = "test"
        else:
            splits[s.id] = key_split[s.key]
    return splits


def _held_out_count(fraction: float, num_keys: int) -> int:
    count = round(fraction * num_keys)
    if fraction > 0 and count == 0 and num_keys >= 3:
        count = 1
    return count


def prepare_corpus(src: str | os.PathLike, out: str | os.PathLike, layout: str = "auto", workers: int = 2,
                   valid_fraction: float = 0.05, test_fraction: float = 0.05,
                   test_ids: Iterable[str] | None = None, holdout_speakers: Iterable[str] = (),
                   mic: str = "mic1", alignments_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> PrepareSummary:
    """Prepare (or finish preparing) the corpus at `src` into the folder `out`.

    layout: "auto", "vctk", "vctk092", "vctk080" or "folders". workers: processes that decode
    and resample (1 = in this process). Other arguments: see `assign_splits` and `list_corpus`.
    Bad audio files are listed in OUT/rejected.tsv and skipped. Returns the summary.
    """
    src, out = Path(src), Path(out)
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    resolved_layout = detect_layout(src) if layout in ("auto", "vctk") else layout
    sources = list_corpus(src, layout=layout, mic=mic, alignments_dir=alignments_dir)
    if not sources:
        raise DataError(f"{src}: no utterances found (layout {resolved_layout}, {mic})")
    holdout = sorted(set(holdout_speakers))
    unknown = sorted(set(holdout) - {s.speaker for s in sources})
    if unknown:
        raise DataError(f"held-out speaker(s) not in the corpus: {', '.join(unknown)}")
    test_id_list = None if test_ids is None else sorted(set(test_ids))
    splits = assign_splits(sources, valid_fraction, test_fraction, test_id_list, holdout)

    options = {
        "source": os.path.abspath(src), "layout": resolved_layout, "mic": mic,
        "alignments": None if alignments_dir is None else os.path.abspath(alignments_dir),
        "valid_fraction": valid_fraction, "test_fraction": None if test_id_list is not None else test_fraction,
        "test_ids": test_id_list, "holdout_speakers": holdout,
    }
    _check_or_write_options(out, options)

    rows, offsets = _recover_manifest(out)
    rejected_paths = _recover_rejected(out)
    done = {row["id"] for row in rows}
    todo = [s for s in sources if s.id not in done and os.path.abspath(s.path) not in rejected_paths]

    writer = _Writer(out, offsets)
    new_rejected: list[tuple[str, str]] = []
    try:
        bar = tqdm(total=len(sources), initial=len(sources) - len(todo), unit="utt", desc="prepare",
                   disable=not progress, dynamic_ncols=True)
        with bar:
            for source, samples, reason, alignment_reason in _decode_all(todo, workers):
                if samples is None:
                    writer.reject(source.path, reason)
                    new_rejected.append((os.path.abspath(source.path), reason))
                else:
                    alignment = source.alignment
                    if alignment_reason is not None:
                        writer.reject(alignment, f"{alignment_reason} (utterance kept without alignment)",
                                      audio=False)
                        new_rejected.append((os.path.abspath(alignment), alignment_reason))
                        alignment = None
                    writer.add(source, splits[source.id], samples, alignment)
                bar.update(1)
    finally:
        writer.close()

    from speechvq.data.dataset import PreparedCorpus  # dataset imports this module's constants
    from speechvq.data.f0cache import cache_f0

    cache_f0(PreparedCorpus(out), workers=workers, progress=progress)
    summary = summarize(out)
    summary.new_utterances = writer.added
    summary.new_rejected = writer.rejected_audio
    summary.rejected_this_run = new_rejected
    _write_speakers(out, src)
    return summary


def summarize(out: str | os.PathLike) -> PrepareSummary:
    """Counts of the prepared corpus in `out` from its manifest and rejected list."""
    out = Path(out)
    utterances: Counter = Counter()
    seconds: Counter = Counter()
    speakers = set()
    with open(out / MANIFEST, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            utterances[row["split"]] += 1
            seconds[row["split"]] += row["num_samples"] / SAMPLE_RATE
            speakers.add(row["speaker"])
    rejected = 0
    if (out / REJECTED).is_file():
        with open(out / REJECTED, encoding="utf-8") as f:
            rejected = sum(1 for line in f if line.strip())
    return PrepareSummary(out, {s: utterances[s] for s in SPLITS}, {s: seconds[s] for s in SPLITS},
                          len(speakers), rejected)


# ----------------------------------------------------------------------------- decoding

def _decode_one(source: SourceUtterance) -> tuple[SourceUtterance, np.ndarray | None, str | None, str | None]:
    """Load one utterance as int16 16 kHz, or give the reason it is unusable.

    Returns (source, samples (n,) int16 or None, reason or None, alignment problem or None).
    """
    try:
        samples = float_to_int16(load_audio(source.path))
    except SpeechVQError as exc:
        return source, None, _reason(exc, source.path), None
    except Exception as exc:  # any other failure on one file must not stop the corpus
        return source, None, f"{type(exc).__name__}: {exc}", None
    alignment_reason = None
    if source.alignment is not None:
        try:
            read_alignment(source.alignment)
        except SpeechVQError as exc:
            alignment_reason = _reason(exc, source.alignment)
    return source, samples, None, alignment_reason


def _reason(exc: BaseException, path: Path) -> str:
    """The message of `exc` without the leading "<path>: " (rejected.tsv has its own path column)."""
    message = " ".join(str(exc).split())
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _decode_all(todo: list[SourceUtterance], workers: int) -> Iterator[tuple]:
    """Decoded utterances in the order of `todo` (parallel when workers > 1)."""
    if workers == 1 or len(todo) <= 1:
        yield from map(_decode_one, todo)
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with context.Pool(min(workers, len(todo)), initializer=_ignore_interrupts) as pool:
        yield from pool.imap(_decode_one, todo, chunksize=4)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which commits what is done and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------- writing and resuming

class _Writer:
    """Appends audio to the split files and commits manifest/rejected lines in batches.

    A line is only written after the audio it points at has been appended and fsynced.
    """

    def __init__(self, out: Path, offsets: dict[str, int]):
        self.out = out
        self.offsets = dict(offsets)
        self.audio = {split: open(split_file(out, split), "ab") for split in SPLITS}
        self.manifest = open(out / MANIFEST, "a", encoding="utf-8")
        self.rejected = open(out / REJECTED, "a", encoding="utf-8")
        self.pending_manifest: list[str] = []
        self.pending_rejected: list[str] = []
        self.last_commit = time.monotonic()
        self.added = 0
        self.rejected_audio = 0

    def add(self, source: SourceUtterance, split: str, samples: np.ndarray, alignment: Path | None) -> None:
        self.audio[split].write(samples.astype("<i2", copy=False).tobytes())
        row = {
            "id": source.id, "speaker": source.speaker, "split": split, "num_samples": int(samples.shape[0]),
            "offset": self.offsets[split], "source": os.path.abspath(source.path), "text": source.text,
            "alignment": None if alignment is None else os.path.abspath(alignment),
        }
        self.offsets[split] += int(samples.shape[0])
        self.pending_manifest.append(json.dumps(row) + "\n")
        self.added += 1
        self._maybe_commit()

    def reject(self, path: Path, reason: str, audio: bool = True) -> None:
        """List `path` in rejected.tsv; `audio` False for an alignment file (its utterance is kept)."""
        clean = " ".join(str(reason).split())
        self.pending_rejected.append(f"{os.path.abspath(path)}\t{clean}\n")
        self.rejected_audio += int(audio)
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        if time.monotonic() - self.last_commit >= COMMIT_INTERVAL_S:
            self.commit()

    def commit(self) -> None:
        for f in self.audio.values():
            f.flush()
            os.fsync(f.fileno())
        for f, pending in ((self.manifest, self.pending_manifest), (self.rejected, self.pending_rejected)):
            if pending:
                f.write("".join(pending))
                f.flush()
                os.fsync(f.fileno())
                pending.clear()
        self.last_commit = time.monotonic()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            for f in (*self.audio.values(), self.manifest, self.rejected):
                f.close()


def _check_or_write_options(out: Path, options: dict) -> None:
    """Record the run's options in OUT/prepare.json, or check them against an earlier run's."""
    path = out / OPTIONS
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != options:
            changed = sorted(k for k in set(previous) | set(options) if previous.get(k) != options.get(k))
            raise DataError(f"{out}: prepared earlier with other options ({', '.join(changed)} differ); "
                            "use the same options to resume, or a new output folder")
        return
    if (out / MANIFEST).exists():
        raise DataError(f"{out}: has a {MANIFEST} but no {OPTIONS}; use a new output folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, options)


def _complete_lines(path: Path) -> list[str]:
    """The whole lines of `path`; a torn last line (no newline) is cut off the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return data[:end].decode("utf-8").splitlines()


def _recover_manifest(out: Path) -> tuple[list[dict], dict[str, int]]:
    """Rows already committed and each split's size in samples; trims files to match."""
    rows = []
    offsets = {split: 0 for split in SPLITS}
    for number, line in enumerate(_complete_lines(out / MANIFEST), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{out / MANIFEST}:{number}: corrupt line; use a new output folder") from None
        if tuple(row) != MANIFEST_KEYS or row["split"] not in SPLITS or row["offset"] != offsets[row["split"]]:
            raise DataError(f"{out / MANIFEST}:{number}: not a line this version of prepare writes")
        offsets[row["split"]] += row["num_samples"]
        rows.append(row)
    for split in SPLITS:
        path = split_file(out, split)
        expected = offsets[split] * SAMPLE_BYTES
        size = path.stat().st_size if path.exists() else 0
        if size < expected:
            raise DataError(f"{path}: shorter than {MANIFEST} says ({size} < {expected} bytes); "
                            "use a new output folder")
        if size > expected:
            with open(path, "r+b") as f:
                f.truncate(expected)
    return rows, offsets


def _recover_rejected(out: Path) -> set[str]:
    """Paths already listed in rejected.tsv (a torn last line is cut off)."""
    return {line.split("\t", 1)[0] for line in _complete_lines(out / REJECTED) if line.strip()}


def _write_speakers(out: Path, src: Path) -> None:
    """OUT/speakers.txt: speaker, utterances, seconds (+ VCTK speaker-info columns when present)."""
    counts: Counter = Counter()
    seconds: Counter = Counter()
    with open(out / MANIFEST, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            counts[row["speaker"]] += 1
            seconds[row["speaker"]] += row["num_samples"] / SAMPLE_RATE
    info = read_speaker_info(src)
    columns = ["speaker", "utterances", "seconds"] + (["gender", "age", "accent", "region"] if info else [])
    lines = ["\t".join(columns)]
    for speaker in sorted(counts):
        fields = [speaker, str(counts[speaker]), f"{seconds[speaker]:.2f}"]
        if info:
            meta = info.get(speaker, {})
            fields += [meta.get(k, "") for k in ("gender", "age", "accent", "region")]
        lines.append("\t".join(fields))
    write_text_atomic(out / SPEAKERS, "\n".join(lines) + "\n")
