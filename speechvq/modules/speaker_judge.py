"""A speaker classifier on the log-mel of a waveform, and the contour of a conversion in training.

The source-filter decoder renders a voice from a speaker embedding, but the STFT loss only ever
sees an utterance rendered with its own speaker's embedding: nothing asks a conversion (codes of
one speaker, embedding of another) to sound like its target. `SpeakerJudge` is a small
x-vector-like classifier of the training speakers (Snyder et al. 2018, at CPU width) that
learns on real recordings; the decoder asks it, through frozen parameters, to name the target
speaker in its conversions and the own speaker in its reconstructions (StarGAN-VC's domain
classification loss, Kameoka et al. 2018; YourTTS's speaker consistency loss with a judge
trained on the corpus itself instead of a pretrained one)::

    wav (B, T) --log-mel (n_mels, 32 ms Hann, 10 ms hop)--> (B, M, frames)
      --3 convolutions (kernel 5, dilations 1, 2, 3), leaky ReLU--> (B, C, frames)
      --mean and standard deviation over time--> (B, 2C) --linear--> (B, num_speakers) logits

`centre_log_f0` gives the contour a conversion is rendered with: each item's voiced log-F0
moved so that its mean is the target speaker's (as `speechvq convert --f0-mapping utterance`).
"""

from __future__ import annotations

import torch
from torch import nn

from speechvq.modules.mel_head import LOG_MEL_CENTER, LOG_MEL_SCALE
from speechvq.modules.stft_loss import LogMelLoss

SLOPE = 0.1  # leaky ReLU slope


class SpeakerJudge(nn.Module):
    """(B, T) waveform -> (B, num_speakers) speaker logits.

    Args:
        num_speakers: classes.
        channels: C, width of the convolutions.
        n_mels: M, mel bands from 0 Hz to the Nyquist frequency.
        sample_rate: hertz.
        n_fft: Hann window and FFT size in samples (512: 32 ms at 16 kHz).
        hop_length: samples between frames (160: 10 ms).
    """

    def __init__(self, num_speakers: int, channels: int = 128, n_mels: int = 40, sample_rate: int = 16000,
                 n_fft: int = 512, hop_length: int = 160) -> None:
        super().__init__()
        if num_speakers < 1 or channels < 1 or n_mels < 1:
            raise ValueError(f"a speaker judge needs num_speakers, channels and n_mels >= 1, "
                             f"got {num_speakers}, {channels}, {n_mels}")
        self.front_end = LogMelLoss(sample_rate, n_fft, hop_length, n_mels)  # its mel magnitudes
        layers: list[nn.Module] = []
        width = n_mels
        for dilation in (1, 2, 3):
            layers += [nn.Conv1d(width, channels, 5, padding=2 * dilation, dilation=dilation), nn.LeakyReLU(SLOPE)]
            width = channels
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(2 * channels, num_speakers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float, T > n_fft / 2 -> logits (B, num_speakers)."""
        mel = self.front_end.magnitudes(wav).log()  # (B, frames, M)
        h = self.convs(((mel - LOG_MEL_CENTER) / LOG_MEL_SCALE).transpose(1, 2))  # (B, C, frames)
        pooled = torch.cat([h.mean(-1), (h.var(-1, unbiased=False) + 1e-5).sqrt()], dim=1)
        return self.out(pooled)


def centre_log_f0(f0: torch.Tensor, log_mean: torch.Tensor) -> torch.Tensor:
    """F0 (B, F) hertz, 0 = unvoiced; target mean log-F0 (B,) log-hertz -> (B, F) hertz.

    Each item's voiced frames are multiplied by one factor so that their mean log-F0 becomes
    `log_mean`; unvoiced frames stay 0, and an item without voiced frames is unchanged.
    """
    voiced = f0 > 0
    log_f0 = f0.clamp(min=1e-3).log()
    count = voiced.sum(-1)
    mean = (log_f0 * voiced).sum(-1) / count.clamp(min=1)
    shift = torch.where(count > 0, log_mean - mean, torch.zeros_like(mean))
    return torch.where(voiced, (log_f0 + shift[:, None]).exp(), torch.zeros_like(f0))
