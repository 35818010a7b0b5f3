"""`speechvq score`: reference lookup, per-conversion metrics, pair and overall aggregation, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_wav, write_raw_textgrid

pytest.importorskip("pyworld")
pytest.importorskip("pysptk")

from speechvq.analysis.score import (  # noqa: E402
    METRICS,
    Conversion,
    ReferenceIndex,
    aggregate,
    format_summary,
    normalize_text,
    read_conversions,
    score_conversions,
)
from speechvq.audio import load_audio  # noqa: E402
from speechvq.cli import main  # noqa: E402
from speechvq.data.corpus import SourceUtterance, list_corpus  # noqa: E402
from speechvq.errors import SpeechVQError  # noqa: E402
from speechvq.fileio import write_jsonl_atomic  # noqa: E402

FREQ = {"A": 220.0, "B": 660.0}  # each speaker's "voice" is a sine band


class BandEncoder:
    """Stand-in speaker encoder: the unit-norm spectrum in 32 bands of 250 Hz."""

    def embed(self, wav):
        spectrum = np.abs(np.fft.rfft(wav, n=16000))[:8000].reshape(32, 250).sum(axis=1)
        return (spectrum / np.linalg.norm(spectrum)).astype(np.float32)


class SignCodes(torch.nn.Module):
    """Stand-in VQ-VAE: a 64-sample frame's code is 1 if its mean is positive."""

    num_codes = 2

    def encode(self, wav):
        frames = wav.shape[1] // 64
        return (wav[:, : frames * 64].reshape(wav.shape[0], frames, 64).mean(-1) > 0).long()


@pytest.fixture()
def scored_setup(tmp_path):
    """Corpus A/k1..k4 and B/k1,k2,k4 (no B/k3); conversions of A/k1, A/k3 -> B, B/k1 -> A, A/k2 -> A."""
    corpus = tmp_path / "corpus"
    for speaker, keys in {"A": ["k1", "k2", "k3", "k4"], "B": ["k1", "k2", "k4"]}.items():
        for i, key in enumerate(keys):
            make_wav(corpus / speaker / f"{key}.wav", seconds=0.5, freq=FREQ[speaker] + 7 * i, amplitude=0.3)
    # A/k1 has a phone alignment (one phone throughout) beside its audio.
    write_raw_textgrid(corpus / "A" / "k1.TextGrid", {"phones": [(0.0, 0.5, "AH0")]}, 0.5)
    out = tmp_path / "conv"
    out.mkdir()

    def row(src_spk, key, tgt_spk, like):  # the output is a copy of a real recording (`like`)
        output = out / f"{src_spk}_{key}_to_{tgt_spk}.wav"
        shutil.copy(corpus / like, output)
        return {"source": str(corpus / src_spk / f"{key}.wav"), "source_speaker": src_spk, "utterance": key,
                "target_speaker": tgt_spk, "output": str(output)}

    rows = [
        row("A", "k1", "B", "B/k1.wav"),  # a good conversion, identical to the reference
        row("A", "k3", "B", "B/k2.wav"),  # B never said k3: no reference
        row("B", "k1", "A", "B/k1.wav"),  # a failed conversion: still sounds like B
        row("A", "k2", "A", "A/k2.wav"),  # a perfect reconstruction
    ]
    write_jsonl_atomic(out / "conversions.jsonl", rows)
    return corpus, out


def score(corpus, out, **kwargs):
    return score_conversions(read_conversions([out]), list_corpus(corpus), speaker_encoder=BandEncoder(),
                             f0_method="dio", progress=False, **kwargs)


