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
    assert set(result) == {"conversions", "pairs", "overall"}
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    for r in rows.values():
        assert {"target_similarity", "source_similarity", "closer_to_target", "mcd_db", "code_agreement",
                "source", "output", "source_speaker", "target_speaker", "utterance"} <= set(r)
    good, missing, failed, recon = rows["A_k1_to_B"], rows["A_k3_to_B"], rows["B_k1_to_A"], rows["A_k2_to_A"]
    # Reference lookup by utterance key in the target speaker's folder.
    assert Path(good["reference"]) == corpus / "B" / "k1.wav" and good["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert missing["reference"] is None and missing["mcd_db"] is None
    assert Path(recon["reference"]) == corpus / "A" / "k2.wav" and recon["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert failed["mcd_db"] > 1.0  # B's voice against A's recording of k1
    # Speaker similarity: the conversion to B sounds like B, the failed one too.
    assert good["closer_to_target"] is True and good["target_similarity"] > good["source_similarity"]
    assert failed["closer_to_target"] is False
    assert recon["closer_to_target"] is None and recon["target_similarity"] == recon["source_similarity"]
    assert recon["code_agreement"] == 1.0 and 0.0 <= good["code_agreement"] <= 1.0
    # Pair and overall aggregation.
    pairs = result["pairs"]
    assert set(pairs) == {"A->B", "B->A", "A->A"}
    assert pairs["A->B"]["count"] == 2 and pairs["A->B"]["closer_to_target"] == 1.0
    assert pairs["A->B"]["mcd_count"] == 1 and pairs["A->B"]["mcd_db"] == pytest.approx(good["mcd_db"])
    assert pairs["B->A"]["closer_to_target"] == 0.0
    assert pairs["A->A"]["closer_to_target"] is None
    overall = result["overall"]
    assert overall["count"] == 4 and overall["closer_to_target"] == pytest.approx(2 / 3)
    assert overall["mcd_count"] == 3
    assert overall["mcd_db"] == pytest.approx(np.mean([good["mcd_db"], failed["mcd_db"], recon["mcd_db"]]))
    summary = format_summary(result)
    assert "A->B" in summary and "overall" in summary


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


def test_score_cli_writes_json_and_lists_failed_outputs(scored_setup, tmp_path, capsys):
    corpus, out = scored_setup
    (out / "B_k1_to_A.wav").unlink()  # a missing output: listed, the rest scored, exit status 1
    json_path = tmp_path / "score.json"
    assert main(["score", str(out), "--references", str(corpus), "--json", str(json_path), "--f0", "dio",
                 "--quiet", "--threads", "1"]) == 1
    captured = capsys.readouterr()
    assert "B_k1_to_A.wav" in captured.err and "overall" in captured.out
    result = json.loads(json_path.read_text())
    assert set(result) == {"conversions", "pairs", "overall"} and result["overall"]["count"] == 4
    rows = {Path(r["output"]).stem: r for r in result["conversions"]}
    assert rows["B_k1_to_A"]["error"] and rows["B_k1_to_A"]["target_similarity"] is None
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
