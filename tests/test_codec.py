"""The .svq codec: exact round trips, the rate against -log2 p, refusals, and compress/decompress end to end."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import speechvq
from speechvq.checkpoint import save_checkpoint
from speechvq.cli import main
from speechvq.config import compose
from speechvq.errors import SpeechVQError
from speechvq.inference.codec import (
    CodingPrior,
    compress_codes,
    decompress_codes,
    read_header,
    units_hash,
    weights_hash,
)
from speechvq.models.builders import build_prior
from speechvq.models.prior import Prior
from speechvq.training.vqvae import train
from vqvae_testutils import micro_overrides, write_prepared_corpus

K = 64
UNITS = "0123456789abcdef"


def tiny_prior(seed: int = 0, num_speakers: int = 3, max_len: int = 512) -> Prior:
    """A random 2-layer prior made far from uniform (3 to 4 bits per code) by a large random
    output bias and output weights that let the context matter."""
    torch.manual_seed(seed)
    prior = Prior(num_codes=K, dim=16, layers=2, heads=2, max_len=max_len, num_speakers=num_speakers,
                  zero_init_output=False).eval()
    with torch.no_grad():
        prior.head.bias.copy_(2.0 * torch.randn(K))
        prior.head.weight.mul_(5.0)
    return prior


@pytest.fixture(scope="module")
def coding():
    return CodingPrior(tiny_prior(), ["a", "b", "c"])


def random_codes(rng: np.random.Generator, prior: Prior, length: int, kind: str, speaker: int) -> np.ndarray:
    if kind == "uniform":  # codes the prior finds unlikely, too
        return rng.integers(0, K, length)
    if kind == "constant":
        return np.full(length, int(rng.integers(0, K)))
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    spk = None if prior.num_speakers == 0 else torch.tensor([speaker])
    return prior.sample(1, length, spk, generator=generator)[0].numpy()


@pytest.mark.parametrize("speaker", [-1, 1])
def test_step_logits_are_the_teacher_forced_logits(speaker):
    prior = tiny_prior()
    codes = np.random.default_rng(0).integers(0, K, 30)
    with torch.no_grad():
        forced = prior(torch.as_tensor(codes)[None], torch.tensor([speaker]))[0]
    stream = prior.step_logits(len(codes), speaker)
    stepped = [next(stream)] + [stream.send(int(c)) for c in codes[:-1]]
    torch.testing.assert_close(torch.stack(stepped), forced, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("length", [1, 2, 37, 300])
@pytest.mark.parametrize("speaker", [-1, 2])
def test_round_trip_is_exact(coding, seed, length, speaker):
    rng = np.random.default_rng(seed * 1000 + length)
    for kind in ("uniform", "prior", "constant"):
        codes = random_codes(rng, tiny_prior(), length, kind, speaker)
        data = compress_codes(coding, codes, units_hash=UNITS, speaker=speaker, speaker_name="b",
                              num_samples=64 * length - 5)
        decoded, header = decompress_codes(coding, data, units_hash=UNITS, name="x.svq")
        np.testing.assert_array_equal(decoded, codes)
        assert decoded.dtype == np.int64
        assert (header.num_codes, header.num_samples, header.prior_speaker, header.speaker) == \
            (length, 64 * length - 5, speaker, "b")


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_without_speaker_conditioning_and_across_max_len_segments(seed):
    prior = tiny_prior(seed, num_speakers=0, max_len=16)
    rng = np.random.default_rng(seed)
    for length in (1, 16, 17, 50):
        codes = rng.integers(0, K, length)
        data = compress_codes(prior, codes, units_hash=UNITS)
        decoded, header = decompress_codes(prior, data, units_hash=UNITS)
        np.testing.assert_array_equal(decoded, codes)
        assert header.prior_speaker == -1 and header.speaker == "" and header.num_samples == 0


def test_the_speaker_row_conditions_the_coding(coding):
    codes = np.random.default_rng(0).integers(0, K, 100)
    payloads = {row: read_header(compress_codes(coding, codes, units_hash=UNITS, speaker=row))[1]
                for row in (-1, 0, 2)}
    assert len(set(payloads.values())) == 3
    with pytest.raises(ValueError, match="speaker row 3"):
        compress_codes(coding, codes, units_hash=UNITS, speaker=3)


@pytest.mark.parametrize("seed", range(3))
def test_file_size_is_within_2_percent_of_the_ideal_code_length_plus_header(seed):
    prior = tiny_prior(seed)
    codes = random_codes(np.random.default_rng(seed), prior, 400, "prior", speaker=1)
    data = compress_codes(prior, codes, units_hash=UNITS, speaker=1, speaker_name="b")
    with torch.no_grad():
        ideal = float(prior.nll_bits(torch.as_tensor(codes)[None], torch.tensor([1])).sum())
    assert ideal < 0.75 * 400 * np.log2(K)  # a prior far from uniform
    header_bits = 8 * (len(data) - len(read_header(data)[1]))
    assert header_bits <= 8 * 40
    slack = 32  # the last 32-bit word of the range coder, partly filled
    assert 0.98 * ideal - slack <= 8 * len(data) - header_bits <= 1.02 * ideal + slack


def test_files_of_other_weights_are_refused_naming_both_hashes(coding):
    data = compress_codes(coding, np.arange(20) % K, units_hash=UNITS)
    other = CodingPrior(tiny_prior(seed=1), ["a", "b", "c"])
    assert other.hash != coding.hash
    with pytest.raises(SpeechVQError, match=f"x.svq: made with prior {coding.hash}, but this prior is {other.hash}"):
        decompress_codes(other, data, units_hash=UNITS, name="x.svq")
    with pytest.raises(SpeechVQError, match=f"x.svq: made with VQ-VAE units {UNITS}, but .* are fedcba9876543210"):
        decompress_codes(coding, data, units_hash="fedcba9876543210", name="x.svq")


def test_every_single_byte_corruption_and_every_truncation_is_refused(coding):
    data = compress_codes(coding, np.random.default_rng(0).integers(0, K, 60), units_hash=UNITS, speaker_name="b")
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x10
        with pytest.raises(SpeechVQError, match=r"^x\.svq: (not a \.svq file|\.svq format version|corrupt)"):
            decompress_codes(coding, bytes(corrupt), units_hash=UNITS, name="x.svq")
    for n in range(len(data)):
        with pytest.raises(SpeechVQError, match=r"^x\.svq: (not a \.svq file|truncated|corrupt)"):
            decompress_codes(coding, data[:n], units_hash=UNITS, name="x.svq")


def test_bad_magic_and_future_versions_are_refused(coding):
    data = compress_codes(coding, np.arange(5), units_hash=UNITS)
    with pytest.raises(SpeechVQError, match=r"^x\.svq: not a \.svq file \(bad magic bytes\)$"):
        read_header(b"RIFF" + data[4:], "x.svq")
    future = data[:4] + bytes([2]) + data[5:]
    with pytest.raises(SpeechVQError, match=r"^x\.svq: \.svq format version 2; this speechvq reads version 1$"):
        read_header(future, "x.svq")


def test_a_decoding_that_diverges_is_refused_by_the_codes_checksum(coding):
    data = compress_codes(coding, np.random.default_rng(1).integers(0, K, 80), units_hash=UNITS)
    drifted = copy.deepcopy(coding)  # same hash, slightly different probabilities: another machine's rounding
    with torch.no_grad():
        drifted.model.head.bias.add_(0.5 * torch.randn(K, dtype=torch.float64))
    with pytest.raises(SpeechVQError, match="x.svq: the decoded codes fail their checksum"):
        decompress_codes(drifted, data, units_hash=UNITS, name="x.svq")


DECODE_ELSEWHERE = """
import sys
from pathlib import Path
import numpy as np, torch
from speechvq.inference.codec import decompress_codes
from speechvq.models.prior import Prior
root = Path(sys.argv[1])
prior = Prior(num_codes=64, dim=16, layers=2, heads=2, max_len=2048, num_speakers=3, zero_init_output=False)
prior.load_state_dict(torch.load(root / "prior.pt"))
codes, _ = decompress_codes(prior.eval(), (root / "x.svq").read_bytes(), units_hash="0123456789abcdef")
sys.exit(0 if np.array_equal(codes, np.load(root / "codes.npy")) else 1)
"""


def test_decoding_with_other_cpu_kernels_is_still_exact(tmp_path):
    """Another process with torch's scalar kernels and MKL's compatible code path (another machine's
    last-ulp rounding: on an AVX2/AVX-512 machine the float64 logits differ in their last bits)."""
    prior = tiny_prior(max_len=2048)
    torch.save(prior.state_dict(), tmp_path / "prior.pt")
    codes = random_codes(np.random.default_rng(5), prior, 1000, "prior", speaker=1)
    np.save(tmp_path / "codes.npy", codes)
    (tmp_path / "x.svq").write_bytes(compress_codes(prior, codes, units_hash=UNITS, speaker=1))
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
    proc = subprocess.run([sys.executable, "-c", DECODE_ELSEWHERE, str(tmp_path)], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_weights_hash_follows_the_weights():
    a, b = tiny_prior(0), tiny_prior(0)
    assert weights_hash(a) == weights_hash(b) and len(weights_hash(a)) == 16
    with torch.no_grad():
        b.head.bias[3] += 1e-6
    assert weights_hash(a) != weights_hash(b)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A micro VQ-VAE (K = 32, speakers alice and bob) and two random priors over its codes."""
    root = tmp_path_factory.mktemp("micro")
    prepared = write_prepared_corpus(root)
    train(compose("train", micro_overrides(root / "run", prepared)))
    cfg = OmegaConf.to_container(compose("train_prior", ["run_dir=r", "codes=c", "prior=tiny", "prior.dim=16",
                                                         "prior.heads=2", "prior.zero_init_output=false"]).prior)
    priors = []
    for seed in range(2):
        torch.manual_seed(seed)
        prior = build_prior(cfg, num_codes=32, num_speakers=2)
        path = root / f"prior{seed}.pt"
        save_checkpoint(path, {"kind": "prior", "model": prior.state_dict(), "speakers": ["alice", "bob"],
                               "num_codes": 32, "config": {"prior": cfg}, "step": 0})
        priors.append(path)
    return root / "run", root / "src", priors


