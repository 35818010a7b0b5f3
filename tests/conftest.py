"""Shared test helpers: tiny audio files and corpora in each layout, written into tmp_path.

The helpers are plain functions (importable as ``from conftest import make_wav``) and are
also offered as fixtures of the same name for tests that prefer injection.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


def sine(seconds: float, sr: int = 16000, freq: float = 440.0, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    """(n,) float32 sine wave, n = round(seconds * sr)."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def make_wav(path, seconds: float = 0.25, sr: int = 16000, channels: int = 1, freq: float | None = 440.0,
             amplitude: float = 0.5, seed: int = 0, subtype: str | None = None) -> Path:
    """Write a sine (or, with freq=None, seeded white noise) to `path`; format from the extension.

    Channel c has phase c*pi/3 so channels differ. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    if freq is None:
        rng = np.random.default_rng(seed)
        data = (amplitude * rng.uniform(-1, 1, size=(n, channels))).astype(np.float32)
    else:
        data = np.stack([sine(seconds, sr, freq, amplitude, phase=c * np.pi / 3) for c in range(channels)], axis=1)
    sf.write(str(path), data if channels > 1 else data[:, 0], sr, subtype=subtype)
    return path


def write_folder_corpus(root, speakers=("alice", "bob"), utterances=("u1", "u2", "u3"), seconds: float = 0.1,
                        sr: int = 16000, ext: str = ".wav", text: bool = True) -> list[Path]:
    """ROOT/<speaker>/<utt><ext> (+ <utt>.txt "text of <utt>") for every speaker and utterance.

    Each file is a sine whose frequency depends on speaker and utterance. Returns the audio paths.
    """
    root = Path(root)
    paths = []
    for s, speaker in enumerate(speakers):
        for u, utt in enumerate(utterances):
            path = make_wav(root / speaker / f"{utt}{ext}", seconds=seconds, sr=sr, freq=200.0 + 50 * s + 10 * u)
            if text:
                (root / speaker / f"{utt}.txt").write_text(f"text of {utt}\n", encoding="utf-8")
            paths.append(path)
    return paths


def write_vctk_corpus(root, version: str = "0.92", speakers=("p225", "p226"), sentences=("001", "002", "003"),
                      seconds: float = 0.05, sr: int = 48000, mics=("mic1", "mic2"), text: bool = True,
                      speaker_info: bool = True) -> list[Path]:
    """A miniature VCTK 0.92 (flac, per mic) or 0.80 (wav) tree; returns the audio paths.

    mic1 files are 300 Hz sines and mic2 files 600 Hz so tests can tell them apart.
    """
    root = Path(root)
    paths = []
    for speaker in speakers:
        for sentence in sentences:
            utt_id = f"{speaker}_{sentence}"
            if version == "0.92":
                for mic in mics:
                    freq = 300.0 if mic == "mic1" else 600.0
                    paths.append(make_wav(root / "wav48_silence_trimmed" / speaker / f"{utt_id}_{mic}.flac",
                                          seconds=seconds, sr=sr, freq=freq))
            elif version == "0.80":
                paths.append(make_wav(root / "wav48" / speaker / f"{utt_id}.wav", seconds=seconds, sr=sr, freq=300.0))
            else:
                raise ValueError(version)
            if text:
                txt = root / "txt" / speaker / f"{utt_id}.txt"
                txt.parent.mkdir(parents=True, exist_ok=True)
                txt.write_text(f"Sentence {sentence}  of\n{speaker}.\n", encoding="utf-8")
    if speaker_info:
        ids = speakers if version == "0.92" else [s.lstrip("p") for s in speakers]
        lines = ["ID  AGE  GENDER  ACCENTS  REGION"] + [f"{i}  23  F    English    Southern  England" for i in ids]
        (root / "speaker-info.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def write_raw_textgrid(path, intervals: dict[str, list[tuple[float, float, str]]], xmax: float) -> Path:
    """A long-format Praat TextGrid written by hand: {tier name: [(start_s, end_s, label)]}."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
             "tiers? <exists>", f"size = {len(intervals)}", "item []:"]
    for t, (name, entries) in enumerate(intervals.items(), start=1):
        lines += [f"    item [{t}]:", '        class = "IntervalTier"', f'        name = "{name}"',
                  "        xmin = 0", f"        xmax = {xmax}", f"        intervals: size = {len(entries)}"]
        for i, (start, end, label) in enumerate(entries, start=1):
            lines += [f"        intervals [{i}]:", f"            xmin = {start}", f"            xmax = {end}",
                      f'            text = "{label}"']
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def fsyncs(monkeypatch):
    """Record every os.fsync as (inode, is_directory) of the file descriptor flushed (and still flush it)."""
    calls = []
    real = os.fsync

    def record(fd):
        st = os.fstat(fd)
        calls.append((st.st_ino, stat.S_ISDIR(st.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


@pytest.fixture(name="make_wav")
def make_wav_fixture():
    return make_wav


@pytest.fixture(name="write_folder_corpus")
def write_folder_corpus_fixture():
    return write_folder_corpus


@pytest.fixture(name="write_vctk_corpus")
def write_vctk_corpus_fixture():
    return write_vctk_corpus


@pytest.fixture(name="write_raw_textgrid")
def write_raw_textgrid_fixture():
    return write_raw_textgrid


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs torch on one thread: the models here are tiny, and intra-op threads only
    add synchronisation (and oversubscribe the 2-core test machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
