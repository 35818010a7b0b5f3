"""Config-free levers that push speaker information out of the units.

- `time_jitter` (Chorowski et al. 2019): each frame of the quantised sequence is replaced,
  with probability p, by its left or right neighbour, so the decoder cannot rely on the exact
  position of a code and the codes must describe slowly varying content.
- `grad_reverse` (Ganin and Lempitsky 2015): identity forward, gradient multiplied by -scale
  backward; a speaker classifier on top of it trains the encoder to hide the speaker.
- `SpeakerClassifier`: the small classifier used with it (per-frame 1x1 convolutions,
  averaged over time).
"""

from __future__ import annotations

import torch
from torch import nn


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
