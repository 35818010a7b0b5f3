"""Forced alignment with pocketsphinx, checked against espeak-ng's own phone timings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechvq.audio import load_audio
from speechvq.cli import main
from speechvq.data import synth
from speechvq.data.align import (
    FAILURES_FILE,
    AlignmentFailure,
    align_corpus,
    align_utterance,
    boundary_report,
    compare_alignments,
    compare_corpus,
    load_dictionary,
    transcript_words,
)
from speechvq.data.alignments import Phone, read_alignment, write_textgrid
from speechvq.data.corpus import list_corpus
from speechvq.data.phones import ARPABET, SILENCE
from speechvq.errors import SpeechVQError

# Measured on 6 voices x 40 utterances (seed 0), before the half-window shift: 240/240 aligned,
# mean boundary error 20.5 ms, 96% of espeak's phones matched. With the shift, on 6 voices x 8
# utterances (seeds 1 and 2): mean absolute error 15.1 and 16.1 ms, median signed error +0.1 and
# -0.7 ms. The bounds leave room for the 4 utterances here.
MAX_MEAN_BOUNDARY_ERROR_S = 0.035
MAX_MEDIAN_SIGNED_ERROR_S = 0.008  # 12 ms without the shift
MIN_MATCHED_SHARE = 0.85


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """2 voices x 2 utterances of espeak-ng speech with transcripts and espeak TextGrids."""
    out = tmp_path_factory.mktemp("align") / "synth"
    synth.synthesize_corpus(out, voices=2, utterances=2, seed=5, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def aligned(synthetic, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("align") / "grids"
    return out, align_corpus(synthetic, out, workers=2, progress=False)


def test_aligns_synthetic_speech_close_to_espeak_timings(synthetic, aligned):
    out, summary = aligned
    assert summary.aligned >= 0.9 * 4 and summary.total == 4
    errors, matched, total = [], 0, 0
    for wav in sorted(synthetic.rglob("*.wav")):
        grid = out / wav.relative_to(synthetic).with_suffix(".TextGrid")
        score = compare_alignments(read_alignment(wav.with_suffix(".TextGrid")), read_alignment(grid))
        errors.append(score.mean_boundary_error_s * score.matched)
        matched += score.matched
        total += score.total
    assert matched >= MIN_MATCHED_SHARE * total
    assert sum(errors) / matched < MAX_MEAN_BOUNDARY_ERROR_S
    report = boundary_report(compare_corpus(out, synthetic))
    assert report["num_boundaries"] == matched
    assert abs(report["median_signed_error_s"]) < MAX_MEDIAN_SIGNED_ERROR_S


def test_textgrids_mirror_the_corpus_and_prepare_finds_them(synthetic, aligned):
    out, _ = aligned
    utterances = list_corpus(synthetic, alignments_dir=out)
    assert len(utterances) == 4
    for u in utterances:
        assert u.alignment == out / u.path.relative_to(synthetic).with_suffix(".TextGrid")
        phones = read_alignment(u.alignment)
        labels = {p.phone for p in phones}
        assert labels <= ARPABET | {SILENCE} and len(labels) > 5
        assert phones[0].start_s >= 0 and phones[-1].end_s <= load_audio(u.path).size / 16000 + 1e-9
    assert (out / FAILURES_FILE).read_text().splitlines() == ["id\tpath\treason"]


def test_rerun_skips_aligned_utterances(synthetic, aligned):
    out, first = aligned
    again = align_corpus(synthetic, out, workers=1, progress=False)
    assert (again.aligned, again.skipped) == (0, first.aligned)


def test_failures_are_listed_and_the_rest_aligned(synthetic, tmp_path, capsys):
    src = tmp_path / "corpus" / "spk"
    src.mkdir(parents=True)
    first = synthetic / synth.VOICES[0].name
    shutil.copy(first / "s0001.wav", src / "good.wav")
    shutil.copy(first / "s0001.txt", src / "good.txt")
    shutil.copy(first / "s0002.wav", src / "oov.wav")
    (src / "oov.txt").write_text("The zorblaxian quuxed.\n")
    shutil.copy(first / "s0002.wav", src / "untranscribed.wav")
    out = tmp_path / "grids"
    assert main(["align", str(src.parent), "--out", str(out), "--workers", "1"]) == 0  # not fatal
    captured = capsys.readouterr()
    assert "1/2 transcribed utterances aligned" in captured.out and "1 without transcript" in captured.out
    assert "oov.wav" in captured.err
    assert (out / "spk" / "good.TextGrid").is_file() and not (out / "spk" / "oov.TextGrid").exists()
    rows = (out / FAILURES_FILE).read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith("spk_oov\t") and "quuxed zorblaxian" in rows[0]

    (src / "corrupt.wav").write_bytes(b"RIFF....not a wav")
    (src / "corrupt.txt").write_text("hello\n")
    assert main(["align", str(src.parent), "--out", str(out), "--workers", "1"]) == 1  # a bad file
    rows = (out / FAILURES_FILE).read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["spk_corrupt", "spk_oov"]


def test_corpus_without_transcripts_is_refused(synthetic, tmp_path):
    src = tmp_path / "corpus" / "spk"
    src.mkdir(parents=True)
    shutil.copy(synthetic / synth.VOICES[0].name / "s0001.wav", src / "a.wav")
    assert main(["align", str(src.parent), "--out", str(tmp_path / "grids")]) == 2


def test_out_of_vocabulary_words_raise():
    with pytest.raises(AlignmentFailure, match="not in the dictionary: quuxed"):
        align_utterance(np.zeros(16000, dtype=np.float32), "hello quuxed")


def test_synth_sentences_are_all_in_the_dictionary():
    dictionary = load_dictionary()
    words = {w for sentence in synth.sentences(300, seed=0) for w in transcript_words(sentence)}
    assert not words - set(dictionary)


def test_transcript_words():
    assert transcript_words("Don't stop -- twenty-one, \"Alice\"!") == ["don't", "stop", "twenty", "one", "alice"]


def test_compare_alignments():
    ref = [Phone("sil", 0.0, 0.1), Phone("D", 0.1, 0.2), Phone("@2", 0.2, 0.3), Phone("k", 0.3, 0.4)]
    same = [Phone("sil", 0.0, 0.1), Phone("DH", 0.1, 0.2), Phone("AH0", 0.2, 0.3), Phone("K", 0.3, 0.4)]
    score = compare_alignments(ref, same)
    assert (score.matched, score.total, score.mean_boundary_error_s) == (3, 3, 0.0)
    shifted = [Phone(p.phone, p.start_s + 0.05, p.end_s + 0.05) for p in same]
    assert compare_alignments(ref, shifted).mean_boundary_error_s == pytest.approx(0.05)
    missing = [same[0], same[1], same[3]]
    score = compare_alignments(ref, missing)
    assert (score.matched, score.total, score.mean_boundary_error_s) == (2, 3, 0.0)

    assert score.signed_errors_s == (0.0, 0.0) and score.phones == ("dh", "k")


# Reference (espeak-ng names) and a hypothesis whose phones start late by a known amount per class.
REFERENCE = [Phone("_:", 0.0, 0.1), Phone("D", 0.1, 0.15), Phone("@2", 0.15, 0.2), Phone("k", 0.2, 0.3),
             Phone("a", 0.3, 0.42), Phone("t", 0.42, 0.5), Phone("s", 0.5, 0.6), Phone("m", 0.6, 0.7),
             Phone("l", 0.7, 0.8), Phone("_", 0.8, 1.0)]
SHIFT_S = {"dh": 0.005, "ah": 0.015, "k": -0.030, "ae": 0.015, "t": -0.030, "s": 0.005, "m": 0.060, "l": 0.0}
ARPABET_NAMES = {"D": "DH", "@2": "AH0", "k": "K", "a": "AE1", "t": "T", "s": "S", "m": "M", "l": "L"}


def shifted_hypothesis() -> list[Phone]:
    """REFERENCE in ARPAbet, each phone starting SHIFT_S later (and the previous one ending there)."""
    names = ["sil" if p.phone.startswith("_") else ARPABET_NAMES[p.phone] for p in REFERENCE]
    starts = [p.start_s + SHIFT_S.get(n.lower().rstrip("01"), 0.0) for p, n in zip(REFERENCE, names)]
    ends = starts[1:] + [REFERENCE[-1].end_s]
    return [Phone(n, start, end) for n, start, end in zip(names, starts, ends)]


def test_boundary_report_gives_the_known_offsets():
    score = compare_alignments(REFERENCE, shifted_hypothesis())
    assert score.phones == ("dh", "ah", "k", "ae", "t", "s", "m", "l")
    assert score.signed_errors_s == pytest.approx([SHIFT_S[p] for p in score.phones])
    report = boundary_report([score, score])
    shifts = np.array(list(SHIFT_S.values()))
    assert report["num_alignments"] == 2 and report["num_boundaries"] == 16 and report["matched_share"] == 1.0
    assert report["mean_signed_error_s"] == pytest.approx(shifts.mean())
    assert report["median_signed_error_s"] == pytest.approx(np.median(shifts))
    assert report["mean_abs_error_s"] == pytest.approx(np.abs(shifts).mean())
    assert report["share_within_10_ms"] == pytest.approx(3 / 8)  # dh, s, l
    assert report["share_within_20_ms"] == pytest.approx(5 / 8)  # + ah, ae
    assert report["share_within_50_ms"] == pytest.approx(7 / 8)  # + k, t; not m
    classes = report["by_class"]
    assert classes["vowels"]["mean_signed_error_s"] == pytest.approx(0.015)
    assert classes["stops"]["median_signed_error_s"] == pytest.approx(-0.030)
    assert classes["fricatives"] == {"num_boundaries": 4, "mean_abs_error_s": pytest.approx(0.005),
                                     "mean_signed_error_s": pytest.approx(0.005),
                                     "median_signed_error_s": pytest.approx(0.005)}
    assert classes["nasals"]["mean_signed_error_s"] == pytest.approx(0.060)
    assert classes["others"]["num_boundaries"] == 2 and classes["others"]["mean_abs_error_s"] == 0.0
    empty = boundary_report([])
    assert empty["num_boundaries"] == 0 and empty["share_within_10_ms"] is None and empty["matched_share"] is None


def test_compare_corpus_pairs_textgrids_by_relative_path(tmp_path):
    write_textgrid(tmp_path / "ref" / "spk" / "u1.TextGrid", REFERENCE, 1.0)
    write_textgrid(tmp_path / "hyp" / "spk" / "u1.TextGrid", shifted_hypothesis(), 1.0)
    write_textgrid(tmp_path / "hyp" / "spk" / "u2.TextGrid", shifted_hypothesis(), 1.0)  # no reference: skipped
    scores = compare_corpus(tmp_path / "hyp", tmp_path / "ref")
    assert len(scores) == 1 and scores[0].matched == 8
    assert boundary_report(scores)["median_signed_error_s"] == pytest.approx(np.median(list(SHIFT_S.values())))
    with pytest.raises(SpeechVQError, match="no reference alignment"):
        compare_corpus(tmp_path / "hyp", tmp_path / "elsewhere")


def test_align_cli_compares_to_the_synthetic_timings(synthetic, tmp_path, capsys):
    src = tmp_path / "corpus" / "spk"
    src.mkdir(parents=True)
    first = synthetic / synth.VOICES[0].name
    for suffix in (".wav", ".txt", ".TextGrid"):
        shutil.copy(first / f"s0001{suffix}", src / f"s0001{suffix}")
    out = tmp_path / "grids"
    assert main(["align", str(src.parent), "--out", str(out), "--workers", "1", "--compare-to", str(src.parent)]) == 0
    printed = capsys.readouterr().out
    assert "within 10 / 20 / 50 ms:" in printed and "stops:" in printed
    report = json.loads((out / "boundary_errors.json").read_text())
    assert report["num_alignments"] == 1 and report["num_boundaries"] > 10
