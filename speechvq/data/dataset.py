"""Read a prepared corpus (see `speechvq.data.prepare`): utterance records, audio from the
memory-mapped split files, phone alignments, random training segments and a sequential reader.

Audio comes out as float32 in [-1, 1) at 16 kHz; F0 values are one per 64-sample frame
(`speechvq.audio.HOP_LENGTH`, the frame of the F0 cache). Phone alignments are read per
utterance (`PreparedCorpus.phones`) for the probe and alignment tools; training never sees them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, int16_to_float, num_frames
from speechvq.data.alignments import Phone, read_alignment
from speechvq.data.f0cache import F0Reader
from speechvq.data.prepare import MANIFEST, MANIFEST_KEYS, SAMPLE_BYTES, SPLITS, split_file
from speechvq.errors import DataError, UnknownSpeakerError


@dataclass(frozen=True)
class Utterance:
    """One line of a prepared corpus's manifest.

    num_samples and offset are in samples at 16 kHz (offset into the split's audio file);
    source and alignment are path strings (alignment None when there is none).
    """

    id: str
    speaker: str
    split: str
    num_samples: int
    offset: int
    source: str
    text: str | None
    alignment: str | None

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.num_samples / SAMPLE_RATE


class PreparedCorpus:
    """A prepared corpus folder: ``manifest.jsonl`` plus one flat int16 file per split.

    The split files are memory-mapped on first use (and re-opened after pickling, so the
    object can be handed to DataLoader workers cheaply).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise DataError(f"{self.root}: not a prepared corpus (no {MANIFEST}); run `speechvq prepare` first")
        self._utterances: list[Utterance] = []
        with open(manifest, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    self._utterances.append(Utterance(**{k: row[k] for k in MANIFEST_KEYS}))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f"{manifest}:{number}: malformed manifest line") from None
        sizes = {split: 0 for split in SPLITS}
        for utt in self._utterances:
            if utt.split not in sizes:
                raise DataError(f"{manifest}: utterance {utt.id} has unknown split {utt.split!r}")
            sizes[utt.split] = max(sizes[utt.split], utt.offset + utt.num_samples)
        for split, size in sizes.items():
            path = split_file(self.root, split)
            have = path.stat().st_size // SAMPLE_BYTES if path.exists() else 0
            if have < size:
                raise DataError(f"{path}: holds {have} samples but {MANIFEST} needs {size}; prepare again")
        self._sizes = sizes
        self._maps: dict[str, np.ndarray] = {}
        self._phones: dict[str, list[Phone] | None] = {}
        self._f0: F0Reader | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # memmaps are re-opened in the receiving process
        return state

    def __len__(self) -> int:
        return len(self._utterances)

    def utterances(self, split: str | None = None) -> list[Utterance]:
        """Utterances in manifest order, all or those of `split` ("train", "valid", "test")."""
        if split is None:
            return list(self._utterances)
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        return [u for u in self._utterances if u.split == split]

    @property
    def speakers(self) -> list[str]:
        """Sorted names of every speaker in the corpus (all splits)."""
        return sorted({u.speaker for u in self._utterances})

    @property
    def has_alignments(self) -> bool:
        """True if any utterance has a phone alignment."""
        return any(u.alignment is not None for u in self._utterances)

    def audio(self, utt: Utterance, start: int = 0, length: int | None = None) -> np.ndarray:
        """Samples [start, start+length) of `utt` (default: all) as (n,) float32 in [-1, 1).

        Only the requested part of the split file is read.
        """
        if length is None:
            length = utt.num_samples - start
        if start < 0 or length < 0 or start + length > utt.num_samples:
            raise ValueError(f"{utt.id}: samples [{start}, {start + length}) outside [0, {utt.num_samples})")
        samples = self._split_map(utt.split)[utt.offset + start: utt.offset + start + length]
        return int16_to_float(samples)

    def f0(self, utt: Utterance, first: int = 0, count: int | None = None) -> np.ndarray:
        """WORLD F0 (count,) float32 hertz (0 = unvoiced) of code frames [first, first + count) of `utt`.

        Read from the cache that `prepare` writes; a DataError says to run it when there is none.
        """
        if self._f0 is None:
            self._f0 = F0Reader(self)
        return self._f0.frames(utt, first, count)

    @property
    def has_f0(self) -> bool:
        """True if the F0 cache of every split is complete."""
        if self._f0 is None:
            self._f0 = F0Reader(self)
        return self._f0.available()

    def phones(self, utt: Utterance) -> list[Phone] | None:
        """The phone alignment of `utt` (cached), or None if it has none."""
        if utt.alignment is None:
            return None
        if utt.id not in self._phones:
            self._phones[utt.id] = read_alignment(utt.alignment)
        return self._phones[utt.id]

    def _split_map(self, split: str) -> np.ndarray:
        if split not in self._maps:
            if self._sizes[split] == 0:
                self._maps[split] = np.zeros(0, dtype="<i2")
            else:
                self._maps[split] = np.memmap(split_file(self.root, split), dtype="<i2", mode="r")
        return self._maps[split]


class SegmentDataset(torch.utils.data.Dataset):
    """Random fixed-length segments of the utterances of one split; one item per utterance.

    Item i is a segment of `segment_samples` samples from utterance i, starting at a random
    multiple of 64 samples (so its frames are the utterance's code frames); shorter
    utterances are zero-padded at the end. Items:

    - "audio": (T,) float32 in [-1, 1), T = segment_samples
    - "speaker": () int64, index of the speaker in `speakers`
    - "f0" (with ``with_f0``): (T/64,) float32 WORLD F0 in hertz of each frame, 0 where
      unvoiced or padding

    Randomness: the start is drawn from a generator seeded by (seed, epoch, index) only, so
    segments differ from epoch to epoch (call `set_epoch`) and are the same whatever the
    number of DataLoader workers or the order of reads: a resumed run sees the same data.
    """

    def __init__(self, corpus: PreparedCorpus, split: str, segment_samples: int, speakers: list[str],
                 seed: int = 0, with_f0: bool = False):
        if segment_samples <= 0 or segment_samples % HOP_LENGTH:
            raise DataError(f"segment_samples must be a positive multiple of {HOP_LENGTH}, got {segment_samples}")
        self.corpus = corpus
        self.split = split
        self.segment_samples = int(segment_samples)
        self.speaker_index = {name: i for i, name in enumerate(speakers)}
        self.seed = int(seed)
        self.with_f0 = bool(with_f0)
        self.epoch = 0
        self.utterances = corpus.utterances(split)
        if not self.utterances:
            raise DataError(f"{corpus.root}: no utterances in split {split!r}")
        unknown = sorted({u.speaker for u in self.utterances} - set(self.speaker_index))
        if unknown:
            raise UnknownSpeakerError(f"speaker(s) {', '.join(unknown[:5])} of split {split!r} "
                                      "are not in the speaker list")

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        """Mix `epoch` into the segment choice (call before each epoch for per-epoch reproducibility)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        utt = self.utterances[index]
        T = self.segment_samples
        start = 0
        if utt.num_samples > T:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = HOP_LENGTH * int(rng.integers(0, (utt.num_samples - T) // HOP_LENGTH + 1))
        length = min(T, utt.num_samples - start)
        audio = np.zeros(T, dtype=np.float32)
        audio[:length] = self.corpus.audio(utt, start, length)
        item = {
            "audio": torch.from_numpy(audio),
            "speaker": torch.tensor(self.speaker_index[utt.speaker], dtype=torch.int64),
        }
        if self.with_f0:
            f0 = np.zeros(T // HOP_LENGTH, dtype=np.float32)
            first = start // HOP_LENGTH
            part = self.corpus.f0(utt, first, min(f0.shape[0], num_frames(utt.num_samples) - first))
            f0[: part.shape[0]] = part
            item["f0"] = torch.from_numpy(f0)
        return item


def collate_segments(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack `SegmentDataset` items: audio (B, T) float32, speaker (B,) int64 and, when present,
    f0 (B, T/64) float32."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def iter_utterances(corpus: PreparedCorpus, split: str | None) -> Iterator[tuple[Utterance, np.ndarray]]:
    """Yield (utterance, (n,) float32 audio) for every utterance of `split` (None: all), in manifest order."""
    for utt in corpus.utterances(split):
        yield utt, corpus.audio(utt)