def test_score_structure_references_and_aggregation(scored_setup):
    corpus, out = scored_setup
    result, failures = score(*scored_setup, vqvae=SignCodes())
    assert failures == []
    assert set(result) == {"conversions", "pairs", "overall", "real"} and result["real"] is False
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    for r in rows.values():
        assert {"target_similarity", "source_similarity", "closer_to_target", "mcd_db", "code_agreement",
                "source", "output", "source_speaker", "target_speaker", "utterance", *METRICS} <= set(r)
    good, missing, failed, recon = rows["A_k1_to_B"], rows["A_k3_to_B"], rows["B_k1_to_A"], rows["A_k2_to_A"]
    # Reference lookup by utterance key in the target speaker's folder.
    assert Path(good["reference"]) == corpus / "B" / "k1.wav" and good["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert missing["reference"] is None and missing["mcd_db"] is None
    assert Path(recon["reference"]) == corpus / "A" / "k2.wav" and recon["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert failed["mcd_db"] > 1.0  # B's voice against A's recording of k1
    assert good["envelope_shape_db"] == 0.0 and recon["envelope_shape_db"] == 0.0  # copies of their references
    assert failed["envelope_shape_db"] > 0.0 and missing["envelope_shape_db"] is None
    assert good["envelope_tilt_db"] == 0.0 and missing["envelope_tilt_db"] is None
    # Speaker similarity: the conversion to B sounds like B, the failed one too.
    assert good["closer_to_target"] is True and good["target_similarity"] > good["source_similarity"]
    assert failed["closer_to_target"] is False
    assert recon["closer_to_target"] is None and recon["target_similarity"] == recon["source_similarity"]
    # Identification among the scored speakers (A, B): the copies of B's and A's recordings are theirs.
    assert good["target_identified"] is True and missing["target_identified"] is True
    assert failed["target_identified"] is False and recon["target_identified"] is True
    assert recon["code_agreement"] == 1.0 and 0.0 <= good["code_agreement"] <= 1.0
    # Voicing, pitch and flatness: the reconstruction is a copy of its source (A's 227 Hz tone).
    assert recon["voiced_retention"] == 1.0 and recon["f0_error_cents"] == pytest.approx(0.0, abs=1e-6)
    assert recon["flatness_ratio"] == 1.0 and recon["output_flatness"] == recon["source_flatness"]
    assert recon["output_log_f0"] == pytest.approx(np.log(FREQ["A"] + 7), abs=0.01)
    assert recon["f0_closer_to_target"] is None
    assert all(r["envelope_r2"] is None for r in (good, missing, failed))  # reconstructions only
    assert all(r["f0_error_cents"] is None for r in (good, missing, failed))  # conversions move the pitch
    # Pair and overall aggregation.
    pairs = result["pairs"]
    assert set(pairs) == {"A->B", "B->A", "A->A"}
    assert pairs["A->B"]["count"] == 2 and pairs["A->B"]["closer_to_target"] == 1.0
    assert pairs["A->B"]["mcd_count"] == 1 and pairs["A->B"]["mcd_db"] == pytest.approx(good["mcd_db"])
    assert pairs["B->A"]["closer_to_target"] == 0.0
    assert pairs["A->A"]["closer_to_target"] is None and pairs["A->A"]["target_identified"] == 1.0
    assert pairs["B->A"]["target_identified"] == 0.0
    overall = result["overall"]
    assert overall["count"] == 4 and overall["closer_to_target"] == pytest.approx(2 / 3)
    assert overall["mcd_count"] == 3
    assert overall["mcd_db"] == pytest.approx(np.mean([good["mcd_db"], failed["mcd_db"], recon["mcd_db"]]))
    assert overall["f0_error_cents"] == pytest.approx(recon["f0_error_cents"])
    assert overall["flatness_ratio"] == pytest.approx(np.mean([r["flatness_ratio"] for r in rows.values()]))
    assert overall["voiced_retention"] == pytest.approx(
        np.mean([r["voiced_retention"] for r in rows.values() if r["voiced_retention"] is not None]))
    summary = format_summary(result)
    assert "A->B" in summary and "overall" in summary and "voiced" in summary and "F0 ct" in summary


def test_phone_agreement_maps_output_codes_through_the_probe(scored_setup):
    corpus, out = scored_setup
    probe = {"code_to_phone": ["sil", "ah"], "phone_map": None}  # SignCodes: code 1 (positive mean) -> "ah"
    result, _ = score(corpus, out, vqvae=SignCodes(), probe=probe)
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    codes = SignCodes().encode(torch.from_numpy(load_audio(out / "A_k1_to_B.wav"))[None])[0].numpy()
    source_frames = -(-len(load_audio(corpus / "A" / "k1.wav")) // 64)
    expected = np.mean(codes[:source_frames] == 1)
    assert 0 < expected < 1
    assert rows["A_k1_to_B"]["phone_agreement"] == pytest.approx(expected)
    assert rows["A_k3_to_B"]["phone_agreement"] is None  # A/k3 has no alignment
    assert result["overall"]["phone_agreement"] == pytest.approx(expected)
    with pytest.raises(SpeechVQError, match="maps 3 codes"):
        score(corpus, out, vqvae=SignCodes(), probe={"code_to_phone": ["a", "b", "c"]})


def test_code_agreement_is_null_without_a_model(scored_setup):
    result, _ = score(*scored_setup)
    assert all(r["code_agreement"] is None for r in result["conversions"])
    assert result["overall"]["code_agreement"] is None


def test_centroids_leave_out_the_source_utterances(scored_setup):
    corpus, out = scored_setup
    conversions = read_conversions([out])
    index = ReferenceIndex(list_corpus(corpus))
    sources = {c.source.resolve() for c in conversions}
    pool_a = index.centroid_utterances("A", sources, limit=10)
    assert [u.key for u in pool_a] == ["k4"]
    assert [u.key for u in index.centroid_utterances("B", sources, limit=1)] == ["k2"]


def test_reference_by_vctk_stem_and_by_transcript():
    def utt(speaker, key, text):
        return SourceUtterance(f"{speaker}_{key}", speaker, key, Path(f"/corpus/{speaker}/{speaker}_{key}_mic1.flac"),
                               text, None)

    index = ReferenceIndex([utt("p225", "001", "Please call Stella."), utt("p226", "001", "Ask her to bring these."),
                            utt("p226", "007", "please, call  STELLA"), utt("p227", "001", "Please call Stella!"),
                            utt("p227", "009", "Please call Stella.")])
    # A copy of the source elsewhere: found by speaker and stem (speaker prefix and mic suffix removed).
    conv = Conversion(Path("/elsewhere/p225_001_mic1.wav"), "p225", "p225_001_mic1", "p226", Path("/out/x.wav"))
    assert index.source_entry(conv).key == "001"
    assert index.reference(conv).key == "007"  # p226's 001 is another sentence: matched by transcript
    to_p227 = Conversion(conv.source, "p225", conv.utterance, "p227", Path("/out/y.wav"))
    assert index.reference(to_p227).key == "001"  # same key and same sentence
    assert normalize_text("Please, call  STELLA!") == "please call stella"
    unknown = Conversion(Path("/x/zzz.wav"), "p225", "zzz", "p226", Path("/out/y.wav"))
    assert index.reference(unknown) is None


def test_aggregate_ignores_nulls():
    rows = [{"target_similarity": 0.8, "source_similarity": 0.5, "closer_to_target": True, "mcd_db": None,
             "code_agreement": None},
            {"target_similarity": 0.4, "source_similarity": 0.6, "closer_to_target": False, "mcd_db": 6.0,
             "code_agreement": 0.5}]
    agg = aggregate(rows)
    assert agg["count"] == 2 and agg["closer_to_target"] == 0.5
    assert agg["target_similarity"] == pytest.approx(0.6) and agg["mcd_db"] == 6.0 and agg["mcd_count"] == 1
    assert agg["voiced_retention"] is None and agg["f0_error_cents"] is None and agg["f0_closer_to_target"] is None


def test_aggregate_takes_the_median_f0_error_and_the_share_f0_closer():
    rows = [{"f0_error_cents": 10.0, "voiced_retention": 1.0, "flatness_ratio": 1.0, "f0_closer_to_target": True},
            {"f0_error_cents": 20.0, "voiced_retention": 0.5, "flatness_ratio": 3.0, "f0_closer_to_target": None},
            {"f0_error_cents": 1200.0, "voiced_retention": None, "flatness_ratio": None, "f0_closer_to_target": False},
            {"f0_error_cents": None, "voiced_retention": 0.0, "flatness_ratio": 2.0, "f0_closer_to_target": True}]
    agg = aggregate(rows)
    assert agg["f0_error_cents"] == 20.0  # the median: one octave error does not swamp it (the mean is 410)
    assert agg["voiced_retention"] == 0.5 and agg["flatness_ratio"] == 2.0
    assert agg["f0_closer_to_target"] == pytest.approx(2 / 3)


def test_score_cli_writes_json_and_lists_failed_outputs(scored_setup, tmp_path, capsys):
    corpus, out = scored_setup
    (out / "B_k1_to_A.wav").unlink()  # a missing output: listed, the rest scored, exit status 1
    json_path = tmp_path / "score.json"
    assert main(["score", str(out), "--references", str(corpus), "--json", str(json_path), "--f0", "dio",
                 "--quiet", "--threads", "1"]) == 1
    captured = capsys.readouterr()
    assert "B_k1_to_A.wav" in captured.err and "overall" in captured.out
    result = json.loads(json_path.read_text())
    assert set(result) == {"conversions", "pairs", "overall", "real"} and result["overall"]["count"] == 4
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    assert rows["B_k1_to_A"]["error"] and rows["B_k1_to_A"]["target_similarity"] is None
    assert rows["B_k1_to_A"]["voiced_retention"] is None and rows["B_k1_to_A"]["flatness_ratio"] is None
    assert rows["A_k1_to_B"]["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert -1.0 <= rows["A_k1_to_B"]["target_similarity"] <= 1.0


def test_score_cli_without_conversions_file_is_a_one_line_error(tmp_path, capsys):
    make_wav(tmp_path / "corpus" / "A" / "k1.wav")
    assert main(["score", str(tmp_path), "--references", str(tmp_path / "corpus"), "--json",
                 str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "conversions.jsonl" in err and err.strip().count("\n") == 0
    assert main(["score", str(tmp_path), "--references", str(tmp_path / "corpus"), "--json",
                 str(tmp_path / "s.json"), "--probe", str(tmp_path / "probe.json")]) == 2
    assert "--probe needs --checkpoint" in capsys.readouterr().err


PITCH = {"low": 120.0, "high": 240.0}  # each speaker's pitch, inside WORLD's 50-600 Hz search range


@pytest.fixture()
def pitch_setup(tmp_path):
    """Corpus low/u1..u4 (sines at 120 + 3 i Hz) and high/u1..u4 (240 + 3 i Hz), outputs made to order.

    Returns (corpus, out, add): add(src_spk, key, tgt_spk, name, freq) writes a 0.5 s sine of
    `freq` Hz (None: white noise) as output `name` and lists it in out/conversions.jsonl.
    """
    corpus = tmp_path / "corpus"
    for speaker, f0 in PITCH.items():
        for i in range(4):
            make_wav(corpus / speaker / f"u{i + 1}.wav", seconds=0.5, freq=f0 + 3 * i, amplitude=0.3)
    out = tmp_path / "conv"
    out.mkdir()
    rows = []

    def add(src_spk, key, tgt_spk, name, freq, seed=0):
        output = make_wav(out / f"{name}.wav", seconds=0.5, freq=freq, amplitude=0.3, seed=seed)
        rows.append({"source": str(corpus / src_spk / f"{key}.wav"), "source_speaker": src_spk, "utterance": key,
                     "target_speaker": tgt_spk, "output": str(output)})
        write_jsonl_atomic(out / "conversions.jsonl", rows)

    return corpus, out, add


def scored_rows(corpus, out):
    """Score out/conversions.jsonl (no failures allowed): {output stem: row}."""
    result, failures = score(corpus, out)
    assert failures == []
    return {Path(r["output"]).stem: r for r in result["conversions"]}


def test_voiced_retention_is_one_for_a_copy_and_near_zero_for_noise(pitch_setup):
    corpus, out, add = pitch_setup
    add("low", "u2", "low", "copy", freq=PITCH["low"] + 3)  # the same tone as low/u2
    add("low", "u2", "high", "noise", freq=None)
    add("high", "u3", "low", "noise_2", freq=None, seed=1)
    rows = scored_rows(corpus, out)
    assert rows["copy"]["voiced_retention"] == 1.0
    assert rows["noise"]["voiced_retention"] < 0.1 and rows["noise_2"]["voiced_retention"] < 0.1
    assert rows["noise"]["flatness_ratio"] > 1000  # white noise in place of a tone
    assert rows["copy"]["flatness_ratio"] == pytest.approx(1.0, rel=1e-6)


def test_f0_error_is_zero_for_a_copy_and_1200_cents_an_octave_up(pitch_setup):
    corpus, out, add = pitch_setup
    add("low", "u2", "low", "copy", freq=PITCH["low"] + 3)
    add("low", "u2", "low", "octave", freq=2 * (PITCH["low"] + 3))  # a "reconstruction" an octave up
    add("low", "u3", "high", "conversion", freq=2 * (PITCH["low"] + 6))
    rows = scored_rows(corpus, out)
    assert rows["copy"]["f0_error_cents"] == pytest.approx(0.0, abs=1e-6)
    assert rows["octave"]["f0_error_cents"] == pytest.approx(1200.0, abs=10.0)
    assert rows["octave"]["voiced_retention"] > 0.9
    assert rows["conversion"]["f0_error_cents"] is None  # a conversion's pitch is moved on purpose


def test_f0_closer_to_target_when_the_output_has_the_target_speakers_pitch(pitch_setup):
    corpus, out, add = pitch_setup
    add("low", "u1", "high", "converted", freq=PITCH["high"] + 3)  # the pitch of high's references
    add("high", "u1", "low", "failed", freq=PITCH["high"] + 3)  # meant to sound like low, still high
    add("low", "u2", "low", "reconstruction", freq=PITCH["low"] + 3)
    result, failures = score(corpus, out)
    assert failures == []
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    assert rows["converted"]["output_log_f0"] == pytest.approx(np.log(PITCH["high"] + 3), abs=0.01)
    assert rows["converted"]["f0_closer_to_target"] is True
    assert rows["failed"]["f0_closer_to_target"] is False
    assert rows["reconstruction"]["f0_closer_to_target"] is None
    assert result["pairs"]["low->high"]["f0_closer_to_target"] == 1.0
    assert result["overall"]["f0_closer_to_target"] == 0.5


def test_f0_closer_to_target_is_null_without_the_target_speakers_references(pitch_setup):
    corpus, out, add = pitch_setup
    add("low", "u1", "nobody", "converted", freq=PITCH["high"])  # the corpus has no utterance of "nobody"
    rows = scored_rows(corpus, out)
    assert rows["converted"]["output_log_f0"] is not None and rows["converted"]["f0_closer_to_target"] is None


def test_score_real_scores_the_target_speakers_recordings_in_place_of_the_outputs(scored_setup, tmp_path, capsys):
    corpus, out = scored_setup
    json_path = tmp_path / "real.json"
    assert main(["score", str(out), "--references", str(corpus), "--json", str(json_path), "--f0", "dio",
                 "--real", "--quiet", "--threads", "1"]) == 0
    assert "skipped 1 of 4" in capsys.readouterr().out
    result = json.loads(json_path.read_text())
    assert result["real"] is True and set(result) == {"conversions", "pairs", "overall", "real"}
    rows = {(r["source_speaker"], r["utterance"], r["target_speaker"]): r for r in result["conversions"]}
    assert set(rows) == {("A", "k1", "B"), ("B", "k1", "A"), ("A", "k2", "A")}  # B never said k3: skipped
    for (_, key, target), r in rows.items():
        assert Path(r["output"]) == Path(r["reference"]) == corpus / target / f"{key}.wav"
        assert r["mcd_db"] == pytest.approx(0.0, abs=1e-6) and "error" not in r
    recon = rows[("A", "k2", "A")]
    assert recon["voiced_retention"] == 1.0 and recon["f0_error_cents"] == pytest.approx(0.0, abs=1e-6)
    # The failed conversion B -> A (it sounds like B) is replaced by A's own recording of k1.
    assert rows[("B", "k1", "A")]["closer_to_target"] is True
    assert result["overall"]["count"] == 3 and result["overall"]["closer_to_target"] == 1.0


def test_score_real_without_any_reference_is_an_error(scored_setup):
    corpus, out = scored_setup
    rows = [json.loads(line) for line in (out / "conversions.jsonl").read_text().splitlines()]
    write_jsonl_atomic(out / "conversions.jsonl", [r for r in rows if r["utterance"] == "k3"])  # B never said k3
    with pytest.raises(SpeechVQError, match="--real: none of the 1 listed"):
        score(corpus, out, real=True)
    result, _ = score(corpus, out)
    assert result["real"] is False and result["overall"]["count"] == 1


def test_a_row_whose_source_cannot_be_read_has_every_metric_null(scored_setup):
    corpus, out = scored_setup
    rows = [json.loads(line) for line in (out / "conversions.jsonl").read_text().splitlines()]
    rows[0]["source"] = str(corpus / "A" / "moved" / "k1.wav")  # found by key in the corpus, but unreadable
    write_jsonl_atomic(out / "conversions.jsonl", rows)
    result, failures = score(corpus, out)
    assert [Path(path).name for path, _ in failures] == ["A_k1_to_B.wav"]
    failed = result["conversions"][0]
    assert failed["error"] and failed["reference"] is not None  # the output itself could be embedded
    assert all(failed[key] is None for key in METRICS)
    assert all(r[key] is not None for r in result["conversions"][1:] for key in ("target_similarity", "flatness_ratio"))
