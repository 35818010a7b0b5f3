"""Triphone ABX error rates of frame representations, scored by the ZeroSpeech reference (`zrc_abx2`).

ABX (Schatz et al. 2013; the ZeroSpeech 2017-2021 phonetic measure) asks, for triphones A
and B that differ only in their central phone ("b-a-g" and "b-e-g") and a third one X with
A's central phone, whether X is closer to A than to B. Closeness is the ZeroSpeech default:
the angular distance between frames (arccos of the cosine, divided by pi) averaged along the
DTW path. Within-speaker, A, B and X share a speaker; across-speaker, A and B share one and
X is another speaker's. The error rate is the share of (A, B, X) triplets decided wrongly,
averaged over contexts, then speakers, then phone pairs, as the reference package does:
0 for a perfect representation, about 0.5 for one that carries no phonetic information.

Items (`triphone_items`) are every three consecutive, adjacent non-silence phones of a
normalised alignment, in the ZeroSpeech item-file form ``#file onset offset #phone
prev-phone next-phone speaker``: onset and offset (seconds) span the whole triphone, the
phone is the middle one. `select_items` keeps the contexts (prev, next) that occur with at
least two different middle phones, the only ones that make triplets, and caps the count
with whole contexts drawn at random (seeded).

`abx_error_rates` writes the item file into a temporary folder and runs the package's
scoring (its item loader, feature slicing and normalisation, triplet iterators, Cython DTW
and averaging) on feature arrays held in memory: no feature file is written. The in-memory
entry point is ``EvalABX._ABX`` (zerospeech-libriabx2 0.9.8), the method the public
``eval_abx`` calls once it has a loader for feature files; the tests check that both agree.

Under DTW, frames that carry no information do not score 0.5 when the triphones' durations
vary: the path-averaged distance depends on the two lengths (i.i.d. random frames on the
synthetic demo corpus score about 0.75 within and 0.65 across speakers). A fixed duration
gives 0.5.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE
from speechvq.data.alignments import Phone
from speechvq.data.phones import SILENCE
from speechvq.errors import DataError

logger = logging.getLogger(__name__)

ITEM_FILE_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
SPEAKER_MODES = ("within", "across")
# About 13 s of one core per representation for 1000 items of 4 ms frames (D = 64).
DEFAULT_MAX_ITEMS = 1000
# The reference package's defaults (zrc_abx2.eval_ABX): its seed, group and speaker sampling.
ABX_SEED = 3459
MAX_SIZE_GROUP = 10
MAX_X_ACROSS = 5
_ADJACENT_S = 1e-6  # phones closer than this are adjacent


@dataclass(frozen=True)
class TriphoneItem:
    """One ABX item: in utterance `file`, `phone` between `prev` and `next`, spoken by `speaker`;
    the triphone spans [onset_s, offset_s) seconds."""

    file: str
    onset_s: float
    offset_s: float
    phone: str
    prev: str
    next: str
    speaker: str

    @property
    def context(self) -> tuple[str, str]:
        return self.prev, self.next


def triphone_items(file: str, speaker: str, phones: Sequence[Phone]) -> list[TriphoneItem]:
    """The triphone items of one utterance from its normalised alignment (silence is ``sil``).

    Every run of three consecutive phones, none silence, each starting where the previous one
    ends, gives one item centred on the middle phone.
    """
    ordered = sorted(phones, key=lambda p: p.start_s)
    items = []
    for a, b, c in zip(ordered, ordered[1:], ordered[2:]):
        if SILENCE in (a.phone, b.phone, c.phone):
            continue
        if abs(b.start_s - a.end_s) > _ADJACENT_S or abs(c.start_s - b.end_s) > _ADJACENT_S:
            continue
        items.append(TriphoneItem(file, a.start_s, c.end_s, b.phone, a.phone, c.phone, speaker))
    return items


def select_items(items: Sequence[TriphoneItem], max_items: int | None = DEFAULT_MAX_ITEMS,
                 seed: int = 0) -> list[TriphoneItem]:
    """The items that can enter an ABX triplet, at most about `max_items` of them.

    Keeps the contexts with at least two different middle phones (items of other contexts are
    never scored). Above `max_items`, whole contexts are drawn at random with `seed` until the
    next one would pass the cap (a context's items stay together, so triplets survive the cap).
    Items keep their input order.
    """
    phones_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in items:
        phones_of[item.context].add(item.phone)
    kept = [item for item in items if len(phones_of[item.context]) > 1]
    if max_items is None or len(kept) <= max_items:
        return kept
    sizes: dict[tuple[str, str], int] = defaultdict(int)
    for item in kept:
        sizes[item.context] += 1
    contexts = sorted(sizes)
    chosen, total = set(), 0
    for i in np.random.default_rng(seed).permutation(len(contexts)):
        if total + sizes[contexts[i]] > max_items:
            break
        chosen.add(contexts[i])
        total += sizes[contexts[i]]
    return [item for item in kept if item.context in chosen]


def write_item_file(items: Sequence[TriphoneItem], path: str | os.PathLike) -> Path:
    """Write `items` as a ZeroSpeech item file (a header line, then one item per line).

    Raises DataError when a file id, phone or speaker name contains whitespace (the format
    splits on it).
    """
    path = Path(path)
    lines = [ITEM_FILE_HEADER]
    for item in items:
        fields = (item.file, item.phone, item.prev, item.next, item.speaker)
        bad = next((f for f in fields if not f or len(f.split()) != 1), None)
        if bad is not None:
            raise DataError(f"ABX item file: {bad!r} is empty or contains whitespace")
        lines.append(f"{item.file} {item.onset_s:.4f} {item.offset_s:.4f} {item.phone} {item.prev} {item.next} "
                     f"{item.speaker}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _frame_span(item: TriphoneItem, num_frames: int, frame_period_s: float) -> tuple[int, int]:
    """The frames [start, end) the reference package takes for an item, from the times as the
    item file holds them (frame i is centred at (i + 0.5) * frame_period_s)."""
    step = 1.0 / frame_period_s
    onset, offset = float(f"{item.onset_s:.4f}"), float(f"{item.offset_s:.4f}")
    return max(0, math.ceil(step * onset - 0.5)), min(num_frames, math.floor(step * offset - 0.5))


def _has_triplets(items: Sequence[TriphoneItem], speaker_mode: str) -> bool:
    """Whether the reference iterators find at least one triplet among `items` in `speaker_mode`.

    Within: a speaker has two middle phones in one context, one of them twice. Across: a
    speaker has two middle phones in one context, and another speaker one of them there.
    """
    tokens: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    speakers_of: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for item in items:
        tokens[(*item.context, item.speaker)][item.phone] += 1
        speakers_of[(*item.context, item.phone)].add(item.speaker)
    for (prev, nxt, speaker), counts in tokens.items():
        if len(counts) < 2:
            continue
        if speaker_mode == "within" and max(counts.values()) > 1:
            return True
        if speaker_mode == "across" and any(speakers_of[(prev, nxt, phone)] - {speaker} for phone in counts):
            return True
    return False


def abx_error_rates(features: Mapping[str, np.ndarray], items: Sequence[TriphoneItem],
                    frame_period_s: float = HOP_LENGTH / SAMPLE_RATE, seed: int = ABX_SEED,
                    max_size_group: int = MAX_SIZE_GROUP, max_x_across: int = MAX_X_ACROSS) -> dict:
    """Within- and across-speaker triphone ABX error rates of per-utterance feature sequences.

    features: file id -> (F, D) float array, frame i centred at (i + 0.5) * `frame_period_s`
    seconds (4 ms code frames by default); items: triphone items of those files. Items whose
    span holds no frame are dropped. Scored with `zrc_abx2` (angular distance, DTW, no
    pooling, within-context), `seed`, `max_size_group` and `max_x_across` as in the package.
    Returns {"within_speaker", "across_speaker"}: error rates in [0, 1], None when the items
    make no triplet in that mode, and "num_items" (items scored).
    """
    import torch
    from zrc_abx2.ABX_src.models import Pooling
    from zrc_abx2.eval_ABX import EvalABX

    missing = sorted({item.file for item in items} - set(features))
    if missing:
        raise ValueError(f"no features for {len(missing)} item files, e.g. {missing[0]!r}")
    items = [item for item in items
             if (span := _frame_span(item, len(features[item.file]), frame_period_s))[1] > span[0]]
    rates: dict = {"within_speaker": None, "across_speaker": None, "num_items": len(items)}
    modes = [mode for mode in SPEAKER_MODES if _has_triplets(items, mode)]
    if not modes:
        return rates

    def load(file: str) -> torch.Tensor:  # a fresh tensor: the package normalises it in place
        return torch.tensor(np.asarray(features[file], dtype=np.float32))

    used = sorted({item.file for item in items})
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="speechvq-abx-") as tmp:
        item_file = write_item_file(items, Path(tmp) / "triphones.item")
        output = io.StringIO()
        # One torch thread: the many small distance tensors run up to 100x slower with two
        # threads on a busy 2-core machine.
        torch.set_num_threads(1)
        try:
            with contextlib.redirect_stdout(output), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"torch\.sparse\.SparseTensor", category=UserWarning)
                # The in-memory entry point: eval_abx would read one feature file per utterance.
                scores = EvalABX()._ABX(Pooling.NONE, seed, load, str(item_file), [(f, f) for f in used], "cosine",
                                        1.0 / frame_period_s, modes, ["within"], max_x_across=max_x_across,
                                        max_size_group=max_size_group)
        finally:
            torch.set_num_threads(threads)
    logger.debug("zrc_abx2 output:\n%s", output.getvalue())
    for mode in modes:
        value = float(scores[f"{mode}-within"])
        rates[f"{mode}_speaker"] = value if math.isfinite(value) else None
    return rates


def one_hot(codes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-file (F,) int code sequences -> (F, U) float32 one-hot frames over the U codes used.

    Codes absent from every file would add only zero columns, which change no cosine; leaving
    them out keeps the package's (N, N, F, F, D) distance tensors small.
    """
    used = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in codes.values()]))
    eye = np.eye(len(used), dtype=np.float32)
    return {file: eye[np.searchsorted(used, np.asarray(c, dtype=np.int64))] for file, c in codes.items()}


def abx_table(representations: Mapping[str, Mapping[str, np.ndarray]], items: Sequence[TriphoneItem],
              frame_period_s: float = HOP_LENGTH / SAMPLE_RATE) -> dict:
    """ABX error rates of several representations of the same utterances on the same items.

    representations: name -> (file id -> (F, D) frames). Items are first restricted to those
    that keep a frame in every representation, so all are scored on one item set. Returns
    {"within_speaker": {name: rate}, "across_speaker": {name: rate}, "num_items", "num_contexts"}.
    """
    lengths = {file: min(len(r[file]) for r in representations.values()) for file in {i.file for i in items}}
    items = [item for item in items if (span := _frame_span(item, lengths[item.file], frame_period_s))[1] > span[0]]
    table: dict = {"within_speaker": {}, "across_speaker": {}}
    for name, features in representations.items():
        rates = abx_error_rates(features, items, frame_period_s)
        table["within_speaker"][name] = rates["within_speaker"]
        table["across_speaker"][name] = rates["across_speaker"]
    table.update(num_items=len(items), num_contexts=len({item.context for item in items}))
    return table
