"""Source-filter decoder: excitation, STFT loss, F0 statistics and mapping, speaker-free levers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from speechvq.f0 import F0Stats, f0_stats, f0_track_bits, map_f0, world_f0
from speechvq.models.source_filter import SourceFilterDecoder
from speechvq.modules.excitation import harmonic_excitation
from speechvq.modules.mel_head import FrameLogMel
from speechvq.modules.speaker_free import SHIFT_STEPS, grad_reverse, random_voice_shift, shift_voice, time_jitter
from speechvq.modules.stft_loss import LogMelLoss, MultiResolutionSTFTLoss

HOP, SR = 64, 16000


def test_excitation_is_phase_continuous_and_silent_when_unvoiced():
    frames = 40
    f0 = torch.tensor([100.0 + 5 * i for i in range(frames)])[None]
    f0[0, 25:32] = 0.0
    ex = harmonic_excitation(f0, HOP, SR, harmonics=4)
    assert ex.shape == (1, 5, frames * HOP)
    voiced = f0[0].repeat_interleave(HOP) > 0
    # silent where F0 is 0; the noise channel is not
    assert torch.all(ex[0, :4, ~voiced] == 0)
    assert ex[0, 4, ~voiced].std() > 0.5
    # phase continuity: inside voiced stretches, consecutive samples of the fundamental differ by at
    # most the phase step of the highest F0 (no jump at frame boundaries)
    first = ex[0, 0, : 25 * HOP]
    max_step = 2 * math.pi * float(f0.max()) / SR
    assert float((first[1:] - first[:-1]).abs().max()) <= max_step * 1.01
    # and the fundamental has the right frequency: zero crossings of a 100-220 Hz sine
    crossings = int(((first[1:] >= 0) != (first[:-1] >= 0)).sum())
    expected = 2 * float(f0[0, :25].mean()) * 25 * HOP / SR
    assert abs(crossings - expected) <= 2


def test_excitation_drops_harmonics_above_nyquist():
    f0 = torch.full((1, 10), 3000.0)
    ex = harmonic_excitation(f0, HOP, SR, harmonics=4)
    assert ex[0, 1].abs().max() > 0.5       # 6 kHz < 8 kHz
    assert torch.all(ex[0, 2:4] == 0)       # 9 and 12 kHz are above Nyquist


def test_stft_loss_zero_for_identical_and_positive_otherwise():
    loss = MultiResolutionSTFTLoss()
    x = torch.randn(2, 4096)
    convergence, magnitude = loss(x, x.clone())
    assert float(convergence) == pytest.approx(0.0, abs=1e-6) and float(magnitude) == pytest.approx(0.0, abs=1e-6)
    for other in (x * 0.5, torch.randn(2, 4096), torch.roll(x, 700, dims=-1) + 0.1 * torch.randn(2, 4096)):
        convergence, magnitude = loss(other, x)
        assert float(convergence) > 0.01 and float(magnitude) > 0.01


def test_log_mel_loss_zero_for_identical_and_grows_with_a_formant_shift():
    loss = LogMelLoss()
    x = torch.randn(2, 8192)
    assert float(loss(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
    t = torch.arange(8192) / SR
    vowel = sum(torch.sin(2 * math.pi * 120 * k * t) * math.exp(-((120 * k - 700) / 300) ** 2) for k in range(1, 40))
    shifted = sum(torch.sin(2 * math.pi * 120 * k * t) * math.exp(-((120 * k - 1400) / 300) ** 2) for k in range(1, 40))
    near = sum(torch.sin(2 * math.pi * 120 * k * t) * math.exp(-((120 * k - 800) / 300) ** 2) for k in range(1, 40))
    assert 0 < float(loss(near[None], vowel[None])) < float(loss(shifted[None], vowel[None]))


def test_the_average_spectrum_term_hears_the_timbre_not_the_frames():
    torch.manual_seed(0)
    loss = LogMelLoss()
    a, b = torch.randn(3, 32000), torch.randn(3, 32000)  # two draws of one spectrum: every frame differs
    assert 5 * float(loss.average(a, b)) < float(loss(a, b))
    assert float(loss.average(2 * a, a)) == pytest.approx(math.log(2.0), rel=1e-4)  # a gain moves every band
    tilted = torchaudio.functional.lowpass_biquad(a, SR, 1000.0)
    assert float(loss.average(tilted, a)) > 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        loss.average(a, b[:, :16000])


@pytest.mark.parametrize("weight,term", [("mel_loss_weight", "mel_l1"),
                                         ("average_spectrum_weight", "average_spectrum_l1")])
def test_mel_terms_are_in_the_loss_but_not_in_the_checkpoint(weight, term):
    torch.manual_seed(0)
    kwargs = dict(code_dim=8, num_speakers=2, speaker_dim=4, cond_channels=8, residual_channels=8, gate_channels=16,
                  skip_channels=8, layers=4)
    with_mel, without = SourceFilterDecoder(**kwargs, **{weight: 2.0}), SourceFilterDecoder(**kwargs)
    assert with_mel.state_dict().keys() == without.state_dict().keys()
    without.load_state_dict(with_mel.state_dict())
    args = (torch.randn(2, 2048) * 0.1, torch.randn(2, 8, 32), torch.tensor([0, 1]), torch.full((2, 32), 200.0))
    torch.manual_seed(1)
    terms = with_mel.loss(*args)
    torch.manual_seed(1)
    plain = without.loss(*args)
    assert term in terms and term not in plain and float(terms[term].detach()) > 0
    total, rest, mel = (float(t.detach()) for t in (terms["loss"], plain["loss"], terms[term]))
    assert total == pytest.approx(rest + 2.0 * mel, rel=1e-5)


def test_decoder_output_is_64_samples_per_frame_and_trains():
    torch.manual_seed(0)
    decoder = SourceFilterDecoder(code_dim=8, num_speakers=3, speaker_dim=4, cond_channels=8, residual_channels=8,
                                  gate_channels=16, skip_channels=8, layers=4)
    for frames in (1, 7, 33):
        z_q = torch.randn(2, 8, frames)
        out = decoder(z_q, torch.tensor([0, 2]), torch.full((2, frames), 150.0))
        assert out.shape == (2, HOP * frames)
        predicted = decoder.predict_f0(z_q, torch.tensor([0, 2]))
        assert predicted.shape == (2, frames) and torch.all(predicted >= 0)
    wav = torch.sin(2 * math.pi * 200 * torch.arange(2048) / SR)[None].repeat(2, 1) * 0.3
    terms = decoder.loss(wav, torch.randn(2, 8, 32), torch.tensor([0, 1]), torch.full((2, 32), 200.0))
    terms["loss"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert decoder.source_in.weight.grad.abs().sum() > 0


def _vowel(formant_hz: float, f0_hz: float = 120.0, length: int = 4096) -> torch.Tensor:
    t = torch.arange(length) / SR
    return sum(torch.sin(2 * math.pi * f0_hz * k * t) * math.exp(-((f0_hz * k - formant_hz) / 250) ** 2)
               for k in range(1, int(7000 / f0_hz)))


def test_frame_log_mel_has_one_centred_frame_per_code_and_follows_a_formant():
    mel = FrameLogMel(SR, HOP, n_mels=40)
    for length in (64, 1000, 4096):
        assert mel(torch.randn(2, length)).shape == (2, 40, math.ceil(length / HOP))
    click = torch.zeros(1, 64 * HOP)
    click[0, 20 * HOP + HOP // 2] = 1.0
    energy = mel(click)[0].mean(dim=0)
    assert int(energy.argmax()) == 20 and float(energy[20] - energy[10]) > 2
    low, high = (int(mel(_vowel(hz)[None])[0, :, 30].argmax()) for hz in (600.0, 2000.0))
    assert high > low + 5


def test_mel_head_is_trained_on_the_envelope_and_conditions_the_waveform():
    torch.manual_seed(0)
    decoder = SourceFilterDecoder(code_dim=8, num_speakers=2, speaker_dim=4, cond_channels=16, residual_channels=8,
                                  gate_channels=16, skip_channels=8, layers=4, mel_head_bands=24, mel_head_weight=0.5)
    frames = 64
    z_q, speaker, f0 = torch.randn(2, 8, frames), torch.tensor([0, 1]), torch.full((2, frames), 120.0)
    assert decoder(z_q, speaker, f0).shape == (2, HOP * frames)
    wav = torch.stack([_vowel(600.0), _vowel(2000.0)]) * 0.1
    optimiser = torch.optim.Adam(decoder.mel_head.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        terms = decoder.loss(wav, z_q, speaker, f0)
        history.append(float(terms["mel_head_l1"].detach()))
        optimiser.zero_grad()
        (terms["mel_head_l1"]).backward()
        optimiser.step()
    assert history[-1] < 0.5 * history[0]
    rest = terms["stft_convergence"] + terms["stft_log_magnitude"] + terms["f0_loss"]
    assert float(terms["loss"].detach()) == pytest.approx(float((rest + 0.5 * terms["mel_head_l1"]).detach()), rel=1e-5)
    # the prediction is the WaveNet's conditioning: another envelope, another waveform
    generator = torch.Generator().manual_seed(3)
    before = decoder(z_q, speaker, f0, generator=generator)
    with torch.no_grad():
        decoder.mel_head.out.bias.add_(1.0)
    after = decoder(z_q, speaker, f0, generator=generator.manual_seed(3))
    assert float((before - after).abs().mean().detach()) > 1e-4


def test_f0_stats_survive_a_checkpoint_round_trip(tmp_path):
    from speechvq.checkpoint import load_checkpoint, save_checkpoint

    stats = {"alice": f0_stats([np.array([0, 100, 110, 0, 121], np.float32)]).to_list(),
             "bob": F0Stats(math.log(220.0), 0.1, 500).to_list()}
    path = save_checkpoint(tmp_path / "c.pt", {"kind": "vqvae", "f0_stats": stats, "model": {}})
    loaded = load_checkpoint(path, kind="vqvae")["f0_stats"]
    assert {k: F0Stats.from_list(v) for k, v in loaded.items()} == {k: F0Stats.from_list(v) for k, v in stats.items()}
    assert F0Stats.from_list(loaded["bob"]).median_hz == pytest.approx(220.0)


@pytest.mark.parametrize("seed", range(5))
def test_pitch_mapping_sends_source_mean_to_target_mean(seed):
    rng = np.random.default_rng(seed)
    source = F0Stats(math.log(rng.uniform(80, 300)), rng.uniform(0.05, 0.3), 100)
    target = F0Stats(math.log(rng.uniform(80, 300)), rng.uniform(0.05, 0.3), 100)
    contour = np.exp(source.mean + source.std * rng.standard_normal(200)).astype(np.float32)
    contour[::7] = 0.0
    mapped = map_f0(contour, source, target)
    assert np.all((mapped > 0) == (contour > 0))
    assert map_f0(np.array([math.exp(source.mean)], np.float32), source, target)[0] == pytest.approx(
        math.exp(target.mean), rel=1e-4)
    moved = f0_stats([mapped])
    assert moved.mean - target.mean == pytest.approx((f0_stats([contour]).mean - source.mean) / source.std * target.std,
                                                     abs=1e-4)
    shifted = map_f0(contour, source, target, shift_semitones=12.0)
    np.testing.assert_allclose(shifted[contour > 0], 2 * contour[contour > 0], rtol=1e-6)


def test_world_f0_finds_a_tone_and_silence():
    t = np.arange(SR) / SR
    wav = np.concatenate([0.5 * np.sin(2 * np.pi * 180 * t), np.zeros(SR // 2)]).astype(np.float32)
    f0 = world_f0(wav)
    assert f0.shape == (-(-wav.shape[0] // HOP),)
    assert np.median(f0[20:200]) == pytest.approx(180, rel=0.02)
    assert np.all(f0[260:] == 0)


def test_f0_bits_grow_with_pitch_variation():
    flat = [np.full(500, 120.0, np.float32)]
    rng = np.random.default_rng(0)
    wobbly = [(120 * 2 ** (rng.standard_normal(500) / 6)).astype(np.float32)]
    assert f0_track_bits(flat)["f0_bits_per_frame"] < 0.1
    assert f0_track_bits(wobbly)["f0_bits_per_frame"] > 3.0


def test_jitter_keeps_length_and_only_takes_neighbours():
    x = torch.arange(200.0).repeat(3, 2, 1)  # (3, 2, 200): the value is the frame index
    generator = torch.Generator().manual_seed(0)
    y = time_jitter(x, 0.5, generator=generator)
    assert y.shape == x.shape
    moved = (y - x)
    assert set(moved.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert 0.3 < float((moved != 0).float().mean()) < 0.6
    assert torch.equal(y[:, 0], y[:, 1])  # whole frames move, all channels together
    assert torch.equal(time_jitter(x, 0.0), x)


def test_gradient_reversal_flips_the_sign():
    x = torch.randn(5, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(5.0))
    assert torch.equal(grad_reverse(x.detach(), 2.0), x.detach())


def _peak_hz(wav: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B,) frequency of the largest spectral peak (Hann window, 16 kHz)."""
    spectrum = torch.fft.rfft(wav * torch.hann_window(wav.shape[-1]), n=8 * wav.shape[-1]).abs()
    return spectrum.argmax(-1) * 16000 / (8 * wav.shape[-1])


