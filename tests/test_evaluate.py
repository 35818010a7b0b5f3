"""Stage two end to end: train-prior on tiny synthetic codes, evaluate's likelihood report, sample."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from speechvq.analysis.likelihood import combine, evaluate_likelihood
from speechvq.audio import num_frames
from speechvq.checkpoint import load_checkpoint, save_checkpoint
from speechvq.cli import main
from speechvq.config import compose
from speechvq.data.codes import CodesCorpus, write_corpus_codes
from speechvq.data.dataset import PreparedCorpus
from speechvq.models.builders import build_vqvae
from speechvq.models.loading import load_prior
from speechvq.models.prior import Prior, unigram_entropy_bits
from vqvae_testutils import MICRO_MODEL, write_prepared_corpus

SPEAKERS = ["alice", "bob"]



@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared_corpus(tmp_path_factory.mktemp("corpus"), speakers=tuple(SPEAKERS))


@pytest.fixture(scope="module")
def vqvae_ckpt(tmp_path_factory):
    """An untrained micro VQ-VAE with the paper's K = 512 codes, saved as a checkpoint."""
    cfg = compose("train", ["run_dir=r", "data.prepared=p", *MICRO_MODEL, "model.num_codes=512"])
    torch.manual_seed(0)
    model = build_vqvae(cfg.model, num_speakers=len(SPEAKERS))
    path = tmp_path_factory.mktemp("vqvae") / "vqvae.pt"
    save_checkpoint(path, {"kind": "vqvae", "model": model.state_dict(), "speakers": SPEAKERS, "step": 0,
                           "config": {"model": OmegaConf.to_container(cfg.model, resolve=True)}})
    return path


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory):
    """Counting sequences (code t+1 = code t + 1, modulo 8 codes per speaker): context makes them predictable."""
    rng = np.random.default_rng(0)
    items = []
    for s, speaker in enumerate(SPEAKERS):
        for u in range(8):
            split = "train" if u < 6 else ("valid" if u == 6 else "test")
            codes = (rng.integers(0, 8) + np.arange(96)) % 8 + 8 * s
            items.append(({"id": f"{speaker}_u{u}", "speaker": speaker, "split": split}, codes))
    out = tmp_path_factory.mktemp("codes") / "codes"
    write_corpus_codes(out, items, {"num_codes": 512, "speakers": SPEAKERS})
    return out


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory, codes_dir):
    run_dir = tmp_path_factory.mktemp("prior") / "run"
    rc = main(["train-prior", f"run_dir={run_dir}", f"codes={codes_dir}", "prior=tiny", "trainer=debug",
               "trainer.threads=1", "trainer.max_steps=40", "trainer.lr=1e-2", "trainer.decay=constant",
               "trainer.valid_every=20", "trainer.checkpoint_every=20", "trainer.log_every=20",
               "data.crop_codes=32", "data.batch_size=4"])
    assert rc == 0
    return run_dir


def test_totals_add_up_from_their_parts():
    report = combine(decoder_bits=3000.0, num_samples=1000, prior_bits=80.0, num_codes=16, codebook_size=512,
                     num_utterances=2, unigram_bits_per_code=6.0, prior="p")
    assert report.decoder_bits_per_sample == pytest.approx(3.0)
    assert report.prior_bits_per_code == pytest.approx(5.0)
    assert report.total_bits_per_sample == pytest.approx(3.0 + 5.0 / 64)
    assert report.bitrate_bits_per_second == pytest.approx(5.0 * 250)
    assert report.raw_bitrate_bits_per_second == 2250.0


def test_uniform_and_untrained_priors_cost_9_bits_per_code(prepared, vqvae_ckpt):
    from speechvq.models.loading import load_vqvae

    model, speakers, _ = load_vqvae(vqvae_ckpt)
    corpus = PreparedCorpus(prepared)
    test = corpus.utterances("test")
    uniform = evaluate_likelihood(model, speakers, corpus, progress=False)
    assert uniform.num_utterances == len(test) > 0
    assert uniform.num_samples == sum(u.num_samples for u in test)
    assert uniform.num_codes == sum(num_frames(u.num_samples) for u in test)
    assert uniform.prior_bits_per_code == 9.0 and uniform.unigram_bits_per_code is None
    assert uniform.bitrate_bits_per_second == 2250.0
    assert uniform.total_bits_per_sample == pytest.approx(uniform.decoder_bits_per_sample + 9.0 / 64)
    assert 0 < uniform.decoder_bits_per_sample < 16
    # an untrained zero-logit prior is the uniform prior, also when scored in windows of max_len codes
    untrained = Prior(num_codes=512, dim=16, layers=1, heads=2, max_len=10, num_speakers=2)
    report = evaluate_likelihood(model, speakers, corpus, prior=untrained, prior_speakers=["bob"],
                                 code_counts=np.array([1, 1, 2, 0]), progress=False)
    assert report.prior_bits_per_code == pytest.approx(9.0, abs=1e-5)
    assert report.decoder_bits_per_sample == pytest.approx(uniform.decoder_bits_per_sample, rel=1e-6)
    assert report.unigram_bits_per_code == pytest.approx(1.5)


