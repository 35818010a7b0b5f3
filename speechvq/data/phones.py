"""Phone-set normalisation: bring alignments from different sources onto one label set.

The target is lower-case ARPAbet without stress, folded by default to the 39 classes of
Lee & Hon (1989), "Speaker-independent phone recognition using hidden Markov models"
(the standard TIMIT evaluation set), with every kind of silence or pause as the one class
``sil``. Sources understood:

- ARPAbet as in CMUdict, pocketsphinx and the Montreal Forced Aligner (``AH0``, ``EY1``):
  case and stress digits are dropped;
- TIMIT's 61 phones (``ax-h``, ``bcl``, ``h#``...): folded 61 -> 39; the glottal stop ``q``
  is deleted, as in Lee & Hon;
- espeak-ng's English phone names (``@2``, ``aI``, ``D``, ``t#``...), as written by
  `speechvq synth`: mapped to ARPAbet where a mapping exists, otherwise kept unchanged.

espeak-ng and ARPAbet share some names with different meanings (espeak ``D`` is ARPAbet
``dh``, ``T`` is ``th``, ``S`` is ``sh``, ``N`` is ``ng``, ``Z`` is ``zh``, ``V`` is
``ah``), so a label's phone set matters: `normalize_alignment` detects it per alignment
(`detect_phone_set`); `normalize_phone` takes it as an argument.

A user mapping (a TSV file of ``from<TAB>to`` lines, `load_phone_map`) overrides all of this
for the labels it names: the ``to`` label is used as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from speechvq.data.alignments import Phone
from speechvq.errors import DataError

SILENCE = "sil"
PHONE_SETS = ("auto", "arpabet", "espeak")

#: Labels (compared in lower case) that mean silence, pause or non-speech.
SILENCE_LABELS = frozenset({
    "", "sil", "sp", "spn", "h#", "pau", "epi", "_", "#", "<sil>", "<s>", "</s>", "silence",
    "+spn+", "+nsn+", "+sil+", "<eps>", "noise", "nsn",
})

#: The 39 classes of Lee & Hon (1989).
TIMIT_39 = frozenset(
    "iy ih eh ey ae aa aw ay ah oy ow uh uw er l r w y m n ng ch jh dh b d dx g p t k z v f th s sh hh"
    .split() + [SILENCE]
)

#: TIMIT's 61 phone labels.
TIMIT_61 = frozenset(
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh hv ih "
    "ix iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh".split()
)

#: The TIMIT glottal stop, deleted by the 61 -> 39 folding.
DELETED = "q"

#: Lee & Hon's folding of TIMIT 61 -> 39 (labels not listed map to themselves; ``q`` is deleted).
TIMIT_FOLDING: dict[str, str] = {
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l",
    "em": "m", "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    "pcl": SILENCE, "tcl": SILENCE, "kcl": SILENCE, "bcl": SILENCE, "dcl": SILENCE, "gcl": SILENCE,
    "h#": SILENCE, "pau": SILENCE, "epi": SILENCE,
}

#: CMUdict's ARPAbet (39 phones, without stress).
ARPABET = frozenset(
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh"
    .split()
)

#: espeak-ng English phone names (en-us, en-gb) -> ARPAbet. R-coloured and syllabic phones
#: map to their nucleus; ``;`` is espeak's linking glide between vowels ("the orange").
ESPEAK_TO_ARPABET: dict[str, str] = {
    # consonants
    "p": "p", "b": "b", "t": "t", "t2": "t", "t#": "dx", "?": "t", "d": "d", "d#": "d", "k": "k",
    "g": "g", "f": "f", "v": "v", "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh",
    "h": "hh", "x": "k", "m": "m", "m-": "m", "n": "n", "n-": "n", "N": "ng", "l": "l", "l-": "l",
    "@L": "l", "r": "r", "r-": "r", "w": "w", "W": "w", "j": "y", ";": "y", "tS": "ch", "dZ": "jh",
    # vowels
    "@": "ah", "@2": "ah", "@5": "ah", "a#": "ah", "V": "ah", "3": "er", "3:": "er", "@r": "er",
    "a": "ae", "aa": "ae", "A:": "aa", "A@": "aa", "0": "aa", "O": "ao", "O:": "ao", "O2": "ao",
    "O@": "ao", "o@": "ao", "E": "eh", "e": "eh", "e@": "eh", "I": "ih", "I2": "ih", "I#": "ih",
    "i": "iy", "i:": "iy", "i@": "iy", "i@3": "iy", "U": "uh", "U@": "uh", "u": "uw", "u:": "uw",
    "eI": "ey", "aI": "ay", "aI@": "ay", "aI3": "ay", "aU": "aw", "aU@": "aw", "OI": "oy",
    "oU": "ow", "@U": "ow", "o": "ow",
}

#: Broad manner classes of the folded phone set (ARPAbet without stress), for per-class reports;
#: every other phone (liquids, glides, affricates, unknown labels) is in ``others``.
PHONE_CLASSES: dict[str, frozenset[str]] = {
    "vowels": frozenset("aa ae ah ao aw ay eh er ey ih iy ow oy uh uw".split()),
    "stops": frozenset("p b t d k g dx".split()),
    "fricatives": frozenset("f v th dh s z sh zh hh".split()),
    "nasals": frozenset("m n ng".split()),
}
OTHER_CLASS = "others"

_STRESS = re.compile(r"^([a-z]+)[0-2]$")


def is_silence(name: str) -> bool:
    """True for any label that means silence or a pause (espeak's ``_...`` pauses included)."""
    name = name.strip()
    return name.lower() in SILENCE_LABELS or name.startswith("_")


def strip_stress(name: str) -> str:
    """ARPAbet without stress and in lower case: ``AH0`` -> ``ah``, ``EY1`` -> ``ey``."""
    lowered = name.strip().lower()
    match = _STRESS.match(lowered)
    return match.group(1) if match else lowered


def fold_timit(name: str) -> str | None:
    """Lee & Hon's 61 -> 39 folding of one lower-case label; None for the deleted ``q``."""
    if name == DELETED:
        return None
    return TIMIT_FOLDING.get(name, name)


def _is_arpabet_like(name: str) -> bool:
    return strip_stress(name) in ARPABET or name.strip().lower() in TIMIT_61


def detect_phone_set(labels) -> str:
    """"espeak" or "arpabet" for a sequence of labels from one alignment.

    espeak when some label is neither ARPAbet/TIMIT nor silence (``@2``, ``aI``, ``I``), or
    when single-letter labels come in both cases (``D`` beside ``n``); arpabet otherwise.
    """
    speech = [label.strip() for label in labels if not is_silence(label)]
    if any(not _is_arpabet_like(label) for label in speech):
        return "espeak"
    letters = [label for label in speech if label.isalpha()]
    if any(label.isupper() for label in letters) and any(label.islower() for label in letters):
        return "espeak"
    return "arpabet"


def phone_class(name: str) -> str:
    """The `PHONE_CLASSES` key of a normalised phone (``"vowels"``, ``"stops"``...), else ``"others"``."""
    return next((cls for cls, members in PHONE_CLASSES.items() if name in members), OTHER_CLASS)


def normalize_phone(name: str, mapping: dict[str, str] | None = None, phone_set: str = "auto",
                    fold: bool = True) -> str | None:
    """One label -> the common phone set.

    `mapping` (from `load_phone_map`) is looked up first, on the label as given (whitespace
    stripped), and its target returned unchanged. Otherwise: silence labels -> ``sil``;
    ``phone_set="espeak"`` maps espeak names through `ESPEAK_TO_ARPABET`; ARPAbet/TIMIT
    labels lose case and stress; with `fold`, TIMIT 61 -> 39 (so ``ao`` -> ``aa``, ``zh`` ->
    ``sh``). Returns None for a deleted phone (TIMIT ``q`` when folding). Names without a
    mapping are returned unchanged. ``phone_set="auto"`` tries ARPAbet first, then espeak.
    """
    if phone_set not in PHONE_SETS:
        raise ValueError(f"phone_set must be one of {PHONE_SETS}, got {phone_set!r}")
    name = name.strip()
    if mapping and name in mapping:
        return mapping[name]
    if is_silence(name):
        return SILENCE
    if phone_set == "espeak" or (phone_set == "auto" and not _is_arpabet_like(name)):
        if name not in ESPEAK_TO_ARPABET:
            return name
        label = ESPEAK_TO_ARPABET[name]
    else:
        label = strip_stress(name)
    return fold_timit(label) if fold else label


def normalize_alignment(phones: list[Phone], mapping: dict[str, str] | None = None,
                        phone_set: str = "auto", fold: bool = True) -> list[Phone]:
    """Normalise every label of one alignment (see `normalize_phone`).

    `phone_set="auto"` detects the alignment's phone set once from all its labels
    (`detect_phone_set`). Deleted phones are dropped (their time is left uncovered) and
    adjacent silences are merged into one interval.
    """
    if phone_set == "auto":
        phone_set = detect_phone_set([p.phone for p in phones])
    result: list[Phone] = []
    for phone in phones:
        label = normalize_phone(phone.phone, mapping, phone_set, fold)
        if label is None:
            continue
        if (result and label == SILENCE and result[-1].phone == SILENCE
                and abs(result[-1].end_s - phone.start_s) < 1e-9):
            result[-1] = Phone(SILENCE, result[-1].start_s, phone.end_s)
        else:
            result.append(Phone(label, phone.start_s, phone.end_s))
    return result


def load_phone_map(path: str | os.PathLike) -> dict[str, str]:
    """Read a user phone mapping: one ``from<TAB>to`` pair per line.

    Blank lines and lines starting with ``#`` are skipped. Raises DataError naming the file
    and line for a missing file, a line without exactly two tab-separated fields, an empty
    field or a label mapped twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such phone mapping file")
    mapping: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise DataError(f"{path}:{number}: expected 'from<TAB>to', got {line!r}")
            source, target = fields[0].strip(), fields[1].strip()
            if source in mapping:
                raise DataError(f"{path}:{number}: {source!r} is mapped twice")
            mapping[source] = target
    return mapping
