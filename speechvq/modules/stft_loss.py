"""Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN; Wang et al. 2019, NSF).

For each (FFT size, hop, window) resolution: spectral convergence ||S_y - S_x||_F / ||S_y||_F
plus the mean absolute difference of log magnitudes; the loss is the mean over resolutions.
It is 0 for identical signals and positive otherwise, and it ignores phase, which is what lets
a non-autoregressive decoder be trained on it. `LogMelLoss` is the L1 distance of log-mel
spectrograms (HiFi-GAN's reconstruction term, Kong et al. 2020): it weighs the bands below
4 kHz, where the formants are, as the ear and the speaker encoders do.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

#: (n_fft, hop_length, win_length) at 16 kHz: 32, 64 and 128 ms windows.
DEFAULT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))


class MultiResolutionSTFTLoss(nn.Module):
    """(B, T) estimate and (B, T) target waveforms -> scalar loss (and its two parts).

    Args:
        resolutions: (n_fft, hop_length, win_length) triples; Hann windows.
        eps: magnitude floor before the logarithm.
    """

    def __init__(self, resolutions=DEFAULT_RESOLUTIONS, eps: float = 1e-5) -> None:
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.eps = float(eps)
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def _magnitude(self, x: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(x.float(), n_fft, hop, win, getattr(self, f"window{i}"), return_complex=True)
        return spec.abs().clamp(min=self.eps)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (spectral convergence, log-magnitude L1), each averaged over the resolutions."""
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
        convergence = estimate.new_zeros((), dtype=torch.float32)
        log_l1 = estimate.new_zeros((), dtype=torch.float32)
        for i in range(len(self.resolutions)):
            est, ref = self._magnitude(estimate, i), self._magnitude(target, i)
            convergence = convergence + torch.linalg.norm(ref - est) / torch.linalg.norm(ref)
            log_l1 = log_l1 + (ref.log() - est.log()).abs().mean()
        n = len(self.resolutions)
        return convergence / n, log_l1 / n


class LogMelLoss(nn.Module):
    """(B, T) estimate and (B, T) target waveforms -> mean |log mel(estimate) - log mel(target)|.

    `average` compares instead each item's long-term average spectrum, the mel magnitudes
    averaged over the frames: the speaker's timbre and the recording's tilt, whatever the
    phones.

    Args:
        sample_rate: hertz.
        n_fft, hop_length: of the STFT (Hann window of n_fft).
        n_mels: mel bands from 0 Hz to the Nyquist frequency.
        eps: floor of the mel energies before the logarithm.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.eps = int(n_fft), int(hop_length), float(eps)
        # non-persistent: a loss is not part of a checkpoint
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("filterbank", torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate), persistent=False)  # (bins, mels)

    def magnitudes(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T), T > n_fft / 2 -> (B, frames, mels) mel magnitudes, floored at eps (centred frames)."""
        spec = torch.stft(x.float(), self.n_fft, self.hop_length, self.n_fft, self.window, return_complex=True)
        return (spec.abs().transpose(1, 2) @ self.filterbank).clamp(min=self.eps)

    @staticmethod
    def _check(estimate: torch.Tensor, target: torch.Tensor) -> None:
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(estimate, target)
        return (self.magnitudes(estimate).log() - self.magnitudes(target).log()).abs().mean()

    def average(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over items and bands of |log mean_frames mel(estimate) - log mean_frames mel(target)|."""
        self._check(estimate, target)
        return (self.magnitudes(estimate).mean(1).log() - self.magnitudes(target).mean(1).log()).abs().mean()
