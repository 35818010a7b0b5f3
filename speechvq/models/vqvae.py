"""The assembled VQ-VAE: encoder -> vector quantizer -> speaker-conditioned WaveNet decoder.

Shapes (B batch, T samples at 16 kHz, F = ceil(T / 64) frames at 250 per second, D code dimension)::

    wav (B, T) float in [-1, 1] --encoder--> z_e (B, D, F) --quantizer--> codes (B, F) int64, z_q (B, D, F)
    (wav, z_q, speaker (B,) int64) --decoder, teacher-forced--> nll (B, T) nats per sample

Training minimises ``nll.mean() + vq.loss`` (reconstruction under a uniform prior over
codes, plus the quantizer's codebook/commitment terms). Speakers are embedding indices
here; their names are stored in checkpoints (`speechvq.models.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechvq.quantization.vq import VQResult


@dataclass
class VQVAEOutput:
    """Result of `VQVAE.forward`.

    Attributes:
        nll: (B, T) float, negative log-likelihood of each target sample in nats.
        vq: the quantizer's result (codes (B, F), straight-through z_q (B, D, F), losses, perplexity).
        loss: scalar, ``nll.mean() + vq.loss``: what training minimises.
    """

    nll: torch.Tensor
    vq: VQResult
    loss: torch.Tensor


class VQVAE(nn.Module):
    """Encoder, quantizer and decoder, given as built modules (see `speechvq.models.builders`).

    Args:
        encoder: wav (B, T) -> z_e (B, D, ceil(T / hop_length)); has ``hop_length``.
        quantizer: z_e (B, D, F) -> `VQResult`; has ``num_codes``, ``dim`` and ``lookup(codes)``.
        decoder: ``nll(wav (B, T), z_q (B, D, F), speaker (B,)) -> (B, T)`` nats.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder

    @property
    def hop_length(self) -> int:
        """Samples per code (64: 250 codes per second at 16 kHz)."""
        return int(self.encoder.hop_length)

    @property
    def num_codes(self) -> int:
        """K, the codebook size."""
        return int(self.quantizer.num_codes)

    def forward(self, wav: torch.Tensor, speaker: torch.Tensor) -> VQVAEOutput:
        """wav (B, T) float in [-1, 1], speaker (B,) int64 -> `VQVAEOutput` (teacher-forced).

        In training mode the quantizer also updates its codebook statistics (EMA, dead-code restarts).
        """
        vq = self.quantizer(self.encoder(wav))
        nll = self.decoder.nll(wav, vq.quantized, speaker)
        return VQVAEOutput(nll=nll, vq=vq, loss=nll.mean() + vq.loss)

    def encode_continuous(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float -> z_e (B, D, ceil(T / 64)), the encoder output before quantization."""
        return self.encoder(wav)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float -> codes (B, ceil(T / 64)) int64 in [0, K), 250 per second.

        Side-effect free: the quantizer runs in eval mode (no EMA updates, no restarts).
        """
        was_training = self.quantizer.training
        self.quantizer.eval()
        try:
            return self.quantizer(self.encoder(wav)).codes
        finally:
            self.quantizer.train(was_training)

    def quantized(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, F) int64 -> z_q (B, D, F) float, the code vectors the decoder is conditioned on."""
        return self.quantizer.lookup(codes)
