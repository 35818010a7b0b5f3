"""Triphone ABX: item files from alignments, the seeded cap, and error rates with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from speechvq.analysis.abx import (
    ITEM_FILE_HEADER,
    TriphoneItem,
    abx_error_rates,
    abx_table,
    one_hot,
    select_items,
    triphone_items,
    write_item_file,
)
from speechvq.data.alignments import Phone
from speechvq.data.phones import SILENCE
from speechvq.errors import DataError

FRAME_S = 0.004
FRAMES_PER_PHONE = 5
PHONES = ("b", "aa", "iy", "g", "d")
# Each sentence has the minimal pairs b-aa-g / b-iy-g and d-aa-b / d-iy-b (contexts b_g and d_b).
SENTENCES = (("b", "aa", "g", "d", "iy", "b"), ("b", "iy", "g", "d", "aa", "b"))


def alignment(phones: tuple[str, ...], frames_per_phone: int = FRAMES_PER_PHONE) -> list[Phone]:
    """Back-to-back phones of `frames_per_phone` 4 ms frames each, between two silences."""
    step = frames_per_phone * FRAME_S
    labels = (SILENCE, *phones, SILENCE)
    return [Phone(p, i * step, (i + 1) * step) for i, p in enumerate(labels)]


def corpus(speakers: int = 3, repeats: int = 2) -> tuple[list[TriphoneItem], dict[str, list[str]]]:
    """Items and the per-frame phone labels of `repeats` x both sentences by each speaker."""
    items, frame_phones = [], {}
    for s in range(speakers):
        for r in range(repeats):
            for k, sentence in enumerate(SENTENCES):
                file = f"spk{s}_r{r}_s{k}"
                items += triphone_items(file, f"spk{s}", alignment(sentence))
                frame_phones[file] = [p for p in (SILENCE, *sentence, SILENCE) for _ in range(FRAMES_PER_PHONE)]
    return items, frame_phones


# ----------------------------------------------------------------------------- items

def test_items_of_a_hand_written_alignment():
    phones = [Phone(SILENCE, 0.0, 0.1), Phone("dh", 0.1, 0.15), Phone("ah", 0.15, 0.2), Phone("k", 0.2, 0.3),
              Phone("ae", 0.3, 0.42), Phone("t", 0.42, 0.5), Phone(SILENCE, 0.5, 0.7), Phone("s", 0.7, 0.8),
              Phone("ih", 0.8, 0.9), Phone("t", 0.95, 1.0)]  # a gap before the last t
    items = triphone_items("u1", "alice", phones)
    assert [(i.prev, i.phone, i.next) for i in items] == [("dh", "ah", "k"), ("ah", "k", "ae"), ("k", "ae", "t")]
    assert [(i.onset_s, i.offset_s) for i in items] == [(0.1, 0.3), (0.15, 0.42), (0.2, 0.5)]
    assert {(i.file, i.speaker) for i in items} == {("u1", "alice")}
    assert items[0].context == ("dh", "k")


def test_item_file_is_read_back_by_the_reference_loader(tmp_path):
    from zrc_abx2.ABX_src.ABXDataset.abx_item_file_loader import ABXItemFileLoader

    items, _ = corpus(speakers=2, repeats=1)
    path = write_item_file(items, tmp_path / "x.item")
    lines = path.read_text().splitlines()
    assert lines[0] == ITEM_FILE_HEADER and len(lines) == len(items) + 1
    assert lines[1] == "spk0_r0_s0 0.0200 0.0800 aa b g spk0"  # b-aa-g: from the b's start to the g's end
    loaded = ABXItemFileLoader().load_item_file(str(path))
    assert set(loaded.speaker_match) == {"spk0", "spk1"}
    assert set(loaded.phone_match) == {i.phone for i in items}
    assert set(loaded.context_match) == {f"{i.prev}+{i.next}" for i in items}
    first = loaded.files_data["spk0_r0_s0"][0]
    assert (first.onset, first.offset) == (pytest.approx(items[0].onset_s), pytest.approx(items[0].offset_s))


def test_item_file_refuses_whitespace_in_labels(tmp_path):
    with pytest.raises(DataError, match="whitespace"):
        write_item_file([TriphoneItem("u1", 0.0, 0.1, "a a", "b", "c", "s")], tmp_path / "x.item")


def test_select_keeps_minimal_pair_contexts_and_caps_whole_contexts():
    items, _ = corpus(speakers=3, repeats=2)
    kept = select_items(items, max_items=None)
    assert {i.context for i in kept} == {("b", "g"), ("d", "b")}
    assert len(kept) == 3 * 2 * 2 * 2  # speakers x repeats x sentences x 2 items in those contexts
    capped = select_items(items, max_items=15, seed=1)
    assert len(capped) == 12 and len({i.context for i in capped}) == 1  # one whole context of 12
    assert capped == select_items(items, max_items=15, seed=1)  # seeded
    assert {select_items(items, max_items=15, seed=s)[0].context for s in range(8)} == {("b", "g"), ("d", "b")}


# ----------------------------------------------------------------------------- error rates

def test_one_hot_phone_features_make_no_abx_errors():
    items, frame_phones = corpus()
    features = {file: np.eye(len(PHONES) + 1, dtype=np.float32)[[(*PHONES, SILENCE).index(p) for p in phones]]
                for file, phones in frame_phones.items()}
    rates = abx_error_rates(features, select_items(items))
    assert rates == {"within_speaker": 0.0, "across_speaker": 0.0, "num_items": 24}


def test_random_features_are_at_chance():
    items, frame_phones = corpus(speakers=6, repeats=6)
    rng = np.random.default_rng(0)
    features = {file: rng.normal(size=(len(phones), 16)).astype(np.float32) for file, phones in frame_phones.items()}
    rates = abx_error_rates(features, select_items(items))
    assert rates["within_speaker"] == pytest.approx(0.5, abs=0.08)
    assert rates["across_speaker"] == pytest.approx(0.5, abs=0.08)


def test_in_memory_scoring_equals_the_reference_command_on_files(tmp_path, capsys):
    from zrc_abx2 import EvalABX, EvalArgs

    items, frame_phones = corpus(speakers=3, repeats=2)
    items = select_items(items)
    rng = np.random.default_rng(1)
    features = {file: rng.normal(size=(len(phones), 8)).astype(np.float32) for file, phones in frame_phones.items()}
    for file, x in features.items():
        np.save(tmp_path / f"{file}.npy", x)
    item_file = write_item_file(items, tmp_path / "synthetic-triphones.item")  # dataset-subset name
    reference = EvalABX().eval_abx(EvalArgs(path_data=str(tmp_path), path_item_file=str(item_file),
                                            feature_size=FRAME_S, context_mode="within"))
    expected = {f"{r['abx-s-condition']}_speaker": r["score"] for r in reference}
    capsys.readouterr()
    rates = abx_error_rates(features, items)
    assert capsys.readouterr().out == ""  # the package's progress prints are kept off stdout
    assert 0.0 < rates["within_speaker"] < 1.0 and 0.0 < rates["across_speaker"] < 1.0
    assert rates["within_speaker"] == pytest.approx(expected["within_speaker"], abs=1e-6)
    assert rates["across_speaker"] == pytest.approx(expected["across_speaker"], abs=1e-6)


def test_items_without_triplets_give_no_rate():
    items, frame_phones = corpus(speakers=1, repeats=1)  # one speaker, each triphone once
    features = {file: np.ones((len(p), 4), np.float32) for file, p in frame_phones.items()}
    rates = abx_error_rates(features, select_items(items))
    assert rates == {"within_speaker": None, "across_speaker": None, "num_items": 4}


def test_one_hot_uses_only_the_codes_present():
    encoded = one_hot({"a": np.array([5, 9, 5]), "b": np.array([300])})
    assert encoded["a"].shape == (3, 3) and encoded["b"].shape == (1, 3)
    assert np.array_equal(encoded["a"][0], encoded["a"][2]) and encoded["a"][0] @ encoded["a"][1] == 0
    assert np.all(encoded["b"].sum(axis=1) == 1)


def test_abx_table_scores_every_representation_on_the_same_items():
    items, frame_phones = corpus()
    onehot = {file: np.eye(len(PHONES) + 1, dtype=np.float32)[[(*PHONES, SILENCE).index(p) for p in phones]]
              for file, phones in frame_phones.items()}
    constant = {file: np.ones_like(x) for file, x in onehot.items()}
    table = abx_table({"onehot": onehot, "constant": constant}, select_items(items))
    assert table["within_speaker"] == {"onehot": 0.0, "constant": 0.5}  # all distances tie: half right
    assert table["across_speaker"] == {"onehot": 0.0, "constant": 0.5}
    assert (table["num_items"], table["num_contexts"]) == (24, 2)
