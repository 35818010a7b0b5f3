"""A frame-rate acoustic model: codes, speaker and F0 -> the log-mel envelope of each code frame.

The unit vocoder otherwise learns the spectral envelope only through the waveform's STFT loss,
and renders about what a linear readout of the codes gives. This head is told the envelope
directly, as the acoustic model of a unit-to-speech system is (FastSpeech 2's variance adaptor
takes the pitch the same way): it is trained with an L1 loss against the target's log-mel at the
code rate, and its prediction conditions the WaveNet::

    (cond stack (B, C, F), speaker (B, S), log F0 and voicing (B, 2, F))
      --5-wide conv, dilated residual blocks (dilations 1, 2, 4, 8: +-31 frames)--> (B, M, F)

`FrameLogMel` computes the target: M mel bands (0 Hz to Nyquist) of a 512-sample Hann STFT
centred on each code frame, natural log, normalised as ``(log mel + 5) / 4`` so that speech
spans about [-1.5, 1.5].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from speechvq.modules.conv import ResBlock1d

#: log-mel normalisation: (log mel - LOG_MEL_CENTER) / LOG_MEL_SCALE.
LOG_MEL_CENTER, LOG_MEL_SCALE = -5.0, 4.0
#: log F0 input of the head: log(hertz) - LOG_F0_CENTER (log 148 Hz), 0 where unvoiced.
LOG_F0_CENTER = 5.0


class FrameLogMel(nn.Module):
    """(B, T) waveform -> (B, M, ceil(T / hop)) normalised log-mel, frame i centred on sample hop i + hop / 2.

    Args:
        sample_rate: hertz.
        hop_length: samples per frame (the code hop, 64).
        n_mels: M, mel bands from 0 Hz to the Nyquist frequency.
        n_fft: Hann window and FFT size.
        eps: floor of the mel energies before the logarithm.
    """

    def __init__(self, sample_rate: int = 16000, hop_length: int = 64, n_mels: int = 64, n_fft: int = 512,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if n_fft < hop_length or n_mels < 1:
            raise ValueError(
                f"FrameLogMel needs n_fft >= hop_length and n_mels >= 1, got {n_fft}, {hop_length}, {n_mels}")
        self.hop_length, self.n_fft, self.eps = int(hop_length), int(n_fft), float(eps)
        # non-persistent: derived from the arguments, not part of a checkpoint
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("filterbank", torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate), persistent=False)  # (bins, mels)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = math.ceil(wav.shape[-1] / self.hop_length)
        x = F.pad(wav.float(), (0, frames * self.hop_length - wav.shape[-1]))
        edge = (self.n_fft - self.hop_length) // 2
        x = F.pad(x, (edge, self.n_fft - self.hop_length - edge))
        spec = torch.stft(x, self.n_fft, self.hop_length, self.n_fft, self.window, center=False,
                          return_complex=True)  # (B, bins, frames)
        mel = (spec.abs().transpose(1, 2) @ self.filterbank).clamp(min=self.eps).log()
        return ((mel - LOG_MEL_CENTER) / LOG_MEL_SCALE).transpose(1, 2)


class MelHead(nn.Module):
    """Frame features (B, C, F), speaker embedding (B, S) and F0 (B, F) hertz -> (B, M, F) normalised log-mel.

    Args:
        in_channels: C.
        speaker_dim: S.
        channels: width of the hidden convolutions.
        n_mels: M.
        dilations: of the residual blocks (5-wide convolutions); the context is +-(2 + 2 sum) frames.
    """

    def __init__(self, in_channels: int, speaker_dim: int, channels: int, n_mels: int,
                 dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.inp = nn.Conv1d(in_channels + speaker_dim + 2, channels, 5, padding=2)
        scale = 1.0 / math.sqrt(len(dilations))
        self.blocks = nn.ModuleList(ResBlock1d(channels, channels, 5, d, init_scale=scale) for d in dilations)
        self.out = nn.Conv1d(channels, n_mels, 1)

    def forward(self, features: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        voiced = f0 > 0
        log_f0 = torch.where(voiced, f0.clamp(min=1.0).log() - LOG_F0_CENTER, torch.zeros_like(f0))
        x = torch.cat([features, speaker[:, :, None].expand(-1, -1, features.shape[-1]),
                       log_f0[:, None].to(features.dtype), voiced[:, None].to(features.dtype)], dim=1)
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.out(torch.relu(x))
