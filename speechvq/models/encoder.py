"""The VQ-VAE encoder: raw 16 kHz waveform -> continuous latents z_e, one D-vector per 64 samples.

Layout (van den Oord et al. 2017, audio section)::

    wav (B, T) --right-pad with zeros to T' = 64 * ceil(T / 64)--> (B, 1, T')
      -> 6 x [Conv1d(kernel 4, stride 2, padding 1) -> ReLU]      (B, C, T' / 64)
      [-> instance normalisation over time, per utterance and channel (option)]
      -> residual blocks (ReLU, 3-conv, ReLU, 1x1) -> ReLU          (B, C, T' / 64)
      -> Conv1d 1x1 to D                                            (B, D, T' / 64)

Output length. A Conv1d with kernel 4, stride 2 and padding 1 maps L inputs to
floor((L + 2 - 4) / 2) + 1 = floor(L / 2) outputs, i.e. exactly L / 2 for even L. The input
is therefore zero-padded at the end to a multiple of 64 = 2**6 samples, after which every
layer halves the length exactly: n samples give ``ceil(n / 64)`` frames for every n >= 1.
Frame i's receptive-field centre is sample 64 i + 31.5, the middle of the 64 samples
[64 i, 64 i + 64) it stands for. The zero padding only affects the last frame.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from speechvq.errors import SpeechVQError
from speechvq.modules.conv import ResStack1d


class Encoder(nn.Module):
    """Raw waveform (B, T) in [-1, 1] -> z_e (B, dim, ceil(T / hop_length)), hop_length = 2**num_downsamples.

    Args:
        channels: C, channels of the strided convolutions and the residual stack.
        dim: D, dimension of each latent vector (the codebook dimension).
        num_downsamples: number of stride-2 convolutions (6 -> 64 samples per frame, 250 frames/s at 16 kHz).
        num_res_blocks: residual blocks after the downsampling.
        res_channels: hidden channels inside each residual block (default: C).
        instance_norm: normalise each channel of the downsampled features to zero mean and unit
            variance over the utterance (no affine parameters), removing per-utterance channel
            statistics such as the speaker's average spectrum (a speaker-free-units lever).
    """

    def __init__(
        self,
        channels: int = 128,
        dim: int = 64,
        num_downsamples: int = 6,
        num_res_blocks: int = 2,
        res_channels: int | None = None,
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        res_channels = channels if res_channels is None else res_channels
        for name, value, minimum in (
            ("channels", channels, 1),
            ("dim", dim, 1),
            ("num_downsamples", num_downsamples, 1),
            ("num_res_blocks", num_res_blocks, 0),
            ("res_channels", res_channels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise SpeechVQError(f"encoder {name}={value!r}: must be an integer >= {minimum}")
        self.dim = dim
        self.hop_length = 2**num_downsamples
        layers: list[nn.Module] = []
        in_channels = 1
        for _ in range(num_downsamples):
            layers += [nn.Conv1d(in_channels, channels, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            in_channels = channels
        self.downsample = nn.Sequential(*layers)
        self.instance_norm = bool(instance_norm)
        self.res_stack = ResStack1d(channels, res_channels, num_res_blocks)
        self.proj = nn.Conv1d(channels, dim, 1)

    def output_length(self, num_samples: int) -> int:
        """Frames produced for `num_samples` input samples: ceil(num_samples / hop_length)."""
        return -(-int(num_samples) // self.hop_length)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) float waveform, T >= 1 -> z_e (B, D, ceil(T / hop_length)) float."""
        if wav.dim() != 2 or wav.shape[1] < 1:
            raise ValueError(f"Encoder expects a (B, T) waveform with T >= 1, got shape {tuple(wav.shape)}")
        num_samples = wav.shape[1]
        pad = self.output_length(num_samples) * self.hop_length - num_samples
        x = F.pad(wav.unsqueeze(1), (0, pad))
        h = self.downsample(x)
        if self.instance_norm:
            h = _instance_norm(h)
        return self.proj(self.res_stack(h))


def _instance_norm(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, C, F) -> each (utterance, channel) row standardised over its F frames (one frame: zeros)."""
    mean = h.mean(dim=-1, keepdim=True)
    var = h.var(dim=-1, keepdim=True, unbiased=False)
    return (h - mean) * torch.rsqrt(var + eps)
