"""Harmonic-plus-noise synthesis (DDSP) and the source-filter decoder's envelope head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechvq.models.source_filter import SourceFilterDecoder
from speechvq.modules.harmonic_noise import HarmonicNoiseHead, filtered_noise, harmonic_synth, stft_filter

HOP, SR = 64, 16000


def _peak_hz(x: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(x.shape[-1])))
    return float(np.argmax(spectrum)) * SR / x.shape[-1]


@pytest.mark.parametrize("f0_hz,k", [(100.0, 1), (125.0, 3), (250.0, 7)])
def test_one_harmonic_sounds_at_k_times_f0_with_its_amplitude(f0_hz, k):
    frames = 100
    amplitudes = torch.zeros(1, 8, frames)
    amplitudes[0, k - 1] = 0.4
    out = harmonic_synth(torch.full((1, frames), f0_hz), amplitudes, HOP, SR)
    assert out.shape == (1, frames * HOP)
    assert _peak_hz(out[0]) == pytest.approx(k * f0_hz, abs=SR / (frames * HOP) + 1)
    assert float(out.abs().max()) == pytest.approx(0.4, rel=0.01)


def test_harmonics_are_silent_when_unvoiced_and_above_nyquist():
    f0 = torch.full((2, 30), 3000.0)
    f0[0, 10:20] = 0.0
    amplitudes = torch.zeros(2, 4, 30)
    amplitudes[:, 2:] = 1.0                               # 9 and 12 kHz: above 8 kHz
    assert torch.all(harmonic_synth(f0, amplitudes, HOP, SR) == 0)
    amplitudes[:, 0] = 1.0                                # 3 kHz sounds, but not in unvoiced frames
    out = harmonic_synth(f0, amplitudes, HOP, SR)
    assert torch.all(out[0, 10 * HOP + HOP: 20 * HOP - HOP] == 0)
    assert float(out[1, 10 * HOP: 20 * HOP].abs().max()) > 0.9


@pytest.mark.parametrize("cut", [8, 20, 40])
def test_filtered_noise_keeps_the_passband_only(cut):
    bins, frames = 65, 200
    magnitudes = torch.zeros(1, bins, frames)
    magnitudes[:, :cut] = 1.0
    out = filtered_noise(magnitudes, HOP, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, frames * HOP)
    power = np.abs(np.fft.rfft(out[0].numpy())) ** 2
    edge = int(cut / (bins - 1) * power.shape[0])
    margin = power.shape[0] // 16
    assert power[: edge - margin].mean() > 100 * power[edge + margin:].mean()
    assert torch.all(filtered_noise(torch.zeros(1, bins, frames), HOP) == 0)


def test_head_amplitudes_are_positive_and_sum_to_a_loudness():
    head = HarmonicNoiseHead(12, channels=16, harmonics=10, noise_bins=33)
    amplitudes, noise = head(torch.randn(3, 12, 25))
    assert amplitudes.shape == (3, 10, 25) and noise.shape == (3, 33, 25)
    assert torch.all(amplitudes > 0) and torch.all(noise > 0)
    assert torch.all(amplitudes.sum(1) <= 2.0 + 1e-5) and torch.all(noise <= 2.0 + 1e-5)


def test_decoder_with_envelope_keeps_64_samples_per_frame_and_trains_the_head():
    torch.manual_seed(0)
    decoder = SourceFilterDecoder(code_dim=8, num_speakers=3, speaker_dim=4, cond_channels=8, residual_channels=8,
                                  gate_channels=16, skip_channels=8, layers=4, envelope_harmonics=16,
                                  envelope_noise_bins=65, envelope_channels=16)
    for frames in (1, 7, 33):
        out = decoder(torch.randn(2, 8, frames), torch.tensor([0, 2]), torch.full((2, frames), 150.0))
        assert out.shape == (2, HOP * frames) and torch.all(torch.isfinite(out))
    wav = torch.randn(2, 2048) * 0.1
    terms = decoder.loss(wav, torch.randn(2, 8, 32), torch.tensor([0, 1]), torch.full((2, 32), 200.0))
    terms["loss"].backward()
    assert decoder.envelope.out.weight.grad.abs().sum() > 0
    assert decoder.speaker_embedding.weight.grad[:2].abs().sum() > 0


def test_decoder_envelope_settings_are_checked():
    from speechvq.errors import SpeechVQError

    with pytest.raises(SpeechVQError, match="envelope_harmonics"):
        SourceFilterDecoder(envelope_harmonics=-1)
    with pytest.raises(SpeechVQError, match="noise_bins"):
        SourceFilterDecoder(envelope_harmonics=8, envelope_noise_bins=1)
    decoder = SourceFilterDecoder(envelope_harmonics=8, envelope_noise_bins=33)  # n_fft 64 < 2 x hop 64
    with pytest.raises(ValueError, match="33 bins"):
        decoder(torch.randn(1, 64, 4), torch.tensor([0]), torch.full((1, 4), 100.0))


def test_stft_filter_is_the_identity_at_gain_one_and_removes_a_stopband():
    t = torch.arange(100 * HOP) / SR
    low, high = torch.sin(2 * np.pi * 500 * t), torch.sin(2 * np.pi * 4000 * t)
    signal = (low + high)[None]
    ones = torch.ones(1, 129, 100)
    assert torch.allclose(stft_filter(signal, ones, HOP), signal, atol=1e-5)
    lowpass = ones.clone()
    lowpass[:, 32:] = 0.0                                  # bins above 2 kHz (n_fft 256: 62.5 Hz per bin)
    out = stft_filter(signal, lowpass, HOP)[0, 4 * HOP: -4 * HOP]
    assert float((out - low[4 * HOP: -4 * HOP]).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="signal must have shape"):
        stft_filter(signal[:, :-1], ones, HOP)


def _filter_decoder(**extra) -> SourceFilterDecoder:
    torch.manual_seed(0)
    return SourceFilterDecoder(code_dim=8, num_speakers=3, speaker_dim=4, cond_channels=8, residual_channels=8,
                               gate_channels=16, skip_channels=8, layers=4, **extra)


def test_envelope_filter_starts_as_the_identity_and_scales_the_output_by_its_gain():
    plain, filtered = _filter_decoder(), _filter_decoder(envelope_filter_bins=129)
    args = (torch.randn(2, 8, 40), torch.tensor([0, 2]), torch.full((2, 40), 150.0))
    generator = torch.Generator()
    before = plain(*args, generator=generator.manual_seed(1))
    assert torch.allclose(filtered(*args, generator=generator.manual_seed(1)), before, atol=1e-5)
    with torch.no_grad():
        filtered.envelope_filter[-1].bias.fill_(float(np.log(0.5)))
    assert torch.allclose(filtered(*args, generator=generator.manual_seed(1)), 0.5 * before, atol=1e-5)


def test_envelope_filter_learns_from_the_loss_and_hears_the_speaker():
    decoder = _filter_decoder(envelope_filter_bins=65)
    head = decoder.envelope_filter
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    batch = (torch.randn(2, 2048) * 0.1, torch.randn(2, 8, 32), torch.tensor([0, 1]), torch.full((2, 32), 200.0))
    for _ in range(2):                       # the zero-initialised output layer moves first, then what feeds it
        optimiser.zero_grad()
        decoder.loss(*batch)["loss"].backward()
        assert head[-1].weight.grad.abs().sum() > 0
        optimiser.step()
    assert head[0].weight.grad[:, 8:].abs().sum() > 0      # input channels 8..11: the speaker embedding
    from speechvq.errors import SpeechVQError

    with pytest.raises(SpeechVQError, match="envelope_filter_bins"):
        SourceFilterDecoder(envelope_filter_bins=40)


def test_a_speaker_only_envelope_filter_is_one_fixed_equaliser_per_speaker():
    decoder = _filter_decoder(envelope_filter_bins=65, envelope_filter_codes=False)
    assert decoder.envelope_filter[0].in_channels == 4          # the speaker embedding's channels, no codes
    with torch.no_grad():
        decoder.envelope_filter[-1].weight.normal_()
        voice = decoder.speaker_embedding(torch.tensor([0, 1]))[:, :, None].expand(-1, -1, 30)
        gains = decoder.envelope_filter(voice)                  # what the decoder computes for 30 frames
        assert torch.allclose(gains[..., 1:-1], gains[..., 1:2].expand(-1, -1, 28), atol=1e-5)  # fixed in time
        assert float((gains[0] - gains[1]).abs().mean()) > 1e-3                                 # per speaker
        z_q = torch.randn(1, 8, 40)
        generator = torch.Generator()
        one = decoder(z_q, torch.tensor([0]), torch.full((1, 40), 150.0), generator=generator.manual_seed(1))
        other = decoder(z_q, torch.tensor([1]), torch.full((1, 40), 150.0), generator=generator.manual_seed(1))
    assert float((one - other).abs().mean()) > 1e-4
