"""The posterior-collapse check: a decoder that ignores its codes shows no gap; JSON keys of the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from speechvq.analysis.diagnose import diagnose, pair_utterances
from speechvq.checkpoint import save_checkpoint
from speechvq.cli import main as cli_main
from speechvq.config import compose
from speechvq.data.dataset import PreparedCorpus
from speechvq.models.builders import build_vqvae
from vqvae_testutils import MICRO_MODEL, write_prepared_corpus

KEYS = {"perplexity", "used_codes", "dead_codes", "nll_true_bits_per_sample", "nll_other_bits_per_sample",
        "collapse_gap_bits_per_sample", "num_utterances", "num_samples"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return PreparedCorpus(write_prepared_corpus(tmp_path_factory.mktemp("corpus")))


def _model(corpus, seed: int = 0):
    """A micro VQ-VAE whose 8 codes are encoder outputs of the corpus, so utterances get different codes."""
    torch.manual_seed(seed)
    cfg = compose("train", ["run_dir=R", "data.prepared=P", *MICRO_MODEL, "model.num_codes=8"])
    model = build_vqvae(cfg.model, num_speakers=2).eval()
    with torch.no_grad():
        wav = torch.stack([torch.from_numpy(corpus.audio(u, 0, 2048)) for u in corpus.utterances("train")[:4]])
        frames = model.encode_continuous(wav).transpose(1, 2).reshape(-1, model.quantizer.dim)
        model.quantizer.codebook.copy_(frames[torch.linspace(0, len(frames) - 1, 8).long()])
        # make the decoder sensitive to the (small) differences between code vectors, with confident outputs
        model.decoder.cond_in.weight.mul_(1.0 / (model.quantizer.codebook - model.quantizer.codebook.mean(0)).std())
        model.decoder.wavenet.head[-1].weight.mul_(20.0)
    return model, cfg


def test_decoder_ignoring_codes_shows_no_gap(corpus):
    model, _ = _model(corpus)
    normal = diagnose(model, ["alice", "bob"], corpus, split="test", progress=False)
    assert KEYS <= set(normal)
    # an untrained decoder reads its codes only weakly, but measurably
    assert abs(normal["collapse_gap_bits_per_sample"]) > 1e-6
    with torch.no_grad():  # the local conditioning no longer depends on the codes
        model.decoder.cond_in.weight.zero_()
    collapsed = diagnose(model, ["alice", "bob"], corpus, split="test", progress=False)
    assert collapsed["collapse_gap_bits_per_sample"] == 0.0
    assert collapsed["nll_true_bits_per_sample"] > 0


def test_pairs_prefer_the_same_speaker(corpus):
    utterances = corpus.utterances("train")
    pairs = pair_utterances(utterances)
    assert len(pairs) == len(utterances)
    assert all(a.id != b.id and a.speaker == b.speaker for a, b in pairs)


def test_cli_writes_the_json_keys(corpus, tmp_path, capsys):
    model, cfg = _model(corpus)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"kind": "vqvae", "model": model.state_dict(), "speakers": ["alice", "bob"], "step": 0,
                           "config": OmegaConf.to_container(cfg, resolve=True)})
    out = tmp_path / "diag.json"
    assert cli_main(["diagnose", str(ckpt), "--data", str(corpus.root), "--json", str(out), "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    assert KEYS <= set(result)
    assert result["used_codes"] + result["dead_codes"] == 8
    assert result["collapse_gap_bits_per_sample"] == pytest.approx(
        result["nll_other_bits_per_sample"] - result["nll_true_bits_per_sample"])
    capsys.readouterr()
    assert cli_main(["diagnose", str(ckpt), "--data", str(tmp_path / "missing"), "--json", str(out)]) == 2
    assert "not a prepared corpus" in capsys.readouterr().err
