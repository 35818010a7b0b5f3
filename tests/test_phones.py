"""Phone-set normalisation: TIMIT folding, ARPAbet stress, espeak-ng names, silences, TSV overrides."""

from __future__ import annotations

import pytest

from speechvq.data.alignments import Phone
from speechvq.data.phones import (
    ARPABET,
    ESPEAK_TO_ARPABET,
    SILENCE,
    TIMIT_39,
    TIMIT_61,
    detect_phone_set,
    load_phone_map,
    normalize_alignment,
    normalize_phone,
)
from speechvq.errors import DataError


def test_timit_61_folds_to_exactly_39_classes():
    assert len(TIMIT_61) == 61
    folded = {normalize_phone(p, phone_set="arpabet") for p in TIMIT_61}
    folded.discard(None)  # the glottal stop q is deleted
    assert len(folded) == 39
    assert folded == TIMIT_39


@pytest.mark.parametrize("timit, folded", [
    ("ao", "aa"), ("ax", "ah"), ("ax-h", "ah"), ("axr", "er"), ("hv", "hh"), ("ix", "ih"), ("el", "l"),
    ("em", "m"), ("en", "n"), ("nx", "n"), ("eng", "ng"), ("zh", "sh"), ("ux", "uw"), ("bcl", SILENCE),
    ("kcl", SILENCE), ("h#", SILENCE), ("pau", SILENCE), ("epi", SILENCE), ("dx", "dx"), ("iy", "iy"),
    ("q", None),
])
def test_timit_folding_of_single_phones(timit, folded):
    assert normalize_phone(timit, phone_set="arpabet") == folded


def test_folding_can_be_turned_off():
    assert normalize_phone("ao", phone_set="arpabet", fold=False) == "ao"
    assert normalize_phone("ZH1", fold=False) == "zh"


@pytest.mark.parametrize("arpabet, plain", [("AH0", "ah"), ("EY1", "ey"), ("ER2", "er"), ("HH", "hh"),
                                            ("iy1", "iy"), ("NG", "ng")])
def test_arpabet_stress_is_stripped(arpabet, plain):
    assert normalize_phone(arpabet) == plain


def test_all_cmudict_phones_with_stress_land_in_the_39_set():
    stressed = {f"{p.upper()}{d}" for p in ARPABET for d in "012"} | {p.upper() for p in ARPABET}
    assert {normalize_phone(p) for p in stressed} <= TIMIT_39


@pytest.mark.parametrize("espeak, arpabet", [
    ("D", "dh"), ("T", "th"), ("S", "sh"), ("N", "ng"), ("V", "ah"), ("@2", "ah"), ("aI", "ay"), ("oU", "ow"),
    ("t#", "dx"), ("dZ", "jh"), ("tS", "ch"), ("j", "y"), ("i:", "iy"), ("3:", "er"), ("O:", "aa"),
    ("_:", SILENCE), ("_", SILENCE), ("_!", SILENCE),
])
def test_espeak_names_map_to_arpabet(espeak, arpabet):
    assert normalize_phone(espeak, phone_set="espeak") == arpabet


def test_espeak_and_arpabet_read_shared_names_differently():
    assert normalize_phone("D", phone_set="espeak") == "dh"
    assert normalize_phone("D", phone_set="arpabet") == "d"


def test_every_espeak_mapping_lands_in_the_39_set():
    assert {normalize_phone(p, phone_set="espeak") for p in ESPEAK_TO_ARPABET} <= TIMIT_39


def test_unmapped_names_are_kept():
    assert normalize_phone("@@@", phone_set="espeak") == "@@@"
    assert normalize_phone("xyz", phone_set="arpabet") == "xyz"


@pytest.mark.parametrize("label", ["sil", "SIL", "sp", "spn", "h#", "pau", "epi", "", "_", "_:", "<sil>"])
def test_silence_labels_become_one_class(label):
    assert normalize_phone(label) == SILENCE


def test_phone_set_detection():
    assert detect_phone_set(["sil", "D", "@2", "k", "a", "b"]) == "espeak"
    assert detect_phone_set(["D", "n"]) == "espeak"  # mixed case
    assert detect_phone_set(["sil", "DH", "AH0", "K", "AE1", "B"]) == "arpabet"
    assert detect_phone_set(["h#", "dh", "ax", "bcl", "b", "q"]) == "arpabet"


def test_normalize_alignment_detects_espeak_and_merges_silences():
    phones = [Phone("_", 0.0, 0.1), Phone("sil", 0.1, 0.2), Phone("D", 0.2, 0.3), Phone("@2", 0.3, 0.4),
              Phone("_:", 0.4, 0.5)]
    assert normalize_alignment(phones) == [Phone(SILENCE, 0.0, 0.2), Phone("dh", 0.2, 0.3),
                                           Phone("ah", 0.3, 0.4), Phone(SILENCE, 0.4, 0.5)]


def test_normalize_alignment_drops_the_glottal_stop_and_keeps_its_gap():
    phones = [Phone("h#", 0.0, 0.1), Phone("q", 0.1, 0.15), Phone("ix", 0.15, 0.2), Phone("pau", 0.2, 0.3),
              Phone("tcl", 0.3, 0.4)]
    assert normalize_alignment(phones) == [Phone(SILENCE, 0.0, 0.1), Phone("ih", 0.15, 0.2),
                                           Phone(SILENCE, 0.2, 0.4)]


def test_tsv_mapping_overrides(tmp_path):
    path = tmp_path / "map.tsv"
    path.write_text("# my phone set\n\nAH0\tschwa\nD\tdee\nsp\tshort_pause\n", encoding="utf-8")
    mapping = load_phone_map(path)
    assert mapping == {"AH0": "schwa", "D": "dee", "sp": "short_pause"}
    assert normalize_phone("AH0", mapping) == "schwa"
    assert normalize_phone("AH1", mapping) == "ah"  # not named: the default rules
    assert normalize_phone("sp", mapping) == "short_pause"
    phones = [Phone("D", 0.0, 0.1), Phone("@2", 0.1, 0.2)]
    assert [p.phone for p in normalize_alignment(phones, mapping)] == ["dee", "ah"]


@pytest.mark.parametrize("content, where", [("AH0 schwa\n", ":1:"), ("a\tb\nc\t\n", ":2:"),
                                            ("a\tb\na\tc\n", ":2:"), ("a\tb\tc\n", ":1:")])
def test_malformed_tsv_is_refused_naming_the_line(tmp_path, content, where):
    path = tmp_path / "map.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"map.tsv{where}"):
        load_phone_map(path)


def test_missing_tsv_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such phone mapping file"):
        load_phone_map(tmp_path / "absent.tsv")
