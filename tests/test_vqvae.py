"""The assembled VQ-VAE: shapes, encode/quantized consistency, and overfitting one utterance."""

from __future__ import annotations

import math

import pytest
import torch

from speechvq.config import compose
from speechvq.errors import SpeechVQError
from speechvq.models.builders import build_vqvae

REQUIRED = ["run_dir=RUN", "data.prepared=PREP"]


def _tiny(*overrides: str, speakers: int = 2):
    torch.manual_seed(0)
    return build_vqvae(compose("train", REQUIRED + list(overrides)).model, num_speakers=speakers)


def test_forward_shapes_and_loss():
    model = _tiny().train()
    wav = 0.2 * torch.randn(3, 1000)
    out = model(wav, torch.tensor([0, 1, 0]))
    frames = math.ceil(1000 / 64)
    assert out.nll.shape == (3, 1000) and (out.nll > 0).all()
    assert out.vq.codes.shape == (3, frames) and out.vq.codes.dtype == torch.int64
    assert out.vq.quantized.shape == (3, 64, frames)
    assert torch.allclose(out.loss, out.nll.mean() + out.vq.loss)
    assert model.hop_length == 64 and model.num_codes == 512


def test_encode_is_side_effect_free_and_matches_quantized():
    model = _tiny().train()
    wav = 0.2 * torch.randn(2, 640)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    codes = model.encode(wav)
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert codes.shape == (2, 10)
    model.eval()
    with torch.no_grad():
        out = model(wav, torch.tensor([0, 1]))
    assert torch.equal(out.vq.codes, codes)
    assert torch.allclose(model.quantized(codes), out.vq.quantized)
    assert model.encode_continuous(wav).shape == (2, 64, 10)


def test_voice_shift_changes_what_the_encoder_hears_in_training_only():
    model = _tiny("+model.voice_shift=0.2").train()
    t = torch.arange(4096) / 16000
    wav = (0.5 * torch.sin(2 * math.pi * 150 * t) * torch.sin(2 * math.pi * 3 * t)).repeat(8, 1)
    torch.manual_seed(1)
    heard = model(wav, torch.zeros(8, dtype=torch.int64)).vq.codes
    assert not torch.equal(heard, model.encode(wav))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(wav, torch.zeros(8, dtype=torch.int64)).vq.codes, model.encode(wav))


def test_voice_shift_out_of_range_is_a_config_error():
    with pytest.raises(SpeechVQError, match="config model: voice_shift=0.6"):
        _tiny("+model.voice_shift=0.6")


def test_tiny_model_overfits_one_utterance():
    """NLL of a single (speech-like: chirp with an envelope) utterance at least halves within 120 CPU steps."""
    torch.set_num_threads(1)
    model = _tiny("model.quantizer.restart_after_steps=20", speakers=1).train()
    n = 1024
    t = torch.arange(n) / 16000
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 6 * t)
    wav = (0.5 * envelope * torch.sin(2 * math.pi * (180 * t + 900 * t**2)))[None]
    speaker = torch.zeros(1, dtype=torch.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = model(wav, speaker).nll.mean().item()
    for _ in range(120):
        out = model(wav, speaker)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        last = model(wav, speaker).nll.mean().item()
    assert last < 0.5 * first, (first, last)
