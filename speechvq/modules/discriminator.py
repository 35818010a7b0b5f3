"""Waveform discriminators and the least-squares GAN terms of HiFi-GAN (Kong et al. 2020).

`MultiDiscriminator` holds a multi-period discriminator (each period p folds the waveform into a
(T / p, p) image and judges it with (5, 1) convolutions, so it sees the periodic structure that
a buzzy excitation gets wrong) and a multi-scale discriminator (grouped 1-D convolutions on the
waveform and its 2x and 4x average-pooled versions). HiFi-GAN's layout at CPU widths: the
period judges grow 1, 2, 4, 8 x ``channels`` (HiFi-GAN: 32 to 1024 channels), the scale judges
1 to 8 x ``channels`` (HiFi-GAN: 128 to 1024)::

    wav (B, 1, T) --> [(logits (B, N_i), [feature maps]) for each of the len(periods) + scales judges]

The terms (least squares, Mao et al. 2017, as HiFi-GAN)::

    discriminator:    sum_i mean((D_i(real) - 1)^2) + mean(D_i(fake)^2)
    adversarial:      sum_i mean((D_i(fake) - 1)^2)
    feature matching: sum_i sum_l mean |f_il(real) - f_il(fake)|

`judge_frozen` runs a discriminator with its parameters detached, so the generator's terms send
gradients to the generator only; with it, one backward pass trains both sides (the
discriminator's term on a detached fake, the generator's terms through frozen judges).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Judgement = list[tuple[torch.Tensor, list[torch.Tensor]]]
"""Per judge: (logits (B, N) over its output positions, its hidden feature maps)."""

SLOPE = 0.1  # leaky ReLU slope of HiFi-GAN's discriminators


def _judge(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU convolutions, then the output convolution: (logits (B, N), every layer's output)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """One period p: (B, 1, T) -> reflect-padded to a multiple of p, folded to (B, 1, T / p, p), 2-D convs."""

    def __init__(self, period: int, channels: int = 16) -> None:
        super().__init__()
        if period < 1 or channels < 1:
            raise ValueError(f"period and channels must be >= 1, got {period}, {channels}")
        self.period = int(period)
        widths = [1, channels, 2 * channels, 4 * channels, 8 * channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)) for a, b in zip(widths[:-1], widths[1:])
        )
        self.convs.append(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0)))
        self.post = nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, _, length = wav.shape
        pad = (-length) % self.period
        if pad:
            wav = F.pad(wav, (0, pad), mode="reflect" if pad < length else "constant")
        return _judge(self.convs, self.post, wav.view(batch, 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """(B, 1, T) -> grouped strided 1-D convolutions (HiFi-GAN's / MelGAN's scale discriminator)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        c = channels
        # (in, out, kernel, stride, groups): HiFi-GAN's layout with every width divided by 128 / c
        layout = [(1, c, 15, 1, 1), (c, c, 41, 2, 4), (c, 2 * c, 41, 2, 4), (2 * c, 4 * c, 41, 4, 4),
                  (4 * c, 8 * c, 41, 4, 4), (8 * c, 8 * c, 41, 1, 4), (8 * c, 8 * c, 5, 1, 1)]
        for a, b, _, _, groups in layout:
            if a % groups or b % groups:
                raise ValueError(f"channels={channels}: must be a multiple of 4")
        self.convs = nn.ModuleList(nn.Conv1d(a, b, k, s, padding=k // 2, groups=g) for a, b, k, s, g in layout)
        self.post = nn.Conv1d(8 * c, 1, 3, 1, padding=1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _judge(self.convs, self.post, wav)


class MultiDiscriminator(nn.Module):
    """Multi-period (``periods``) and multi-scale (``scales``: the waveform, then each 2x average-pooling).

    Args:
        channels: base width of every judge (a multiple of 4: the scale judges' groups).
        periods: folding periods in samples (HiFi-GAN: 2, 3, 5, 7, 11).
        scales: number of scale judges (HiFi-GAN: 3).
    """

    def __init__(self, channels: int = 16, periods: tuple[int, ...] = (2, 3, 5, 7, 11), scales: int = 3) -> None:
        super().__init__()
        if scales < 0 or (scales == 0 and not periods):
            raise ValueError(f"a discriminator needs periods or scales >= 1, got {periods}, {scales}")
        self.periods = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)
        self.scales = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))

    def forward(self, wav: torch.Tensor) -> Judgement:
        """wav (B, 1, T) float -> one (logits, features) per judge."""
        out = [judge(wav) for judge in self.periods]
        x = wav
        for i, judge in enumerate(self.scales):
            if i:
                x = F.avg_pool1d(x, 4, 2, padding=2)
            out.append(judge(x))
        return out


def judge_frozen(judge: nn.Module, wav: torch.Tensor):
    """`judge(wav)` with its parameters detached: gradients reach `wav`, never the judge.

    Returns what `judge` returns (a `Judgement` for a `MultiDiscriminator`).
    """
    params = {name: p.detach() for name, p in judge.named_parameters()}
    return functional_call(judge, params, (wav,))


def discriminator_loss(real: Judgement, fake: Judgement) -> torch.Tensor:
    """Least-squares discriminator term: real judged 1, fake judged 0 (summed over judges)."""
    return sum((r - 1).pow(2).mean() + f.pow(2).mean() for (r, _), (f, _) in zip(real, fake))


def adversarial_loss(fake: Judgement) -> torch.Tensor:
    """Least-squares generator term: fake judged 1 (summed over judges)."""
    return sum((f - 1).pow(2).mean() for f, _ in fake)


def feature_matching_loss(real: Judgement, fake: Judgement) -> torch.Tensor:
    """L1 distance of the judges' hidden features, real (detached) against fake, summed over layers and judges."""
    return sum((r.detach() - f).abs().mean() for (_, rs), (_, fs) in zip(real, fake) for r, f in zip(rs, fs))
