"""WaveNet stack (teacher-forced), the conditional stack of the decoders.

`WaveNet`: dilated convolutions (causal kernel 2 for the autoregressive decoder, non-causal odd
kernels for the source-filter decoder), gated tanh·sigmoid units, residual and skip 1x1
convolutions, a skip sum scaled by 1/sqrt(layers), a residual stream scaled by sqrt(0.5) per
layer, and an output head (ReLU, 1x1, ReLU, 1x1). Conditioning is added inside every gate: local
conditioning arrives at frame rate (one vector per `hop` samples, nearest-neighbour upsampled)
and global conditioning once per sequence; the per-layer 1x1 projections of both are one matrix
for all layers. Its cached step-by-step evaluation is `speechvq.modules.wavenet_stepper`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WaveNet(nn.Module):
    """Conditional WaveNet: (B, R, T) input embedding -> (B, out_channels, T) output parameters.

    Args:
        residual_channels: R, channels of the residual stream (the input embedding's width).
        gate_channels: G, output channels of each dilated convolution; split in two halves for
            tanh and sigmoid, so the gated unit has G/2 channels. Must be even.
        skip_channels: S, channels of the skip connections and of the output head.
        out_channels: C, number of output parameters per sample (the output distribution's).
        layers: number of layers L; dilations 1, 2, ..., 2**(L/stacks - 1), repeated per stack.
        stacks: number of dilation cycles; must divide `layers`.
        local_channels: channels of the frame-rate local conditioning.
        global_channels: channels of the per-sequence global conditioning (0: none).
        residual_scale: factor applied to the residual stream after each layer (sqrt(0.5)).
        kernel_size: width of the dilated convolutions; 2 for the causal stack (the steppers'
            layout), odd for a non-causal one.
        causal: output t sees inputs <= t only (padding on the left); False centres the
            kernel ("same" padding), for inputs known ahead such as an excitation signal.
    """

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        out_channels: int,
        layers: int,
        stacks: int,
        local_channels: int,
        global_channels: int = 0,
        residual_scale: float = math.sqrt(0.5),
        kernel_size: int = 2,
        causal: bool = True,
    ) -> None:
        super().__init__()
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"a non-causal WaveNet needs an odd kernel_size, got {kernel_size}")
        if layers < 1 or stacks < 1 or layers % stacks:
            raise ValueError(f"layers ({layers}) must be a positive multiple of stacks ({stacks})")
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even, got {gate_channels}")
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.out_channels = out_channels
        self.layers = layers
        self.local_channels = local_channels
        self.global_channels = global_channels
        self.residual_scale = float(residual_scale)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        per_stack = layers // stacks
        self.dilations = [2 ** (i % per_stack) for i in range(layers)]
        half = gate_channels // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(residual_channels, gate_channels, kernel_size, dilation=d) for d in self.dilations
        )
        self.local_proj = nn.Conv1d(local_channels, layers * gate_channels, 1, bias=False)
        self.global_proj = (
            nn.Linear(global_channels, layers * gate_channels, bias=False) if global_channels > 0 else None
        )
        # The last layer's residual output would be unused: it has only a skip 1x1.
        self.res = nn.ModuleList(nn.Conv1d(half, residual_channels, 1, bias=False) for _ in range(layers - 1))
        self.skip = nn.ModuleList(nn.Conv1d(half, skip_channels, 1, bias=False) for _ in range(layers))
        self.skip_bias = nn.Parameter(torch.zeros(skip_channels))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(), nn.Conv1d(skip_channels, out_channels, 1)
        )

    @property
    def receptive_field(self) -> int:
        """Number of input samples (including the current one) that an output depends on."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1

    def frame_conditioning(self, local: torch.Tensor, global_: torch.Tensor | None) -> torch.Tensor:
        """local (B, Cl, F), global_ (B, Cg) or None -> per-layer gate conditioning (B, L*G, F)."""
        cond = self.local_proj(local)
        if self.global_proj is not None:
            if global_ is None:
                raise ValueError("this WaveNet has global conditioning: global_ (B, Cg) is required")
            cond = cond + self.global_proj(global_).unsqueeze(-1)
        return cond

    def forward(self, x: torch.Tensor, local: torch.Tensor, global_: torch.Tensor | None, hop: int) -> torch.Tensor:
        """Teacher-forced pass.

        Args:
            x: (B, R, T) input; output t depends on x[..., :t+1] only when causal.
            local: (B, Cl, F) frame-rate conditioning, F * hop >= T; sample t uses frame t // hop.
            global_: (B, Cg) per-sequence conditioning, or None without global conditioning.
            hop: samples per conditioning frame.
        Returns:
            (B, out_channels, T) output parameters.
        """
        batch, _, length = x.shape
        frames = local.shape[-1]
        if frames * hop < length:
            raise ValueError(f"local conditioning has {frames} frames of {hop} samples, fewer than {length} samples")
        padded = frames * hop
        x = F.pad(x, (0, padded - length))  # causal: padding at the end changes no earlier output
        cond = self.frame_conditioning(local, global_).unsqueeze(-1)  # (B, L*G, F, 1): upsampled by broadcasting
        g = self.gate_channels
        skips = x.new_zeros(batch, self.skip_channels, padded)
        for i, d in enumerate(self.dilations):
            span = d * (self.kernel_size - 1)
            h = self.convs[i](F.pad(x, (span, 0) if self.causal else (span // 2, span - span // 2)))
            h = (h.view(batch, g, frames, hop) + cond[:, i * g:(i + 1) * g]).view(batch, g, padded)
            a, b = h.chunk(2, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
            skips = skips + self.skip[i](z)
            if i < self.layers - 1:
                x = (x + self.res[i](z)) * self.residual_scale
        skips = skips * (1.0 / math.sqrt(self.layers)) + self.skip_bias.unsqueeze(-1)
        return self.output_head(skips)[..., :length]

    def output_head(self, skips: torch.Tensor) -> torch.Tensor:
        """The output head (ReLU, 1x1, ReLU, 1x1) on the skip sum (B, S, T), always in float32.

        Under bf16 autocast the head would produce bf16 parameters: mixture means near ±1 in steps
        of 2**-8, coarser than the smallest logistic scale (exp(-7)), and μ-law logits rounded to
        3 significant digits. The head is small, so it runs with autocast off on float inputs.
        """
        with torch.autocast(device_type=skips.device.type, enabled=False):
            return self.head(skips.float())