def test_units_hash_covers_encoder_and_codebook_not_the_decoder(trained):
    model = speechvq.load(trained[0], device="cpu")
    vqvae = copy.deepcopy(model.vqvae)
    with torch.no_grad():
        next(vqvae.decoder.parameters()).add_(1.0)
    assert units_hash(vqvae) == model.units_hash
    with torch.no_grad():
        next(vqvae.encoder.parameters()).add_(1.0)
    assert units_hash(vqvae) != model.units_hash


def test_compress_then_decompress_cli_gives_the_encoded_codes_and_the_original_length(trained, tmp_path, capsys):
    run, src, (prior, other_prior) = trained
    common = ["--device", "cpu", "--quiet", "--threads", "1"]
    assert main(["encode", str(run), str(src / "alice"), "--out", str(tmp_path / "codes"), *common]) == 0
    assert main(["compress", str(run), str(prior), str(src / "alice"), "--out", str(tmp_path / "svq"), *common]) == 0
    out = capsys.readouterr().out
    assert out.count("bits/s") == 7 and "mean" in out
    files = sorted((tmp_path / "svq").glob("*.svq"))
    assert [f.stem for f in files] == [f"u{i}" for i in range(6)]
    model = speechvq.load(run, device="cpu")
    coding = CodingPrior.from_checkpoint(prior)
    for f in files:
        codes, header = decompress_codes(coding, f.read_bytes(), units_hash=model.units_hash, name=str(f))
        np.testing.assert_array_equal(codes, np.load(tmp_path / "codes" / f"{f.stem}.npy"))
        assert header.speaker == "alice" and header.prior_speaker == 0
        assert header.num_samples == sf.info(str(src / "alice" / f"{f.stem}.wav")).frames

    broken = tmp_path / "more" / "broken.svq"
    broken.parent.mkdir()
    broken.write_bytes(files[0].read_bytes()[:-3])
    assert main(["decompress", str(run), str(prior), str(tmp_path / "svq"), str(broken), "--out",
                 str(tmp_path / "wav"), "--argmax", *common]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: corrupt or truncated .svq file" in err and err.count("\n") == 1
    for f in files:
        wav, sr = sf.read(str(tmp_path / "wav" / f"{f.stem}.wav"), dtype="float32")
        assert sr == 16000 and wav.shape[0] == sf.info(str(src / "alice" / f"{f.stem}.wav")).frames
        assert np.isfinite(wav).all() and np.abs(wav).max() > 0
    assert not (tmp_path / "wav" / "broken.wav").exists()

    assert main(["decompress", str(run), str(other_prior), str(files[0]), "--out", str(tmp_path / "x"), *common]) == 1
    other_hash = CodingPrior.from_checkpoint(other_prior).hash
    assert f"made with prior {coding.hash}, but this prior is {other_hash}" in capsys.readouterr().err
    assert main(["decompress", str(run), str(prior), str(files[0]), "--speaker", "carol", "--out",
                 str(tmp_path / "x"), *common]) == 2
    assert "unknown speaker 'carol'" in capsys.readouterr().err


def test_python_api_round_trip_in_another_voice(trained):
    run, src, (prior, _) = trained
    model = speechvq.load(run, device="cpu")
    coding = CodingPrior.from_checkpoint(prior)
    wav = sf.read(str(src / "bob" / "u2.wav"), dtype="float32")[0]
    data = model.compress(wav, coding, speaker="bob")
    codes, voice, num_samples = model.read_compressed(data, coding)
    np.testing.assert_array_equal(codes, model.encode(wav))
    assert (voice, num_samples) == ("bob", wav.shape[0])
    as_bob = model.decompress(data, coding, argmax=True)
    as_alice = model.decompress(data, coding, speaker="alice", argmax=True)
    assert as_bob.shape == as_alice.shape == wav.shape and not np.array_equal(as_bob, as_alice)
    with pytest.raises(SpeechVQError, match="no speaker stored"):
        model.decompress(model.compress(wav, coding), coding)


def test_compress_refuses_a_prior_over_other_codes_and_unknown_speakers_and_skips_bad_audio(trained, tmp_path,
                                                                                          capsys):
    run, src, (prior, _) = trained
    wrong = tmp_path / "prior64.pt"
    save_checkpoint(wrong, {"kind": "prior", "model": tiny_prior(num_speakers=0).state_dict(), "speakers": [],
                            "num_codes": K, "step": 0,
                            "config": {"prior": {"dim": 16, "layers": 2, "heads": 2, "max_len": 512}}})
    wav = str(src / "alice" / "u0.wav")
    assert main(["compress", str(run), str(wrong), wav, "--out", str(tmp_path / "a"), "--device", "cpu"]) == 2
    assert f"{wrong}: prior over {K} codes, but the VQ-VAE has 32" in capsys.readouterr().err
    assert main(["compress", str(run), str(prior), wav, "--source-speaker", "carol", "--out", str(tmp_path / "b"),
                 "--device", "cpu"]) == 2
    assert "unknown speaker 'carol'" in capsys.readouterr().err
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....not audio")
    assert main(["compress", str(run), str(prior), wav, str(bad), "--out", str(tmp_path / "c"), "--device", "cpu",
                 "--quiet"]) == 1
    assert "broken.wav" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["u0.svq"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
