"""Conversion metrics: MCD (WORLD + SPTK + DTW), speaker similarity (resemblyzer), code agreement,
voicing, F0 error and spectral flatness."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
from conftest import sine

pytest.importorskip("pyworld")
pytest.importorskip("pysptk")

from speechvq.analysis.metrics import (  # noqa: E402
    MCEP_ORDER,
    centroid,
    code_agreement,
    cosine_similarity,
    dtw_path,
    envelope_dynamics_r2,
    envelope_shape,
    envelope_shape_error_db,
    envelope_tilt_db,
    f0_error_cents,
    mcd_frames,
    mel_cepstral_distortion,
    phone_agreement,
    spectral_flatness,
    voiced_retention,
    world_mcep,
)
from speechvq.audio import load_audio  # noqa: E402
from speechvq.errors import SpeechVQError  # noqa: E402

TEXT = "The quick brown fox jumps."
OTHER_TEXT = "Nine bright stars were shining."


def espeak(path, text: str, voice: str, speed: int = 175) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)
    return load_audio(path)



@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """16 kHz waveforms: voice m3 (two sentences, and slower), voice f2 (same sentence)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("voices")
    return {
        "m3": espeak(root / "m3.wav", TEXT, "en-us+m3"),
        "m3_other": espeak(root / "m3_other.wav", OTHER_TEXT, "en-us+m3"),
        "m3_slow": espeak(root / "m3_slow.wav", TEXT, "en-us+m3", speed=125),
        "f2": espeak(root / "f2.wav", TEXT, "en-us+f2"),
        "f2_other": espeak(root / "f2_other.wav", OTHER_TEXT, "en-us+f2"),
    }


def test_world_mcep_shape_one_frame_per_5_ms(voices):
    wav = voices["m3"]
    mcep, power_db = world_mcep(wav)
    assert mcep.shape[1] == MCEP_ORDER + 1
    assert abs(mcep.shape[0] - len(wav) / 16000 / 0.005) <= 2
    assert power_db.shape == (mcep.shape[0],)


def test_mcd_formula_on_constant_cepstra():
    a = np.zeros((10, MCEP_ORDER))
    b = np.zeros((7, MCEP_ORDER))
    b[:, 3] = 0.5
    expected = 10 / math.log(10) * math.sqrt(2 * 0.5**2)
    assert mcd_frames(a, b) == pytest.approx(expected)


