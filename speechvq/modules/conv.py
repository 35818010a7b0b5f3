"""Config-free 1-D convolution blocks shared by the encoder and the decoder's conditioning stack.

All blocks take and return (B, C, T) float tensors (batch, channels, frames).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ResBlock1d(nn.Module):
    """Residual block of the VQ-VAE encoder: ``x + scale * conv1x1(relu(conv3(relu(x))))``.

    The paper's block (ReLU, 3-wide conv, ReLU, 1x1 conv) with a length-preserving "same"
    padding. For deep stacks the last 1x1's initial weights and bias are multiplied by
    ``init_scale`` (VDVAE: 1/sqrt(number of blocks)), so that the residual stream's
    variance does not grow with depth at initialisation; `ResStack1d` sets it.

    Args:
        channels: C, channels of the residual stream.
        hidden_channels: channels inside the block (the paper's ``res_channels``).
        kernel_size: odd width of the first convolution (3 in the paper).
        dilation: dilation of the first convolution.
        init_scale: factor applied to the last convolution's initial weights and bias.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ResBlock1d kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.conv = nn.Conv1d(
            channels, hidden_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation
        )
        self.proj = nn.Conv1d(hidden_channels, channels, 1)
        with torch.no_grad():
            self.proj.weight.mul_(init_scale)
            self.proj.bias.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        return x + self.proj(torch.relu(self.conv(torch.relu(x))))


class ResStack1d(nn.Module):
    """`num_blocks` `ResBlock1d` in sequence followed by a final ReLU (as in the VQ-VAE paper).

    Each block's last convolution starts scaled by 1/sqrt(num_blocks) (VDVAE).
    With ``num_blocks == 0`` the stack is just the ReLU.

    Args:
        channels: C, channels of the residual stream.
        hidden_channels: channels inside each block.
        num_blocks: number of residual blocks (>= 0).
        kernel_size: width of each block's first convolution (odd).
    """

    def __init__(self, channels: int, hidden_channels: int, num_blocks: int, kernel_size: int = 3) -> None:
        super().__init__()
        if num_blocks < 0:
            raise ValueError(f"ResStack1d num_blocks must be >= 0, got {num_blocks}")
        scale = 1.0 / math.sqrt(num_blocks) if num_blocks > 0 else 1.0
        self.blocks = nn.ModuleList(
            ResBlock1d(channels, hidden_channels, kernel_size, init_scale=scale) for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T), non-negative (ends with a ReLU)."""
        for block in self.blocks:
            x = block(x)
        return torch.relu(x)
