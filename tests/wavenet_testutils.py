"""Shared by the decoder, WaveNet and generation tests: a tiny Decoder factory."""

import torch

from speechvq.models.decoder import Decoder

HOP = 4  # samples per conditioning frame in the tiny models (the real model uses 64)
CODE_DIM = 6
NUM_SPEAKERS = 3


def tiny_decoder(output: str = "mulaw", seed: int = 0, head_gain: float = 1.0) -> Decoder:
    """A 2x4-layer Decoder in eval mode: codes (B, 6, ceil(T/4)), 3 speakers, `output` "mulaw" or "mol" (3 mixtures).

    `head_gain` multiplies the last output layer's weights: > 1 sharpens the distributions, so that sampled
    audio depends visibly on the conditioning.
    """
    torch.manual_seed(seed)
    dec = Decoder(code_dim=CODE_DIM, num_speakers=NUM_SPEAKERS, speaker_dim=5, cond_channels=7, residual_channels=8,
                  gate_channels=12, skip_channels=10, layers=4, stacks=2, output=output, mixtures=3,
                  hop_length=HOP).eval()
    if head_gain != 1.0:
        with torch.no_grad():
            dec.wavenet.head[3].weight.mul_(head_gain)
    return dec
