"""End to end from the command line with a micro VQ-VAE trained inside the test:
encode, decode, reconstruct, convert, the Python API, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import speechvq
from speechvq.cli import main
from speechvq.config import compose
from speechvq.data.codes import CodesCorpus
from speechvq.data.dataset import PreparedCorpus
from speechvq.training.vqvae import train
from vqvae_testutils import micro_overrides, write_prepared_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro")
    prepared = write_prepared_corpus(root)
    train(compose("train", micro_overrides(root / "run", prepared)))
    return root / "run", prepared, root / "src"


def _read(path):
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000 and data.ndim == 1
    return data


def test_convert_cli_writes_named_outputs_and_conversions_jsonl(trained, tmp_path):
    run, _, src = trained
    inputs = [src / "alice" / "u0.wav", src / "alice" / "u1.wav"]
    rc = main(["convert", str(run), *map(str, inputs), "--speaker", "bob", "--out", str(tmp_path / "out"),
               "--batch", "2", "--quiet", "--threads", "1"])
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "conversions.jsonl").read_text().splitlines()]
    assert sorted(r["utterance"] for r in rows) == ["u0", "u1"]
    for row in rows:
        assert row["source_speaker"] == "alice" and row["target_speaker"] == "bob"
        out = _read(row["output"])
        n = sf.info(row["source"]).frames
        assert out.shape[0] == -(-n // 64) * 64 and np.isfinite(out).all()
    assert {p.name for p in (tmp_path / "out").glob("*.wav")} == {"alice_u0_to_bob.wav", "alice_u1_to_bob.wav"}


def test_same_seed_same_audio_and_speakers_differ(trained, tmp_path):
    run, _, src = trained
    wav = src / "alice" / "u2.wav"
    for name, extra in (("a", []), ("b", []), ("c", ["--seed", "1"])):
        assert main(["reconstruct", str(run), str(wav), "--out", str(tmp_path / name), "--quiet", *extra]) == 0
    a, b, c = (_read(tmp_path / n / "alice_u2_to_alice.wav") for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    model = speechvq.load(run, device="cpu")
    codes = model.encode(sf.read(str(wav), dtype="float32")[0])
    alice = model.decode(codes, "alice", argmax=True)
    bob = model.decode(codes, "bob", argmax=True)
    assert alice.shape == bob.shape == (codes.shape[0] * 64,)
    assert not np.array_equal(alice, bob)


def test_unknown_speaker_is_refused_with_the_known_list(trained, tmp_path, capsys):
    run, _, src = trained
    rc = main(["convert", str(run), str(src / "alice" / "u0.wav"), "--speaker", "carol", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown speaker 'carol'" in err and "alice, bob" in err
    assert not list(tmp_path.glob("*.wav"))


def test_corrupt_input_is_listed_and_the_rest_converted(trained, tmp_path, capsys):
    run, _, src = trained
    bad = tmp_path / "alice" / "broken.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF....not audio")
    rc = main(["convert", str(run), str(bad), str(src / "alice" / "u0.wav"), "--speaker", "bob",
               "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 1
    assert "broken.wav" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").glob("*.wav")] == ["alice_u0_to_bob.wav"]


def test_encode_files_then_decode_matches_api(trained, tmp_path):
    run, _, src = trained
    wav = src / "bob" / "u3.wav"
    assert main(["encode", str(run), str(wav), "--out", str(tmp_path / "codes"), "--quiet"]) == 0
    codes = np.load(tmp_path / "codes" / "u3.npy")
    model = speechvq.load(run, device="cpu")
    np.testing.assert_array_equal(codes, model.encode(sf.read(str(wav), dtype="float32")[0]))
    assert main(["decode", str(run), str(tmp_path / "codes" / "u3.npy"), "--speaker", "alice", "--argmax",
                 "--out", str(tmp_path / "dec"), "--quiet"]) == 0
    decoded = _read(tmp_path / "dec" / "u3_to_alice.wav")
    expected = model.decode(codes, "alice", argmax=True)
    assert decoded.shape == expected.shape == (64 * codes.shape[0],)
    np.testing.assert_allclose(decoded, expected, atol=1.0 / 32768 + 1e-6)
    assert model.decode_batch([], []) == []


def test_encode_corpus_writes_every_utterance_with_split(trained, tmp_path):
    run, prepared, _ = trained
    assert main(["encode", str(run), "--data", str(prepared), "--out", str(tmp_path / "codes"), "--quiet"]) == 0
    codes = CodesCorpus(tmp_path / "codes")
    corpus = PreparedCorpus(prepared)
    expected = {(u.id, u.speaker, u.split, -(-u.num_samples // 64)) for u in corpus.utterances()}
    assert {(e.id, e.speaker, e.split, e.num_codes) for e in codes.entries()} == expected
    assert codes.speakers == ["alice", "bob"]
    model = speechvq.load(run, device="cpu")
    entry = codes.entries("test")[0]
    utt = next(u for u in corpus.utterances() if u.id == entry.id)
    np.testing.assert_array_equal(codes.codes(entry), model.encode(corpus.audio(utt)))
