"""Differentiable harmonic-plus-noise synthesis (DDSP, Engel et al. 2020).

A frame-rate network predicts, per code frame, the amplitude of each harmonic of F0 and the
magnitude response of a noise filter; these two synthesisers turn them into a waveform, so the
spectral envelope (the speaker's timbre, the phone's formants) is set directly at frame rate
instead of being learnt by a sample-rate filter::

    harmonics: sum_k a_k(t) sin(k phi(t)),  a_k linearly interpolated from (B, K, F), phi continuous
    noise:     iSTFT(|H(f, frame)| * STFT(white noise)),  n_fft = 2 (N - 1), hop = samples per frame

`stft_filter` is that time-varying zero-phase filter for any signal (the source-filter decoder's
envelope filter applies it to its WaveNet's output).

`HarmonicNoiseHead` maps frame features to the two parameter sets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechvq.modules.excitation import excitation_phase


def exp_sigmoid(x: torch.Tensor, max_value: float = 2.0, floor: float = 1e-7) -> torch.Tensor:
    """DDSP's positive nonlinearity: max_value * sigmoid(x) ** ln(10) + floor (a scaled log-like range)."""
    return max_value * torch.sigmoid(x) ** math.log(10.0) + floor


def harmonic_synth(f0: torch.Tensor, amplitudes: torch.Tensor, hop: int, sample_rate: int,
                   initial_phase: torch.Tensor | None = None) -> torch.Tensor:
    """Frame-rate F0 (B, F) hertz (0: unvoiced) and amplitudes (B, K, F) -> (B, F * hop) waveform.

    Harmonic k (1..K) sounds with amplitude a_k, interpolated linearly between frames, where the
    sample is voiced and k F0 is below the Nyquist frequency; silence elsewhere.
    `initial_phase` (B,) radians, default 0.
    """
    if amplitudes.dim() != 3 or amplitudes.shape[0] != f0.shape[0] or amplitudes.shape[-1] != f0.shape[-1]:
        raise ValueError(
            f"amplitudes must have shape ({f0.shape[0]}, K, {f0.shape[-1]}), got {tuple(amplitudes.shape)}")
    sample_f0, mask, phase = excitation_phase(f0, hop, sample_rate, initial_phase)
    k = torch.arange(1, amplitudes.shape[1] + 1, device=f0.device, dtype=torch.float32)[None, :, None]
    audible = mask[:, None] & ((k * sample_f0[:, None]) < (sample_rate / 2))
    amp = F.interpolate(amplitudes.float(), scale_factor=hop, mode="linear", align_corners=False)
    return (amp * torch.sin(k * phase[:, None]) * audible).sum(dim=1)


def stft_filter(signal: torch.Tensor, magnitudes: torch.Tensor, hop: int) -> torch.Tensor:
    """Signal (B, F * hop) and per-frame magnitude responses (B, N, F) -> (B, F * hop) filtered signal.

    The signal is taken to the STFT domain (n_fft = 2 (N - 1), Hann window of n_fft, the given
    hop, frame f centred on sample f * hop), each frame's bins are scaled by its magnitudes (zero
    phase), and the result is resynthesised by overlap-add (n_fft >= 2 hop, so that the windows
    overlap). Magnitudes of 1 return the signal unchanged.
    """
    batch, bins, frames = magnitudes.shape
    n_fft = 2 * (bins - 1)
    if n_fft < 2 * hop:
        raise ValueError(f"STFT filter needs n_fft = 2 (N - 1) >= 2 x hop {hop} (overlap-add), got {bins} bins")
    length = frames * hop
    if signal.shape != (batch, length):
        raise ValueError(f"signal must have shape ({batch}, {length}), got {tuple(signal.shape)}")
    window = torch.hann_window(n_fft, device=magnitudes.device)
    spec = torch.stft(signal.float(), n_fft, hop, n_fft, window, pad_mode="constant", return_complex=True)
    mags = torch.cat([magnitudes, magnitudes[:, :, -1:]], dim=-1)[:, :, : spec.shape[-1]].float()  # (B, N, F + 1)
    return torch.istft(spec * mags, n_fft, hop, n_fft, window, length=length)


def filtered_noise(magnitudes: torch.Tensor, hop: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise-filter magnitudes (B, N, F) per frame -> (B, F * hop) white noise through `stft_filter`."""
    batch, _, frames = magnitudes.shape
    noise = torch.rand(batch, frames * hop, generator=generator, device=magnitudes.device) * 2 - 1
    return stft_filter(noise, magnitudes, hop)


class HarmonicNoiseHead(nn.Module):
    """Frame features (B, C, F) -> harmonic amplitudes (B, K, F) and noise magnitudes (B, N, F).

    The amplitudes are an overall loudness times a distribution over the K harmonics (softmax),
    as in DDSP; both parts and the noise magnitudes come out of `exp_sigmoid`.

    Args:
        in_channels: C.
        channels: width of the hidden convolutions (kernel 3, frame rate).
        harmonics: K.
        noise_bins: N (n_fft = 2 (N - 1) of the noise filter).
        layers: hidden convolutions.
    """

    def __init__(self, in_channels: int, channels: int = 64, harmonics: int = 64, noise_bins: int = 65,
                 layers: int = 2) -> None:
        super().__init__()
        if harmonics < 1 or noise_bins < 2 or layers < 1:
            raise ValueError(f"harmonic-noise head needs harmonics >= 1, noise_bins >= 2, layers >= 1; got "
                             f"{harmonics}, {noise_bins}, {layers}")
        self.harmonics = int(harmonics)
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*blocks)
        self.out = nn.Conv1d(channels, 1 + harmonics + noise_bins, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(self.body(features))
        loudness = exp_sigmoid(out[:, :1])
        distribution = torch.softmax(out[:, 1: 1 + self.harmonics], dim=1)
        return loudness * distribution, exp_sigmoid(out[:, 1 + self.harmonics:])
