"""The espeak-ng synthetic corpus: layout, determinism, distinct voices, phone timings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechvq.audio import SAMPLE_RATE, load_audio
from speechvq.cli import main
from speechvq.data.alignments import Phone, read_alignment
from speechvq.data.corpus import list_corpus
from speechvq.data.phones import ESPEAK_TO_ARPABET, SILENCE, normalize_phone
from speechvq.data.synth import (
    ESPEAK_SAMPLE_RATE,
    MAX_VOICES,
    VOICES,
    events_to_phones,
    sentences,
    synthesize_corpus,
    utterance_ids,
)
from speechvq.errors import SpeechVQError

VOWELS = {"iy", "ih", "eh", "ey", "ae", "aa", "aw", "ay", "ah", "oy", "ow", "uh", "uw", "er"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """2 voices x 2 utterances, written through the command line with 2 workers."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    assert main(["synth", str(out), "--voices", "2", "--utterances", "2", "--seed", "3", "--workers", "2"]) == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_a_parallel_speaker_folder_corpus(corpus):
    names = [v.name for v in VOICES[:2]]
    assert sorted(p.name for p in corpus.iterdir()) == sorted(names)
    texts = sentences(2, seed=3)
    for name in names:
        for uid, text in zip(utterance_ids(2), texts):
            assert (corpus / name / f"{uid}.txt").read_text(encoding="utf-8").strip() == text
            assert (corpus / name / f"{uid}.TextGrid").is_file()
            assert load_audio(corpus / name / f"{uid}.wav").size > SAMPLE_RATE // 2
    utterances = list_corpus(corpus)
    assert len(utterances) == 4
    assert {u.speaker for u in utterances} == set(names)
    assert {u.key for u in utterances} == set(utterance_ids(2))
    assert all(u.text and u.alignment is not None for u in utterances)


def test_same_arguments_give_byte_identical_files(corpus, tmp_path):
    result = synthesize_corpus(tmp_path / "again", voices=2, utterances=2, seed=3, workers=1, progress=False)
    assert result.written == 4 and result.skipped == 0
    assert _files(tmp_path / "again") == _files(corpus)


def test_rerun_skips_finished_utterances_and_remakes_missing_ones(corpus, tmp_path):
    copy = tmp_path / "copy"
    for rel, data in _files(corpus).items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    missing = copy / VOICES[1].name / "s0002.wav"
    missing.unlink()
    result = synthesize_corpus(copy, voices=2, utterances=2, seed=3, workers=1, progress=False)
    assert (result.written, result.skipped) == (1, 3)
    assert _files(copy) == _files(corpus)


def _median_vowel_f0(wav: np.ndarray, phones: list[Phone]) -> float:
    """Median over vowels of the autocorrelation pitch (60..400 Hz) of each vowel's middle 40 ms."""
    f0 = []
    lags = np.arange(SAMPLE_RATE // 400, SAMPLE_RATE // 60)
    for phone in phones:
        if normalize_phone(phone.phone, phone_set="espeak") in VOWELS:
            middle = int((phone.start_s + phone.end_s) / 2 * SAMPLE_RATE)
            x = wav[middle - 320:middle + 320].astype(np.float64)
            x = x - x.mean()
            corr = np.array([np.dot(x[:-lag], x[lag:]) for lag in lags])
            f0.append(SAMPLE_RATE / lags[int(np.argmax(corr))])
    return float(np.median(f0))


def test_rerun_with_other_sentences_is_refused(corpus, tmp_path):
    copy = tmp_path / "copy"
    for rel, data in _files(corpus).items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    with pytest.raises(SpeechVQError, match="holds another sentence"):
        synthesize_corpus(copy, voices=2, utterances=2, seed=4, workers=1, progress=False)


def test_voices_differ_in_pitch(corpus):
    """The first (male) and second (female) voices speak the same sentence far apart in pitch."""
    f0 = [_median_vowel_f0(load_audio(corpus / v.name / "s0001.wav"),
                           read_alignment(corpus / v.name / "s0001.TextGrid")) for v in VOICES[:2]]
    assert 70 < f0[0] < 160
    assert f0[1] > 1.4 * f0[0]


def test_phone_timings_agree_with_the_audio(corpus):
    """TextGrids tile the audio; pauses are quiet and vowels loud."""
    silence_rms, vowel_rms = [], []
    for wav_path in sorted(corpus.rglob("*.wav")):
        wav = load_audio(wav_path)
        phones = read_alignment(wav_path.with_suffix(".TextGrid"))
        assert phones[0].start_s == 0.0
        assert abs(phones[-1].end_s - wav.size / SAMPLE_RATE) < 2 / SAMPLE_RATE
        assert all(abs(a.end_s - b.start_s) < 1e-6 for a, b in zip(phones, phones[1:]))
        for phone in phones:
            segment = wav[int(phone.start_s * SAMPLE_RATE):int(phone.end_s * SAMPLE_RATE)]
            rms = float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))
            label = normalize_phone(phone.phone, phone_set="espeak")
            if label == SILENCE and phone.end_s - phone.start_s > 0.05:
                silence_rms.append(rms)
            elif label in VOWELS:
                vowel_rms.append(rms)
    assert silence_rms and vowel_rms
    assert np.mean(silence_rms) < 0.1 * np.mean(vowel_rms)


def test_every_espeak_phone_has_an_arpabet_mapping(corpus):
    labels = {p.phone for tg in corpus.rglob("*.TextGrid") for p in read_alignment(tg)}
    assert SILENCE in labels
    assert labels - {SILENCE} <= set(ESPEAK_TO_ARPABET)


def test_missing_espeak_library_gives_install_hint(tmp_path):
    with pytest.raises(SpeechVQError, match="sudo apt-get install espeak-ng"):
        synthesize_corpus(tmp_path / "out", voices=1, utterances=1, library="libespeak-ng-missing.so.9")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs", [dict(voices=0), dict(voices=MAX_VOICES + 1), dict(utterances=0),
                                    dict(workers=0)])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(SpeechVQError):
        synthesize_corpus(tmp_path, **kwargs)


def test_cli_refuses_too_many_voices_with_exit_2(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--voices", str(MAX_VOICES + 1)]) == 2
    assert "--voices" in capsys.readouterr().err


def test_voice_names_are_distinct_and_filesystem_safe():
    names = [v.name for v in VOICES]
    assert len(set(names)) == len(names) >= 12
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_") for n in names)


def test_sentences_are_distinct_deterministic_and_seeded():
    first = sentences(200, seed=0)
    assert len(set(first)) == 200
    assert sentences(200, seed=0) == first
    assert sentences(50, seed=0) == first[:50]
    assert sentences(50, seed=1) != first[:50]


def test_events_to_phones_tiles_the_audio_and_merges_pauses():
    events = [(100, "h"), (300, "@"), (500, "_:"), (520, "_"), (600, "l"), (600, "oU"), (900, "_")]
    phones = events_to_phones(events, num_samples=1000)
    sr = ESPEAK_SAMPLE_RATE
    assert phones == [
        Phone(SILENCE, 0.0, 100 / sr), Phone("h", 100 / sr, 300 / sr), Phone("@", 300 / sr, 500 / sr),
        Phone(SILENCE, 500 / sr, 600 / sr), Phone("oU", 600 / sr, 900 / sr), Phone(SILENCE, 900 / sr, 1000 / sr),
    ]
