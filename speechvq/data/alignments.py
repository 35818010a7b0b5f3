"""Phone alignments: read Praat TextGrid, TIMIT ``.phn`` and HTK ``.lab`` files into one record
type, write TextGrids, and label code frames.

Times are in seconds. TIMIT ``.phn`` files give sample indices at 16 kHz; HTK ``.lab`` files
give times in 100 ns units. TextGrid intervals with an empty label (the way Montreal Forced
Aligner marks silence) are kept with ``phone == ""``, so that the phone-set normalisation
decides what they mean; parts of the time axis that no interval covers have no label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE
from speechvq.errors import DataError
from speechvq.fileio import atomic_path

#: File extensions recognised as alignments (lower case), in the order they are looked for.
ALIGNMENT_EXTENSIONS = (".textgrid", ".phn", ".lab")

TIMIT_SAMPLE_RATE = 16000
HTK_UNITS_PER_SECOND = 10_000_000  # HTK label times are in 100 ns units
_PHONE_TIER_NAMES = ("phones", "phone")


@dataclass(frozen=True)
class Phone:
    """One labelled interval: `phone` spoken from `start_s` to `end_s` seconds."""

    phone: str
    start_s: float
    end_s: float


def read_alignment(path: str | os.PathLike) -> list[Phone]:
    """Read a phone alignment (.TextGrid, .phn or .lab, chosen by extension) sorted by start time.

    Raises `DataError` naming the file when it is missing, of an unknown kind or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such alignment file")
    suffix = path.suffix.lower()
    if suffix == ".textgrid":
        phones = _read_textgrid(path)
    elif suffix == ".phn":
        phones = _read_columns(path, TIMIT_SAMPLE_RATE, "TIMIT .phn (start_sample end_sample phone)")
    elif suffix == ".lab":
        phones = _read_columns(path, HTK_UNITS_PER_SECOND, "HTK .lab (start end phone, 100 ns units)")
    else:
        raise DataError(f"{path}: unknown alignment format (expected .TextGrid, .phn or .lab)")
    return sorted(phones, key=lambda p: (p.start_s, p.end_s))


def is_time_aligned_label_file(path: str | os.PathLike) -> bool:
    """True if the first non-empty line of `path` reads ``<int> <int> <label>``.

    Tells HTK/TIMIT alignments apart from plain-text transcripts that some corpora also name
    ``.lab`` (Montreal Forced Aligner's input convention).
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if fields:
                    return len(fields) >= 3 and fields[0].isdigit() and fields[1].isdigit()
    except OSError:
        return False
    return False


def _read_textgrid(path: Path) -> list[Phone]:
    from praatio import textgrid  # imported here: praatio is only needed for TextGrids

    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="silence")
    except Exception as exc:  # praatio raises several types for malformed files
        raise DataError(f"{path}: unreadable TextGrid ({_first_line(exc)})") from None
    interval_tiers = [tg.getTier(name) for name in tg.tierNames
                      if tg.getTier(name).tierType == textgrid.INTERVAL_TIER]
    named = [t for t in interval_tiers if _is_phone_tier_name(t.name)]
    if named:
        tier = named[0]
    elif len(interval_tiers) == 1:
        tier = interval_tiers[0]
    else:
        raise DataError(f"{path}: no interval tier named 'phones' among tiers {list(tg.tierNames)}")
    return [Phone(str(label).strip(), float(start), float(end)) for start, end, label in tier.entries]


def _is_phone_tier_name(name: str) -> bool:
    """'phones', 'phone', or MFA's multi-speaker form '<speaker> - phones'."""
    name = name.strip().lower()
    return name in _PHONE_TIER_NAMES or any(name.endswith(f" - {n}") for n in _PHONE_TIER_NAMES)


def _read_columns(path: Path, units_per_second: float, kind: str) -> list[Phone]:
    """`start end label [extra...]` per line, times as integers in `units_per_second`."""
    phones = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "///":  # HTK multi-level label file: keep the first level
                break
            try:
                start, end = int(fields[0]), int(fields[1])
                label = fields[2]
            except (ValueError, IndexError):
                raise DataError(f"{path}:{number}: expected {kind}, got {line.strip()!r}") from None
            if start < 0 or end < start:
                raise DataError(f"{path}:{number}: interval [{start}, {end}] is negative or ends before it starts")
            phones.append(Phone(label, start / units_per_second, end / units_per_second))
    return phones


def write_textgrid(path: str | os.PathLike, phones: list[Phone], duration_s: float) -> Path:
    """Write `phones` as a long-format TextGrid with one interval tier "phones", atomically.

    The grid spans [0, max(duration_s, last end)] seconds; gaps between phones become empty
    intervals. Returns the path.
    """
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    end = max([float(duration_s)] + [p.end_s for p in phones])
    entries = [Interval(p.start_s, p.end_s, p.phone) for p in sorted(phones, key=lambda p: p.start_s)
               if p.phone and p.end_s > p.start_s]
    tg = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=end)
    tg.addTier(textgrid.IntervalTier("phones", entries, 0.0, end))
    path = Path(path)
    with atomic_path(path) as tmp:
        tg.save(str(tmp), format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
    return path


def frame_labels(phones: list[Phone], num_frames: int, hop_s: float = HOP_LENGTH / SAMPLE_RATE,
                 start_s: float = 0.0) -> list[str | None]:
    """The phone at the centre of each code frame.

    Frame i covers [start_s + i*hop_s, start_s + (i+1)*hop_s) seconds; its label is the phone
    whose [start_s, end_s) interval contains the frame centre, None where no phone does.
    Returns a list of `num_frames` labels.
    """
    if num_frames <= 0:
        return []
    if not phones:
        return [None] * num_frames
    ordered = sorted(phones, key=lambda p: p.start_s)
    starts = np.array([p.start_s for p in ordered])
    ends = np.array([p.end_s for p in ordered])
    centres = start_s + (np.arange(num_frames) + 0.5) * hop_s
    index = np.searchsorted(starts, centres, side="right") - 1
    labels: list[str | None] = []
    for i, c in zip(index.tolist(), centres.tolist()):
        labels.append(ordered[i].phone if i >= 0 and c < ends[i] else None)
    return labels


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
