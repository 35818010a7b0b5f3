"""Config-free levers that push speaker information out of the units.

- `time_jitter` (Chorowski et al. 2019): each frame of the quantised sequence is replaced,
  with probability p, by its left or right neighbour, so the decoder cannot rely on the exact
  position of a code and the codes must describe slowly varying content.
- `grad_reverse` (Ganin and Lempitsky 2015): identity forward, gradient multiplied by -scale
  backward; a speaker classifier on top of it trains the encoder to hide the speaker.
- `SpeakerClassifier`: the small classifier used with it (per-frame 1x1 convolutions,
  averaged over time).
- `shift_voice` / `random_voice_shift` (speaker perturbation, as in Choi et al. 2021, NANSY):
  the encoder hears its input with pitch and formants scaled by a random factor while the
  decoder reconstructs the original, so the decoder learns to take the voice from the speaker
  embedding instead of from what the units still carry of it.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF
from torch import nn

SHIFT_STEPS = 32  # voice-shift factors are multiples of 1/SHIFT_STEPS (cheap rational resampling)


def time_jitter(x: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, F) frame sequence -> (B, C, F): each frame copied from a neighbour with `probability`.

    A jittered frame takes its left or right neighbour with equal chance (clamped at the
    edges); the choice is made on the input, so a frame is never moved more than one step.
    """
    if probability <= 0.0 or x.shape[-1] < 2:
        return x
    batch, _, frames = x.shape
    index = torch.arange(frames, device=x.device).expand(batch, frames)
    jitter = torch.rand(batch, frames, generator=generator, device=x.device) < probability
    direction = torch.where(torch.rand(batch, frames, generator=generator, device=x.device) < 0.5, -1, 1)
    source = (index + jitter * direction).clamp(0, frames - 1)
    return torch.gather(x, -1, source[:, None].expand_as(x))


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity on `x`; its gradient is multiplied by -`scale`."""
    return _GradReverse.apply(x, float(scale))


class SpeakerClassifier(nn.Module):
    """(B, D, F) latent frames -> (B, num_speakers) logits, from the time average of a per-frame MLP."""

    def __init__(self, dim: int, num_speakers: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, hidden, 1), nn.ReLU())
        self.out = nn.Linear(hidden, num_speakers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z).mean(dim=-1))


def shift_voice(wav: torch.Tensor, numerator: int, denominator: int, n_fft: int = 512) -> torch.Tensor:
    """(B, T) audio -> (B, T): pitch and formants scaled by numerator / denominator, same duration.

    A phase-vocoder time stretch by that factor followed by resampling back to T samples
    (the two steps of `torchaudio.functional.pitch_shift`, with a small rational ratio so the
    resampling kernel stays small). numerator == denominator returns `wav` unchanged.
    """
    if numerator == denominator:
        return wav
    factor = numerator / denominator
    samples = wav.shape[-1]
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(wav, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1, device=wav.device, dtype=wav.dtype)[:, None]
    stretched = AF.phase_vocoder(spec, 1.0 / factor, advance)
    longer = torch.istft(stretched, n_fft, hop, window=window, length=round(samples * factor))
    shifted = AF.resample(longer, numerator, denominator)
    if shifted.shape[-1] >= samples:
        return shifted[..., :samples]
    return nn.functional.pad(shifted, (0, samples - shifted.shape[-1]))


def random_voice_shift(wav: torch.Tensor, max_shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T) audio -> (B, T): each row's voice shifted by a random factor in [1 - max_shift, 1 + max_shift].

    Factors are drawn uniformly among the multiples of 1/SHIFT_STEPS in that range (1 included);
    rows that draw the same factor are shifted together.
    """
    low = math.ceil(SHIFT_STEPS * (1.0 - max_shift))
    high = math.floor(SHIFT_STEPS * (1.0 + max_shift))
    if max_shift <= 0.0 or high <= low:
        return wav
    numerators = torch.randint(low, high + 1, (wav.shape[0],), generator=generator)
    out = wav.clone()
    for numerator in numerators.unique().tolist():
        rows = (numerators == numerator).nonzero().squeeze(1).to(wav.device)
        out[rows] = shift_voice(wav[rows], int(numerator), SHIFT_STEPS)
    return out
