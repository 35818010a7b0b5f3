import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_wav, sine

from speechvq.audio import (
    HOP_LENGTH,
    MULAW_CHANNELS,
    SAMPLE_RATE,
    float_to_int16,
    int16_to_float,
    load_audio,
    mulaw_decode,
    mulaw_encode,
    num_frames,
    resample,
    save_wav,
)
from speechvq.errors import AudioError

MU = MULAW_CHANNELS - 1


def _peak_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spectrum)])


# ----------------------------------------------------------------------------- mu-law

def test_mulaw_codes_round_trip_exactly():
    codes = torch.arange(MULAW_CHANNELS)
    assert torch.equal(mulaw_encode(mulaw_decode(codes)), codes)


def test_mulaw_round_trip_error_is_within_half_a_companded_step():
    x = torch.linspace(-1, 1, 20001)
    y = mulaw_decode(mulaw_encode(x))
    # One companded step is 2/mu wide and encoding rounds, so the companded error is at most
    # 1/mu; expanding it back bounds the error by (|x| + 1/mu) * ((1 + mu)^(1/mu) - 1).
    bound = (x.abs() + 1 / MU) * ((1 + MU) ** (1 / MU) - 1) + 1e-6
    assert ((y - x).abs() <= bound).all()
    assert (y - x).abs().max() > 0.01  # the quantisation is coarse near full scale, not a no-op


def _mulaw_formula(x: torch.Tensor) -> torch.Tensor:
    """μ-law encoding written out (clamped to [-1, 1], in float32): the reference for `mulaw_encode`."""
    mu = MULAW_CHANNELS - 1.0
    x = x.float().clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).to(torch.int64)


def _mulaw_inverse_formula(codes: torch.Tensor) -> torch.Tensor:
    mu = MULAW_CHANNELS - 1.0
    y = codes.float() / mu * 2 - 1.0
    return torch.sign(y) * (torch.exp(y.abs() * math.log1p(mu)) - 1.0) / mu


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mulaw_equals_the_formula_bit_for_bit(dtype):
    """Every 16-bit sample value, random values, the levels and their neighbours, out-of-range values."""
    levels = _mulaw_inverse_formula(torch.arange(MULAW_CHANNELS))
    noise = torch.rand(200_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = torch.cat([torch.arange(-32768, 32768) / 32768.0, noise, levels, levels.nextafter(torch.tensor(2.0)),
                   levels.nextafter(torch.tensor(-2.0)), torch.tensor([-5.0, -1.0, -0.0, 0.0, 1.0, 5.0])]).to(dtype)
    assert torch.equal(mulaw_encode(x), _mulaw_formula(x))
    for codes in (torch.arange(MULAW_CHANNELS), torch.arange(MULAW_CHANNELS, dtype=torch.int32),
                  torch.arange(MULAW_CHANNELS, dtype=torch.float64)):
        decoded = mulaw_decode(codes)
        assert decoded.dtype == torch.float32 and torch.equal(decoded, _mulaw_inverse_formula(codes))


def test_mulaw_range_and_dtype():
    codes = mulaw_encode(torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0]))
    assert codes.dtype == torch.int64
    assert codes.tolist() == [0, 0, 128, 255, 255]


# ----------------------------------------------------------------------------- resampling and mixing

def test_resample_keeps_440_hz_tone_at_440_hz():
    wav = sine(1.0, sr=22050, freq=440.0)
    out = resample(wav, 22050, SAMPLE_RATE)
    assert out.dtype == np.float32 and out.shape == (SAMPLE_RATE,)
    assert abs(_peak_hz(out, SAMPLE_RATE) - 440.0) <= 1.0


def test_stereo_48k_file_comes_out_mono_16k_at_the_same_pitch(tmp_path):
    path = make_wav(tmp_path / "stereo.flac", seconds=1.0, sr=48000, channels=2, freq=440.0)
    wav = load_audio(path)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert wav.shape[0] == SAMPLE_RATE
    assert abs(_peak_hz(wav, SAMPLE_RATE) - 440.0) <= 1.0


def test_channels_are_averaged(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(800, 2)).astype(np.float32)
    path = tmp_path / "two.wav"
    sf.write(str(path), stereo, SAMPLE_RATE, subtype="FLOAT")
    assert np.allclose(load_audio(path), stereo.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
def test_each_format_loads(tmp_path, ext):
    wav = load_audio(make_wav(tmp_path / f"a{ext}", seconds=0.5, sr=SAMPLE_RATE, freq=440.0))
    assert wav.shape == (SAMPLE_RATE // 2,)
    assert abs(_peak_hz(wav, SAMPLE_RATE) - 440.0) <= 2.0


# ----------------------------------------------------------------------------- refusals

def _assert_refused(path, fragment):
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    message = str(exc.value)
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def test_missing_file_refused(tmp_path):
    _assert_refused(tmp_path / "nope.wav", "no such")


def test_corrupt_file_refused(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x01\x02garbage" + bytes(range(200)))
    _assert_refused(path, "corrupt")


def test_empty_file_refused(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16")
    _assert_refused(path, "empty")


def test_zero_byte_file_refused(tmp_path):
    path = tmp_path / "zero.flac"
    path.write_bytes(b"")
    _assert_refused(path, "corrupt")


def test_too_short_after_resampling_refused(tmp_path):
    # 150 samples at 48 kHz are 50 at 16 kHz: fewer than one 64-sample code frame.
    path = make_wav(tmp_path / "short.wav", seconds=150 / 48000, sr=48000)
    assert sf.info(str(path)).frames >= HOP_LENGTH  # long enough before resampling
    _assert_refused(path, "too short")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_refused(tmp_path, bad):
    data = np.zeros(1000, dtype=np.float32)
    data[500] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(str(path), data, SAMPLE_RATE, subtype="FLOAT")
    _assert_refused(path, "NaN or Inf")


# ----------------------------------------------------------------------------- writing and int16

def test_save_wav_is_16_bit_mono_and_round_trips(tmp_path):
    wav = sine(0.1, freq=300.0, amplitude=0.7)
    path = save_wav(tmp_path / "sub" / "out.wav", torch.from_numpy(wav))
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert np.abs(load_audio(path) - wav).max() <= 1.5 / 32768
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]  # no temporary left behind


def test_int16_conversion_round_trip_within_int16_precision():
    wav = np.linspace(-1, 1, 10001, dtype=np.float32)
    codes = float_to_int16(wav)
    assert codes.dtype == np.int16
    assert codes.min() >= -32768 and codes.max() <= 32767
    assert np.abs(int16_to_float(codes) - wav).max() <= 2.0 / 32768


@pytest.mark.parametrize("n", [1, 63, 64, 65, 16000])
def test_num_frames_is_ceil_of_samples_over_hop(n):
    assert num_frames(n) == math.ceil(n / HOP_LENGTH)
