"""Corpus readers: list the utterances of a speech corpus on disk, whatever its layout.

Layouts (``detect_layout`` tells them apart):

- ``vctk092``: VCTK 0.92, ``wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac`` (mic1 by
  default, mic2 selectable), transcripts ``txt/pXXX/pXXX_NNN.txt``, ``speaker-info.txt``.
- ``vctk080``: VCTK 0.80, ``wav48/pXXX/pXXX_NNN.wav``, ``txt/pXXX/pXXX_NNN.txt``.
- ``folders``: one folder per speaker, ``ROOT/<speaker>/*.{wav,flac,ogg}``; a ``<stem>.txt``
  beside an audio file is its transcript.

Utterance ids are ``p225_001`` in VCTK and ``<speaker>_<stem>`` in speaker folders. The
utterance *key* is the id without the speaker (the sentence number in VCTK, the file stem in
folders): on a parallel corpus the same key is the same sentence for every speaker.

A phone alignment (.TextGrid, .phn, .lab) with the same stem as the audio file (or as the
utterance id) is attached to it, looked for first under ``alignments_dir`` (same relative
path as the audio, or ``<speaker>/<id>``) and then beside the audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from speechvq.audio import AUDIO_EXTENSIONS
from speechvq.data.alignments import ALIGNMENT_EXTENSIONS, is_time_aligned_label_file
from speechvq.errors import DataError

LAYOUTS = ("vctk092", "vctk080", "folders")
MICS = ("mic1", "mic2")
VCTK092_AUDIO_DIR = "wav48_silence_trimmed"
VCTK080_AUDIO_DIR = "wav48"


@dataclass(frozen=True)
class SourceUtterance:
    """One utterance of a source corpus.

    id: unique name (``p225_001``, ``<speaker>_<stem>``); speaker: speaker name; key: the id
    without the speaker; path: the audio file; text: transcript or None; alignment: phone
    alignment file or None.
    """

    id: str
    speaker: str
    key: str
    path: Path
    text: str | None
    alignment: Path | None


def detect_layout(root: str | os.PathLike) -> str:
    """Return "vctk092", "vctk080" or "folders" for the corpus at `root` (DataError if none fits)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such corpus directory")
    if (root / VCTK092_AUDIO_DIR).is_dir():
        return "vctk092"
    if (root / VCTK080_AUDIO_DIR).is_dir():
        return "vctk080"
    if any(_audio_files(d) for d in _subdirs(root)):
        return "folders"
    raise DataError(f"{root}: not a corpus (expected {VCTK092_AUDIO_DIR}/, {VCTK080_AUDIO_DIR}/ "
                    "or one folder of audio files per speaker)")


def list_corpus(root: str | os.PathLike, layout: str = "auto", mic: str = "mic1",
                alignments_dir: str | os.PathLike | None = None) -> list[SourceUtterance]:
    """All utterances of the corpus at `root`, sorted by id.

    layout: "auto", "vctk" (either VCTK version), "vctk092", "vctk080" or "folders".
    mic: "mic1" or "mic2" (VCTK 0.92 only). alignments_dir: a tree of alignment files with
    the same relative paths as the audio (optional).
    """
    root = Path(root)
    detected = detect_layout(root)
    if layout == "auto":
        layout = detected
    elif layout == "vctk":
        if detected not in ("vctk092", "vctk080"):
            raise DataError(f"{root}: --layout vctk, but neither {VCTK092_AUDIO_DIR}/ nor {VCTK080_AUDIO_DIR}/ exists")
        layout = detected
    elif layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose from auto, vctk, {', '.join(LAYOUTS)}")
    if mic not in MICS:
        raise DataError(f"unknown microphone {mic!r}; choose mic1 or mic2")
    if alignments_dir is not None and not Path(alignments_dir).is_dir():
        raise DataError(f"{alignments_dir}: no such alignments directory")
    finder = _AlignmentFinder(root, None if alignments_dir is None else Path(alignments_dir))

    if layout == "folders":
        utterances = _list_folders(root, finder)
    else:
        utterances = _list_vctk(root, layout, mic, finder)
    utterances.sort(key=lambda u: u.id)
    return utterances


