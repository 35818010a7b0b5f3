"""Decoder: causality, speaker conditioning, and the output distributions' likelihoods and samples."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechvq.audio import mulaw_encode
from speechvq.errors import SpeechVQError
from speechvq.models.decoder import Decoder
from speechvq.modules.output import DiscretizedLogisticMixture, MuLawCategorical
from wavenet_testutils import CODE_DIM, HOP, NUM_SPEAKERS, tiny_decoder


def _batch(batch=2, length=22, seed=1):
    g = torch.Generator().manual_seed(seed)
    wav = torch.rand(batch, length, generator=g) * 1.6 - 0.8
    return wav, torch.randn(batch, CODE_DIM, -(-length // HOP), generator=g), torch.arange(batch) % NUM_SPEAKERS


@pytest.mark.parametrize("output,channels", [("mulaw", 256), ("mol", 9)])
def test_forward_shape_for_length_not_multiple_of_hop(output, channels):
    dec = tiny_decoder(output)
    wav, z_q, spk = _batch(length=22)
    with torch.no_grad():
        params = dec(wav, z_q, spk)
        nll = dec.nll(wav, z_q, spk)
    assert params.shape == (2, channels, 22)
    assert nll.shape == (2, 22) and torch.isfinite(nll).all()


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_decoder_is_causal(output):
    dec = tiny_decoder(output)
    wav, z_q, spk = _batch(length=30)
    t = 11
    with torch.no_grad():
        base = dec(wav, z_q, spk)
        wav2 = wav.clone()
        wav2[:, t] = -wav2[:, t]
        moved = dec(wav2, z_q, spk)
    assert torch.equal(base[..., :t + 1], moved[..., :t + 1])  # output t predicts sample t from samples < t
    assert (base[..., t + 1] - moved[..., t + 1]).abs().max() > 1e-4


def test_speaker_changes_the_output():
    dec = tiny_decoder()
    wav, z_q, _ = _batch(batch=1)
    with torch.no_grad():
        a = dec(wav, z_q, torch.tensor([0]))
        b = dec(wav, z_q, torch.tensor([2]))
    assert (a - b).abs().max() > 1e-3


def test_codes_change_the_output():
    dec = tiny_decoder()
    wav, z_q, spk = _batch(batch=1)
    with torch.no_grad():
        a = dec(wav, z_q, spk)
        b = dec(wav, z_q + 1.0, spk)
    assert (a - b).abs().max() > 1e-3


def test_too_few_frames_and_bad_speaker_are_refused():
    dec = tiny_decoder()
    wav, z_q, spk = _batch(length=22)
    with pytest.raises(ValueError):
        dec(wav, z_q[:, :, :-1], spk)
    with pytest.raises(SpeechVQError):
        dec(wav, z_q, torch.tensor([0, 3]))
    with pytest.raises(SpeechVQError):
        Decoder(kernel_size=3)


def test_mulaw_nll_is_cross_entropy_against_mulaw_bins():
    out = MuLawCategorical()
    g = torch.Generator().manual_seed(0)
    params = torch.randn(2, 256, 9, generator=g)
    wav = torch.rand(2, 9, generator=g) * 2 - 1
    expected = F.cross_entropy(params, mulaw_encode(wav), reduction="none")
    torch.testing.assert_close(out.nll(params, wav), expected)
    assert out.encode_input(torch.zeros(1, 1)).item() == 128


def test_mulaw_sampling_temperature_and_argmax():
    out = MuLawCategorical()
    logits = torch.full((4000, 256), -10.0)
    logits[:, 200] = 0.0
    logits[:, 50] = -1.0
    g = torch.Generator().manual_seed(0)
    audio = out.sample(logits, temperature=1.0, generator=g)
    assert audio.shape == (4000,) and audio.abs().max() <= 1.0
    share_top = (mulaw_encode(audio) == 200).float().mean().item()
    assert abs(share_top - 1 / (1 + math.exp(-1.0))) < 0.03  # softmax probability of bin 200
    cold = out.sample(logits, temperature=0.1, generator=g)
    assert (mulaw_encode(cold) == 200).all()
    assert (mulaw_encode(out.sample(logits, argmax=True)) == 200).all()


def test_mixture_samples_in_range_and_nll_finite():
    out = DiscretizedLogisticMixture(mixtures=4)
    g = torch.Generator().manual_seed(0)
    params = torch.randn(500, 12, generator=g) * 3
    samples = out.sample(params, generator=g)
    assert samples.shape == (500,) and samples.abs().max() <= 1.0
    edges = torch.tensor([[-1.0, -0.3, 0.0, 0.999, 1.0]])
    nll = out.nll(torch.randn(1, 12, 5, generator=g), edges)
    assert torch.isfinite(nll).all() and (nll >= 0).all()


def test_mixture_nll_decreases_when_centred_on_target():
    out = DiscretizedLogisticMixture(mixtures=2)
    target = torch.tensor([[0.3]])

    def params(mean, log_scale):
        # logits (equal), means, log-scales: (1, 6, 1)
        return torch.tensor([[[0.0], [0.0], [mean], [mean], [log_scale], [log_scale]]])

    far, near, sharp = out.nll(params(-0.5, -3.0), target), out.nll(params(0.3, -3.0), target), out.nll(
        params(0.3, -6.0), target)
    assert far > near > sharp


def test_mixture_sampling_follows_the_mean_when_sharp():
    out = DiscretizedLogisticMixture(mixtures=2)
    params = torch.tensor([[10.0, -10.0, 0.25, -0.7, -7.0, -7.0]]).repeat(200, 1)
    samples = out.sample(params, generator=torch.Generator().manual_seed(0))
    assert (samples - 0.25).abs().max() < 0.05
    assert out.sample(params[:1], argmax=True).item() == pytest.approx(0.25)


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_output_head_runs_in_float32_under_bf16_autocast(output):
    """bf16 mixture means would step by 2**-8 near ±1, coarser than the smallest scale: the head stays float32."""
    dec = tiny_decoder(output)
    net = dec.wavenet
    skips = torch.randn(2, net.skip_channels, 9, generator=torch.Generator().manual_seed(0)).bfloat16()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            head = net.output_head(skips)
            inner = net.head(skips)  # the plain head under autocast: what the fp32 head prevents
        reference = net.output_head(skips.float())
    assert inner.dtype == torch.bfloat16
    assert head.dtype == torch.float32
    assert torch.equal(head, reference)
    wav = 0.5 * torch.rand(2, 4 * HOP, generator=torch.Generator().manual_seed(1)) - 0.25
    z_q, speaker = torch.randn(2, CODE_DIM, 4), torch.tensor([0, 1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        params = dec(wav, z_q, speaker)
        nll = dec.nll(wav, z_q, speaker)
    assert params.dtype == torch.float32 and params.shape == (2, dec.output.num_params, 4 * HOP)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