def naive_dtw(cost: np.ndarray) -> tuple[float, np.ndarray]:
    """Reference DTW by the textbook double loop: (total cost, (L, 2) path from (0, 0) to (N-1, M-1)).

    Steps (1,1), (1,0), (0,1); backtracking takes the predecessor of least accumulated cost,
    preferring the diagonal, then the row above, then the column to the left.
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        step = int(np.argmin((total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        path.append((i - 1, j - 1))
    return float(total[n, m]), np.asarray(path[::-1], dtype=np.int64)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("shape", [(6, 9), (12, 5), (1, 4), (7, 1), (1, 1), (30, 23)])
def test_dtw_path_equals_the_naive_reference(shape, seed):
    """librosa's DTW (dtw_path) gives the textbook recurrence's path and cost: on random costs, and
    on small integer costs, where equal-cost predecessors are frequent and the tie order shows."""
    rng = np.random.default_rng(seed)
    for cost in (rng.random(shape), rng.integers(0, 3, shape).astype(np.float64)):
        path = dtw_path(cost)
        expected_total, expected_path = naive_dtw(cost)
        np.testing.assert_array_equal(path, expected_path)
        assert path.dtype == np.int64
        assert cost[path[:, 0], path[:, 1]].sum() == pytest.approx(expected_total)


@pytest.mark.parametrize("shape", [(6, 9), (12, 5), (1, 4), (7, 1)])
def test_dtw_path_is_monotonic_spans_both_sequences_and_has_minimum_cost(shape):
    cost = np.random.default_rng(shape[0] * 10 + shape[1]).random(shape)
    path = dtw_path(cost)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (shape[0] - 1, shape[1] - 1)
    steps = np.diff(path, axis=0)
    assert np.all(steps >= 0) and np.all(steps.sum(axis=1) >= 1) and np.all(steps <= 1)
    assert cost[path[:, 0], path[:, 1]].sum() == pytest.approx(naive_dtw(cost)[0])


def test_mcd_of_a_signal_with_itself_is_zero(voices):
    assert mel_cepstral_distortion(voices["m3"], voices["m3"]) == pytest.approx(0.0, abs=1e-9)


def test_mcd_grows_with_distortion(voices):
    wav = voices["m3"]
    rng = np.random.default_rng(0)
    # dio (faster than the default harvest) for F0: the ordering does not depend on the F0 estimator.
    slight = mel_cepstral_distortion(wav, wav + rng.normal(0, 0.002, wav.shape).astype(np.float32), f0_method="dio")
    strong = mel_cepstral_distortion(wav, wav + rng.normal(0, 0.03, wav.shape).astype(np.float32), f0_method="dio")
    other_voice = mel_cepstral_distortion(wav, voices["f2"], f0_method="dio")
    assert 0 < slight < strong
    assert other_voice > slight


def test_dtw_aligns_a_time_stretched_copy(voices):
    stretched = mel_cepstral_distortion(voices["m3"], voices["m3_slow"])
    other_voice = mel_cepstral_distortion(voices["m3"], voices["f2"])
    assert len(voices["m3_slow"]) > 1.2 * len(voices["m3"])
    assert stretched < 0.5 * other_voice


def test_leading_and_trailing_silence_is_trimmed(voices):
    wav = voices["m3"]
    rng = np.random.default_rng(1)
    pad = (rng.normal(0, 1e-4, 16000)).astype(np.float32)
    padded = np.concatenate([pad, wav, pad])
    trimmed = mel_cepstral_distortion(wav, padded, f0_method="dio")
    untrimmed = mel_cepstral_distortion(wav, padded, f0_method="dio", threshold_db=-np.inf)
    assert trimmed < 1.0
    assert trimmed < 0.5 * untrimmed  # the padding does count when no frame is dropped


def test_same_voice_is_closer_than_another_voice(voices):
    from speechvq.analysis.metrics import SpeakerEncoder

    encoder = SpeakerEncoder()
    m3, m3_other, f2, f2_other = (encoder.embed(voices[k]) for k in ("m3", "m3_other", "f2", "f2_other"))
    assert m3.shape == (256,) and np.linalg.norm(m3) == pytest.approx(1.0, abs=1e-4)
    # A different sentence by the same voice is closer than the same sentence by another voice.
    assert cosine_similarity(m3_other, m3) > cosine_similarity(m3_other, f2)
    assert cosine_similarity(f2_other, f2) > cosine_similarity(f2_other, m3)
    c = centroid([m3, m3_other])
    assert np.linalg.norm(c) == pytest.approx(1.0, abs=1e-5)
    assert cosine_similarity(c, m3) > cosine_similarity(c, f2)


class SignCodes(torch.nn.Module):
    """Stand-in VQ-VAE: the code of a 64-sample frame is 1 if its mean is positive, else 0."""

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        frames = -(-wav.shape[1] // 64)
        padded = torch.nn.functional.pad(wav, (0, frames * 64 - wav.shape[1]))
        return (padded.reshape(wav.shape[0], frames, 64).mean(-1) > 0).long()


def test_code_agreement_counts_equal_frames_on_the_common_length():
    rng = np.random.default_rng(0)
    wav = rng.normal(0, 0.1, 64 * 50).astype(np.float32)
    model = SignCodes()
    assert code_agreement(model, wav, wav) == 1.0
    assert code_agreement(model, wav[: 64 * 30], wav) == 1.0  # cropped to 30 frames
    assert code_agreement(model, -wav, wav) == 0.0
    half = np.concatenate([wav[: 64 * 25], -wav[64 * 25:]])
    assert code_agreement(model, half, wav) == pytest.approx(0.5)


def test_phone_agreement_maps_codes_to_phones_on_aligned_frames():
    code_to_phone = ["ah", "b", "sil"]
    codes = np.array([0, 1, 2, 1, 0])
    labels = ["ah", "ah", None, "b", "zz"]  # frame 2 unaligned, frame 4 a phone the probe never saw
    assert phone_agreement(codes, code_to_phone, labels) == pytest.approx(2 / 3)
    assert phone_agreement(codes[:2], code_to_phone, labels) == pytest.approx(1 / 2)  # common length
    assert phone_agreement(codes, code_to_phone, [None] * 5) is None


def harmonic(f0: float, seconds: float = 0.5) -> np.ndarray:
    """(n,) float32 tone: 8 harmonics of `f0` hertz with amplitudes 0.3 / k, at 16 kHz."""
    return sum(sine(seconds, freq=f0 * k, amplitude=0.3 / k) for k in range(1, 9))


@pytest.mark.parametrize("f0", [100.0, 150.0, 220.0])
def test_spectral_flatness_of_white_noise_is_far_higher_than_of_a_harmonic_tone(f0):
    noise = (0.3 * np.random.default_rng(int(f0)).uniform(-1, 1, 8000)).astype(np.float32)
    tone = harmonic(f0)
    assert 0.3 < spectral_flatness(noise) <= 1.0
    assert 0.0 <= spectral_flatness(tone) < 1e-3
    assert spectral_flatness(noise) > 1000 * spectral_flatness(tone)


def test_spectral_flatness_leaves_out_silent_frames():
    tone = harmonic(150.0)
    silence = np.zeros(32000, dtype=np.float32)  # 2 s each side: most frames are silent
    padded = np.concatenate([silence, tone, silence])
    assert spectral_flatness(padded) == pytest.approx(spectral_flatness(tone), rel=0.2)
    assert spectral_flatness(padded, range_db=np.inf) > 0.5  # counted, silent frames would dominate
    with pytest.raises(SpeechVQError, match="silent"):
        spectral_flatness(silence)


def test_voiced_retention_and_f0_error_compare_tracks_frame_by_frame():
    rng = np.random.default_rng(0)
    track = np.where(rng.random(200) < 0.6, rng.uniform(80, 400, 200), 0.0).astype(np.float32)
    assert voiced_retention(track, track) == 1.0
    assert voiced_retention(track, np.zeros_like(track)) == 0.0
    assert f0_error_cents(track, track) == pytest.approx(0.0, abs=1e-9)
    assert f0_error_cents(track, 2 * track) == pytest.approx(1200.0)  # an octave, wherever it is voiced
    assert f0_error_cents(2 * track, track) == pytest.approx(1200.0)
    # Half of the source's voiced frames unvoiced in the output: retention 1/2, error over the rest.
    voiced = np.flatnonzero(track > 0)
    output = track.copy()
    output[voiced[::2]] = 0.0
    assert voiced_retention(track, output) == pytest.approx(len(voiced[1::2]) / len(voiced))
    assert voiced_retention(track, output[:100]) == pytest.approx(np.mean(output[:100][track[:100] > 0] > 0))
    source = np.array([0, 100, 100, 100, 0], np.float32)
    assert voiced_retention(source, np.array([0, 0, 200, 100, 50, 7], np.float32)) == pytest.approx(2 / 3)
    assert f0_error_cents(source, np.array([0, 0, 200, 100, 50, 7], np.float32)) == pytest.approx(600.0)
    assert voiced_retention(np.zeros(5), track) is None and f0_error_cents(source, np.zeros(5)) is None


def test_envelope_dynamics_r2_is_one_for_a_copy_and_ignores_gain_and_a_fixed_equaliser(voices):
    speech = voices["m3"]
    assert envelope_dynamics_r2(speech, speech) == pytest.approx(1.0)
    assert envelope_dynamics_r2(speech, 0.25 * speech) == pytest.approx(1.0, abs=1e-4)
    tilted = np.append(speech[0], speech[1:] - 0.5 * speech[:-1]).astype(np.float32)  # a fixed pre-emphasis
    assert envelope_dynamics_r2(speech, tilted) > 0.95


def test_envelope_shape_error_ignores_gain_and_tells_a_voice_from_another(voices):
    def error(reference, output):
        return envelope_shape_error_db(envelope_shape(reference), envelope_shape(output))

    speech = voices["m3"]
    assert envelope_shape(speech).shape == (40,) and abs(float(envelope_shape(speech).mean())) < 1e-4
    assert error(speech, speech) == 0.0 and error(speech, 0.25 * speech) < 0.1
    tilted = np.append(speech[0], speech[1:] - 0.9 * speech[:-1]).astype(np.float32)  # +-10 dB across the bands
    assert error(speech, tilted) > 3.0
    # no alignment needed: the same voice on another sentence is nearer than another voice on the same one
    assert error(speech, voices["m3_other"]) < error(speech, voices["f2"])
    assert error(voices["f2"], voices["f2_other"]) < error(voices["f2"], speech)


def test_envelope_tilt_is_zero_for_a_gain_and_signed_by_the_brighter_side(voices):
    speech = voices["m3"]
    reference = envelope_shape(speech)
    assert envelope_tilt_db(reference, reference) == 0.0
    assert abs(envelope_tilt_db(reference, envelope_shape(0.25 * speech))) < 0.1
    brighter = np.append(speech[0], speech[1:] - 0.9 * speech[:-1]).astype(np.float32)  # first difference: +6 dB/octave
    darker = np.cumsum(speech * 0.1).astype(np.float32)  # running sum: -6 dB/octave
    assert envelope_tilt_db(reference, envelope_shape(brighter)) > 5.0
    assert envelope_tilt_db(reference, envelope_shape(darker)) < -5.0
    # antisymmetric: the reference judged against the output
    assert envelope_tilt_db(envelope_shape(brighter), reference) == pytest.approx(
        -envelope_tilt_db(reference, envelope_shape(brighter)))


def test_envelope_dynamics_r2_falls_with_a_fixed_envelope_or_another_sentence(voices):
    speech = voices["m3"]
    # The same long-term spectrum without the movements: the source's mean spectrum on white noise.
    rng = np.random.default_rng(0)
    spectrum = np.abs(np.fft.rfft(speech))
    shaped = np.fft.irfft(spectrum * np.exp(2j * np.pi * rng.random(spectrum.shape)), n=len(speech))
    fixed = envelope_dynamics_r2(speech, shaped.astype(np.float32))
    other = envelope_dynamics_r2(speech, voices["m3_other"])
    assert fixed < 0.2 and other < 0.2
    # Movements kept but noisier: in between.
    noisy = speech + 0.02 * rng.standard_normal(len(speech)).astype(np.float32)
    assert max(fixed, other) < envelope_dynamics_r2(speech, noisy) < 1.0
    assert envelope_dynamics_r2(np.zeros(3200, np.float32), speech) is None  # no movement to reproduce