def test_train_prior_writes_prior_checkpoints_that_beat_the_unigram_entropy(prior_run, codes_dir):
    assert (prior_run / "config.yaml").is_file() and (prior_run / "tb").is_dir()
    payload = load_checkpoint(prior_run, kind="prior")
    assert payload["path"].endswith("best.pt") and payload["step"] in (20, 40)
    corpus = CodesCorpus(codes_dir)
    expected = np.bincount(np.concatenate([corpus.codes(e) for e in corpus.entries("train")]), minlength=512)
    assert torch.equal(payload["code_counts"], torch.from_numpy(expected))
    assert payload["speakers"] == SPEAKERS and payload["num_codes"] == 512
    last = load_checkpoint(prior_run / "checkpoints" / "last.pt", kind="prior")
    assert last["step"] == 40
    assert last["valid"]["unigram_bits_per_code"] == pytest.approx(unigram_entropy_bits(expected))
    assert last["valid"]["bits_per_code"] < last["valid"]["unigram_bits_per_code"]
    prior, _ = load_prior(prior_run)
    assert not prior.training and prior.num_speakers == 2


def test_train_prior_requires_codes_and_run_dir(tmp_path, capsys):
    assert main(["train-prior", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "codes" in capsys.readouterr().err
    assert main(["train-prior", f"run_dir={tmp_path / 'run'}", f"codes={tmp_path / 'missing'}"]) == 2
    assert "not a codes directory" in capsys.readouterr().err


def test_evaluate_cli_reports_prior_bits_bitrate_and_totals(prepared, vqvae_ckpt, prior_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(vqvae_ckpt), "--prior", str(prior_run), "--data", str(prepared),
                 "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    counts = load_checkpoint(prior_run, kind="prior")["code_counts"]
    assert result["unigram_bits_per_code"] == pytest.approx(unigram_entropy_bits(counts))
    assert result["bitrate_bits_per_second"] == pytest.approx(result["prior_bits_per_code"] * 250)
    assert result["total_bits_per_sample"] == pytest.approx(
        result["decoder_bits_per_sample"] + result["prior_bits_per_code"] / 64)
    assert result["raw_bitrate_bits_per_second"] == 2250.0
    assert result["num_codes"] == sum(num_frames(u.num_samples) for u in PreparedCorpus(prepared).utterances("test"))
    assert math.isfinite(result["prior_bits_per_code"]) and result["prior_bits_per_code"] != 9.0

    assert main(["evaluate", str(vqvae_ckpt), "--data", str(prepared), "--json", str(out), "--quiet"]) == 0
    uniform = json.loads(out.read_text())
    assert uniform["prior_bits_per_code"] == 9.0 and uniform["unigram_bits_per_code"] is None
    assert uniform["decoder_bits_per_sample"] == pytest.approx(result["decoder_bits_per_sample"], rel=1e-6)


@pytest.mark.parametrize("seconds,codes", [(0.02, 5), (8.06, 2015), (16.1, 4025), (0.001, 1), (0.004, 1)])
def test_sample_length_is_ceil_of_seconds_times_250_without_float_noise(seconds, codes):
    from speechvq.cli.sample import codes_for_seconds

    assert codes_for_seconds(seconds) == codes


def test_sample_cli_writes_reproducible_wavs_and_refuses_unknown_speakers(vqvae_ckpt, prior_run, tmp_path, capsys):
    def sample(out, *extra):
        return main(["sample", str(vqvae_ckpt), str(prior_run), "--speaker", "bob", "--seconds", "0.02",
                     "--out", str(out), "--device", "cpu", "--quiet", *extra])

    assert sample(tmp_path / "a.wav", "--num", "2", "--seed", "3", "--top-k", "5") == 0
    assert sample(tmp_path / "b.wav", "--num", "2", "--seed", "3", "--top-k", "5") == 0
    for i in range(2):
        a, sr = sf.read(tmp_path / f"a_{i}.wav")
        b, _ = sf.read(tmp_path / f"b_{i}.wav")
        assert sr == 16000 and a.shape == (5 * 64,)
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert main(["sample", str(vqvae_ckpt), str(prior_run), "--speaker", "carol", "--seconds", "1",
                 "--out", str(tmp_path / "c.wav")]) == 2
    err = capsys.readouterr().err
    assert "carol" in err and "alice" in err and "bob" in err
    assert not (tmp_path / "c.wav").exists()
