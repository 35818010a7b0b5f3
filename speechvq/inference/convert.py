"""Batch conversion and reconstruction of audio files, with ``conversions.jsonl``.

Outputs are named ``<source_speaker>_<stem>_to_<target>.wav`` (reconstruction: target =
source) and listed in ``OUT/conversions.jsonl``, one line per output with ``source``,
``source_speaker``, ``utterance`` (the stem), ``target_speaker`` and ``output`` — the file
that ``speechvq score`` reads.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from speechvq.audio import AUDIO_EXTENSIONS, load_audio, save_wav
from speechvq.errors import AudioError, SpeechVQError
from speechvq.fileio import read_jsonl, write_jsonl_atomic
from speechvq.inference.pipeline import SpeechVQ

CONVERSIONS_FILE = "conversions.jsonl"


@dataclass(frozen=True)
class Job:
    """One output to produce: `source` audio decoded as `target_speaker`."""

    source: Path
    source_speaker: str
    target_speaker: str

    @property
    def utterance(self) -> str:
        """The source file's stem."""
        return self.source.stem

    @property
    def output_name(self) -> str:
        """File name of the output: ``<source_speaker>_<stem>_to_<target>.wav``."""
        return f"{self.source_speaker}_{self.utterance}_to_{self.target_speaker}.wav"


def collect_inputs(items: Sequence[str | os.PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Input files from files, directories (searched recursively) and list files (one path per line).

    `extensions`: what an input file ends with (audio by default; `decompress` takes .svq). A
    list file is any existing file with another extension; its relative paths are relative to
    the list file's folder.
    """
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in extensions and q.is_file())
            if not found:
                raise SpeechVQError(f"{p}: directory contains no {'/'.join(extensions)} files")
            paths.extend(found)
        elif p.suffix.lower() in extensions or not p.is_file():
            paths.append(p)  # missing files are reported per file when read
        else:
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    paths.append(q if q.is_absolute() else p.parent / q)
    if not paths:
        raise SpeechVQError("no inputs given")
    return paths


def plan_jobs(sources: Sequence[Path], targets: Sequence[str] | None, source_speaker: str | None = None) -> list[Job]:
    """Jobs for every source x target; targets None means reconstruction (target = source speaker).

    The source speaker is `source_speaker` when given, else the input's parent folder name.
    A source or target given twice yields one job; two different sources that would write
    the same output file (same speaker folder name and stem) are refused with a SpeechVQError.
    """
    jobs: dict[str, Job] = {}
    for src in sources:
        spk = source_speaker or src.resolve().parent.name
        for target in targets or [spk]:
            job = Job(src, spk, target)
            other = jobs.setdefault(job.output_name, job)
            if other.source.resolve() != src.resolve():
                raise SpeechVQError(f"{src} and {other.source} would both be written as {job.output_name}; "
                                    "rename one or convert them in separate runs")
    return list(jobs.values())


def run_jobs(
    model: SpeechVQ,
    jobs: Sequence[Job],
    out_dir: str | os.PathLike,
    batch_size: int = 8,
    temperature: float = 1.0,
    argmax: bool = False,
    seed: int | None = 0,
    progress: bool = True,
    pitch_shift: float | None = None,
    f0_mapping: str = "utterance",
) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Encode each source once, generate the outputs `batch_size` at a time, write them atomically.

    With the source-filter decoder each source's F0 is extracted once and mapped onto each
    target's statistics (reconstructions keep it as it is); `pitch_shift` semitones overrides
    the mapping for conversions; `f0_mapping` chooses the mapping (`SpeechVQ.conversion_f0`).
    Returns (rows written to conversions.jsonl, failures as
    (source, reason)). Unknown target speakers are refused before any work; unreadable sources
    are skipped and reported.
    """
    for target in sorted({j.target_speaker for j in jobs}):
        model.speaker_index(target)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes: dict[Path, np.ndarray] = {}
    source_f0: dict[Path, np.ndarray] = {}
    failures: list[tuple[Path, str]] = []
    for src in dict.fromkeys(j.source for j in jobs):
        try:
            wav = load_audio(src)
            codes[src] = model.encode(wav)
            if not model.autoregressive:
                source_f0[src] = model.source_f0(wav)
        except AudioError as exc:
            failures.append((src, str(exc)))

    def contour(job: Job) -> np.ndarray | None:
        if model.autoregressive:
            return None
        if job.target_speaker == job.source_speaker:
            return source_f0[job.source]
        return model.conversion_f0(source_f0[job.source], job.source_speaker, job.target_speaker, pitch_shift,
                                   f0_mapping)

    todo = [j for j in jobs if j.source in codes]
    # Similar lengths in one batch waste less generation on padding.
    todo.sort(key=lambda j: len(codes[j.source]), reverse=True)
    rows = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        wavs = model.decode_batch(
            [codes[j.source] for j in batch], [j.target_speaker for j in batch],
            temperature=temperature, argmax=argmax,
            seed=None if seed is None else seed + start, progress=progress,
            f0=[contour(j) for j in batch],
        )
        for job, wav in zip(batch, wavs):
            out = save_wav(out_dir / job.output_name, wav)
            rows.append({
                "source": str(job.source.resolve()),
                "source_speaker": job.source_speaker,
                "utterance": job.utterance,
                "target_speaker": job.target_speaker,
                "output": str(out.resolve()),
            })
    _merge_conversions(out_dir / CONVERSIONS_FILE, rows)
    return rows, failures


def _merge_conversions(path: Path, rows: list[dict]) -> None:
    """Rewrite conversions.jsonl atomically: earlier rows for other outputs are kept."""
    new_outputs = {r["output"] for r in rows}
    try:
        old = [r for r in read_jsonl(path) if r.get("output") not in new_outputs] if path.is_file() else []
    except (ValueError, AttributeError):
        raise SpeechVQError(f"{path}: malformed JSON lines; move it away to start a new list") from None
    write_jsonl_atomic(path, old + sorted(rows, key=lambda r: r["output"]))


def report_failures(failures: Sequence[tuple[Path, str]], command: str) -> int:
    """Print failed inputs on stderr; return the exit status (1 if any failed, else 0)."""
    for _src, reason in failures:
        print(f"speechvq {command}: skipped: {reason}", file=sys.stderr)
    return 1 if failures else 0