def read_speaker_info(root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """VCTK ``speaker-info.txt`` as {speaker: {"age", "gender", "accent", "region"}}; {} if absent.

    VCTK 0.80 writes ids without the "p" (``225``); they are returned as ``p225``.
    """
    path = Path(root) / "speaker-info.txt"
    if not path.is_file():
        return {}
    info: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].upper() == "ID":
                continue
            speaker = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
            rest = fields[1:] + [""] * 3
            info[speaker] = {"age": rest[0], "gender": rest[1], "accent": rest[2],
                             "region": " ".join(fields[4:])}
    return info


def _list_vctk(root: Path, layout: str, mic: str, finder: "_AlignmentFinder") -> list[SourceUtterance]:
    audio_root = root / (VCTK092_AUDIO_DIR if layout == "vctk092" else VCTK080_AUDIO_DIR)
    utterances = []
    for speaker_dir in _subdirs(audio_root):
        speaker = speaker_dir.name
        for path in _audio_files(speaker_dir):
            stem = path.stem
            if layout == "vctk092":
                if not stem.endswith(f"_{mic}"):
                    continue
                stem = stem[: -len(mic) - 1]
            if not stem.startswith(f"{speaker}_"):
                continue  # not an utterance of this speaker (stray file)
            utt_id = stem
            key = stem[len(speaker) + 1:]
            text = _read_text(root / "txt" / speaker / f"{utt_id}.txt")
            utterances.append(SourceUtterance(utt_id, speaker, key, path, text, finder.find(path, speaker, utt_id)))
    return utterances


def _list_folders(root: Path, finder: "_AlignmentFinder") -> list[SourceUtterance]:
    utterances = []
    for speaker_dir in _subdirs(root):
        speaker = speaker_dir.name
        seen: dict[str, Path] = {}
        for path in _audio_files(speaker_dir):
            if path.stem in seen:
                raise DataError(f"{speaker_dir}: two audio files for utterance {path.stem!r} "
                                f"({seen[path.stem].name}, {path.name}); keep one")
            seen[path.stem] = path
            utt_id = f"{speaker}_{path.stem}"
            text = _read_text(path.with_suffix(".txt"))
            utterances.append(SourceUtterance(utt_id, speaker, path.stem, path, text,
                                              finder.find(path, speaker, utt_id)))
    return utterances


class _AlignmentFinder:
    """Finds the alignment file of an audio file; lists each directory once."""

    def __init__(self, root: Path, alignments_dir: Path | None):
        self.root = root
        self.alignments_dir = alignments_dir
        self._listings: dict[Path, dict[str, str]] = {}

    def find(self, audio: Path, speaker: str, utt_id: str) -> Path | None:
        stems = [audio.stem] if audio.stem == utt_id else [audio.stem, utt_id]
        places: list[Path] = []
        if self.alignments_dir is not None:
            relative_dir = audio.parent.relative_to(self.root)
            places += [self.alignments_dir / relative_dir, self.alignments_dir / speaker]
        places.append(audio.parent)
        for directory in places:
            listing = self._listing(directory)
            for stem in stems:
                for ext in ALIGNMENT_EXTENSIONS:
                    name = listing.get(f"{stem}{ext}".lower())
                    if name is None:
                        continue
                    candidate = directory / name
                    if ext == ".lab" and not is_time_aligned_label_file(candidate):
                        continue  # a plain-text transcript named .lab, not an alignment
                    return candidate
        return None

    def _listing(self, directory: Path) -> dict[str, str]:
        if directory not in self._listings:
            try:
                names = os.listdir(directory)
            except OSError:
                names = []
            self._listings[directory] = {n.lower(): n for n in names
                                         if n.lower().endswith(ALIGNMENT_EXTENSIONS)}
        return self._listings[directory]


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _audio_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def _read_text(path: Path) -> str | None:
    """The transcript in `path` with whitespace collapsed; None if absent or empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    text = " ".join(text.split())
    return text or None
