"""WORLD F0 of a prepared corpus, computed once and cached beside its audio.

``OUT/<split>.f0``: little-endian float32, one value per 64-sample code frame (hertz, 0 =
unvoiced, see `speechvq.f0`), the utterances of the split in manifest order, each with
ceil(num_samples / 64) frames. Frame offsets are therefore a function of the manifest alone.

Resumable: values are appended utterance by utterance and fsynced in batches; a restarted
run truncates a torn tail to the last complete utterance and continues from there.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechvq.audio import num_frames
from speechvq.errors import DataError
from speechvq.f0 import world_f0

F0_BYTES = 4  # float32
COMMIT_INTERVAL_S = 1.0


def f0_file(root: str | os.PathLike, split: str) -> Path:
    """Path of the F0 cache of `split` in the prepared corpus `root`."""
    return Path(root) / f"{split}.f0"


def frame_offsets(num_samples: list[int]) -> np.ndarray:
    """(n + 1,) int64 frame offsets of utterances of these lengths laid one after another."""
    return np.concatenate([[0], np.cumsum([num_frames(n) for n in num_samples])]).astype(np.int64)


def _f0_of(item) -> np.ndarray:
    corpus, utt = item
    return world_f0(corpus.audio(utt))


def cache_f0(corpus, workers: int = 2, progress: bool = True) -> int:
    """Compute the missing F0 of every split of `corpus` (a `PreparedCorpus`); return utterances done now."""
    from speechvq.data.prepare import SPLITS

    done = 0
    for split in SPLITS:
        utterances = corpus.utterances(split)
        offsets = frame_offsets([u.num_samples for u in utterances])
        path = f0_file(corpus.root, split)
        have = path.stat().st_size // F0_BYTES if path.exists() else 0
        complete = int(np.searchsorted(offsets, min(have, int(offsets[-1])), side="right")) - 1
        with open(path, "ab") as f:
            f.truncate(int(offsets[complete]) * F0_BYTES)
        todo = utterances[complete:]
        if not todo:
            continue
        bar = tqdm(total=len(utterances), initial=complete, unit="utt", desc=f"F0 {split}", disable=not progress,
                   dynamic_ncols=True)
        items = [(corpus, u) for u in todo]
        with open(path, "ab") as f, bar:
            last = time.monotonic()
            if workers > 1 and len(items) > 1:
                context = multiprocessing.get_context("fork")
                with context.Pool(min(workers, len(items))) as pool:
                    results = pool.imap(_f0_of, items, chunksize=4)
                    for f0 in results:
                        f.write(f0.astype("<f4").tobytes())
                        bar.update(1)
                        done += 1
                        if time.monotonic() - last > COMMIT_INTERVAL_S:
                            f.flush()
                            os.fsync(f.fileno())
                            last = time.monotonic()
            else:
                for item in items:
                    f.write(_f0_of(item).astype("<f4").tobytes())
                    bar.update(1)
                    done += 1
            f.flush()
            os.fsync(f.fileno())
    return done


class F0Reader:
    """F0 frames of the utterances of a prepared corpus, memory-mapped per split.

    Raises a DataError naming the corpus when its cache is missing or incomplete.
    """

    def __init__(self, corpus) -> None:
        self.root = corpus.root
        self._index: dict[str, tuple[str, int]] = {}
        self._maps: dict[str, np.ndarray] = {}
        from speechvq.data.prepare import SPLITS

        self._needed: dict[str, int] = {}
        for split in SPLITS:
            utterances = corpus.utterances(split)
            offsets = frame_offsets([u.num_samples for u in utterances])
            for utt, offset in zip(utterances, offsets[:-1]):
                self._index[utt.id] = (split, int(offset))
            self._needed[split] = int(offsets[-1])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _map(self, split: str) -> np.ndarray:
        if split not in self._maps:
            path = f0_file(self.root, split)
            have = path.stat().st_size // F0_BYTES if path.exists() else 0
            if have < self._needed[split]:
                raise DataError(f"{self.root}: no complete F0 cache for split {split!r} ({path.name}); "
                                "run `speechvq prepare` again to compute it")
            self._maps[split] = (np.memmap(path, dtype="<f4", mode="r") if self._needed[split]
                                 else np.zeros(0, dtype="<f4"))
        return self._maps[split]

    def frames(self, utt, first: int = 0, count: int | None = None) -> np.ndarray:
        """F0 (count,) float32 hertz of frames [first, first + count) of `utt` (default: all)."""
        total = num_frames(utt.num_samples)
        count = total - first if count is None else count
        if first < 0 or count < 0 or first + count > total:
            raise ValueError(f"{utt.id}: frames [{first}, {first + count}) outside [0, {total})")
        split, offset = self._index[utt.id]
        return np.array(self._map(split)[offset + first: offset + first + count], dtype=np.float32)

    def available(self) -> bool:
        """True if every split's cache is complete."""
        try:
            for split in self._needed:
                self._map(split)
        except DataError:
            return False
        return True