@pytest.mark.parametrize("numerator", [26, 29, 35, 38])
def test_voice_shift_scales_a_tone_and_keeps_the_length(numerator):
    t = torch.arange(8192) / 16000
    tone = 0.5 * torch.sin(2 * math.pi * 220 * t)[None]
    shifted = shift_voice(tone, numerator, SHIFT_STEPS)
    assert shifted.shape == tone.shape
    expected = 220 * numerator / SHIFT_STEPS
    assert abs(float(_peak_hz(shifted[:, 1024:-1024])) - expected) < 4
    assert float(shifted.abs().max()) > 0.25  # neither silenced nor faded out
    assert torch.equal(shift_voice(tone, SHIFT_STEPS, SHIFT_STEPS), tone)


def test_random_voice_shift_stays_within_its_range_per_row():
    t = torch.arange(8192) / 16000
    tones = 0.5 * torch.sin(2 * math.pi * 220 * t).repeat(16, 1)
    generator = torch.Generator().manual_seed(0)
    shifted = random_voice_shift(tones, 0.15, generator=generator)
    peaks = _peak_hz(shifted[:, 1024:-1024])
    assert shifted.shape == tones.shape
    assert bool(((peaks > 220 * 0.85 - 4) & (peaks < 220 * 1.15 + 4)).all())
    assert len(peaks.round().unique()) >= 4  # rows draw their own factors
    assert torch.equal(random_voice_shift(tones, 0.0), tones)


def test_speaker_information_is_full_for_speaker_codes_and_chance_for_shared_ones():
    from speechvq.analysis.speaker_info import speaker_information

    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(4), 10)
    train = np.tile(np.arange(10) < 7, 4)
    own = [rng.integers(16 * s, 16 * s + 16, 200) for s in speakers]        # disjoint code sets per speaker
    shared = [rng.integers(0, 64, 200) for _ in speakers]                   # every speaker uses every code
    full = speaker_information(own, speakers, train, 64)
    assert full["frame_speaker_accuracy"] == 1.0 and full["utterance_speaker_accuracy"] == 1.0
    none = speaker_information(shared, speakers, train, 64)
    assert none["chance"] == 0.25
    assert none["frame_speaker_accuracy"] < 0.35 and none["utterance_speaker_accuracy"] < 0.6
