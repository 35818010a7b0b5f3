"""Output distributions of the WaveNet decoder: what the network's last layer parameterises.

Two choices, both with the same small interface so that the decoder and the generator do not
care which one is used:

- `MuLawCategorical`: a 256-way softmax over μ-law bins (the VQ-VAE paper, torchaudio's
  companding in `speechvq.audio.mulaw_encode` / `mulaw_decode`).
- `DiscretizedLogisticMixture`: a mixture of logistics discretised to 16 bits
  (PixelCNN++ / wavenet_vocoder style).

Vocabulary used below:

- *params*: the network output, (B, C, T) for whole sequences or (B, C) for one step, with
  C = `num_params`.
- *symbols*: what the decoder sees as its previous-sample input and what the sampler produces:
  int64 μ-law bins for the categorical, float samples in [-1, 1] for the mixture.
  `encode_input(wav)` turns audio into symbols, `symbols_to_audio` turns them back.
- *noise*: sampling is a deterministic function of `noise_size` uniform numbers per step
  (`sample_symbols(params, noise, ...)`), so that the noise can be drawn ahead of time from a
  seeded `torch.Generator` (reproducible audio, CUDA-graph friendly generation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from speechvq.audio import MULAW_CHANNELS, mulaw_decode, mulaw_encode

NOISE_EPS = 1e-5  # uniform noise is clamped to [eps, 1 - eps] before logarithms


def gumbel_noise(noise: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) variates (same shape) from uniform noise in (0, 1), clamped away from 0 and 1."""
    return -torch.log(-torch.log(noise.clamp(NOISE_EPS, 1.0 - NOISE_EPS)))


class MuLawCategorical:
    """256-way categorical over μ-law bins.

    params: logits (B, 256, T) or (B, 256); symbols: int64 bins in [0, 255].
    Sampling uses the Gumbel-max trick: argmax(logits + T * g) with g ~ Gumbel(0, 1) is a sample
    of softmax(logits / T).
    """

    symbols_are_indices = True

    def __init__(self, channels: int = MULAW_CHANNELS):
        self.channels = int(channels)
        self.num_params = self.channels
        self.noise_size = self.channels

    def encode_input(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float in [-1, 1] -> int64 μ-law bins (B, T)."""
        return mulaw_encode(wav, self.channels)

    def symbols_to_audio(self, symbols: torch.Tensor) -> torch.Tensor:
        """int64 bins (...) -> float32 audio in [-1, 1] (...)."""
        return mulaw_decode(symbols, self.channels)

    def nll(self, params: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """params (B, 256, T) logits, wav (B, T) target audio -> (B, T) negative log-likelihood in nats."""
        return F.cross_entropy(params.float(), self.encode_input(wav), reduction="none")

    def sample_symbols(self, params: torch.Tensor, noise: torch.Tensor, temperature: float = 1.0,
                       argmax: bool = False) -> torch.Tensor:
        """params (B, 256) logits, noise (B, 256) uniform in (0, 1) -> int64 bins (B,)."""
        if argmax or temperature == 0:
            return params.argmax(dim=1)
        return (params.float() + temperature * gumbel_noise(noise)).argmax(dim=1)

    def sample(self, params: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               argmax: bool = False) -> torch.Tensor:
        """params (B, 256) logits -> sampled audio (B,) float32 in [-1, 1]."""
        noise = torch.rand(params.shape[0], self.noise_size, generator=generator, device=params.device)
        return self.symbols_to_audio(self.sample_symbols(params, noise, temperature, argmax))


class DiscretizedLogisticMixture:
    """Mixture of `mixtures` logistics discretised to 2**bits levels in [-1, 1].

    params (B, 3M, T) or (B, 3M): M mixture logits, M means, M log-scales (clamped below at
    `log_scale_min`). Symbols are the float samples themselves. The edge bins -1 and 1 take the
    tails of the distribution, as in PixelCNN++.
    """

    symbols_are_indices = False

    def __init__(self, mixtures: int = 10, bits: int = 16, log_scale_min: float = -7.0):
        if mixtures < 1:
            raise ValueError(f"mixtures must be >= 1, got {mixtures}")
        self.mixtures = int(mixtures)
        self.num_classes = 2 ** int(bits)
        self.log_scale_min = float(log_scale_min)
        self.num_params = 3 * self.mixtures
        self.noise_size = self.mixtures + 1

    def encode_input(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float -> (B, T) float32 clamped to [-1, 1]."""
        return wav.float().clamp(-1.0, 1.0)

    def symbols_to_audio(self, symbols: torch.Tensor) -> torch.Tensor:
        """Float samples (...) -> the same float32 samples (...)."""
        return symbols.float()

    def _split(self, params: torch.Tensor):
        m = self.mixtures
        logits, means, log_scales = params.float().split(m, dim=1)
        return logits, means, log_scales.clamp(min=self.log_scale_min)

    def nll(self, params: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """params (B, 3M, T), wav (B, T) in [-1, 1] -> (B, T) negative log-likelihood in nats."""
        logits, means, log_scales = self._split(params)
        y = self.encode_input(wav).unsqueeze(1)
        half_bin = 1.0 / (self.num_classes - 1)
        centered = y - means
        inv_s = torch.exp(-log_scales)
        plus_in = inv_s * (centered + half_bin)
        min_in = inv_s * (centered - half_bin)
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        log_cdf_plus = plus_in - F.softplus(plus_in)        # log P(x <= -1 + half bin): the lower edge bin
        log_one_minus_cdf_min = -F.softplus(min_in)          # log P(x > 1 - half bin): the upper edge bin
        mid_in = inv_s * centered
        log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
        log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)),
                              log_pdf_mid - math.log((self.num_classes - 1) / 2))
        log_probs = torch.where(y < -0.999, log_cdf_plus, torch.where(y > 0.999, log_one_minus_cdf_min, log_mid))
        return -torch.logsumexp(log_probs + F.log_softmax(logits, dim=1), dim=1)

    def sample_symbols(self, params: torch.Tensor, noise: torch.Tensor, temperature: float = 1.0,
                       argmax: bool = False) -> torch.Tensor:
        """params (B, 3M), noise (B, M + 1) uniform in (0, 1) -> samples (B,) float32 in [-1, 1].

        Temperature scales the Gumbel noise of the component choice and the logistic's scale;
        argmax (or temperature 0) returns the mean of the most probable component.
        """
        logits, means, log_scales = self._split(params)
        if argmax or temperature == 0:
            choice = logits.argmax(dim=1, keepdim=True)
            return means.gather(1, choice).squeeze(1).clamp(-1.0, 1.0)
        choice = (logits + temperature * gumbel_noise(noise[:, :self.mixtures])).argmax(dim=1, keepdim=True)
        u = noise[:, self.mixtures:].clamp(NOISE_EPS, 1.0 - NOISE_EPS)
        mean = means.gather(1, choice)
        scale = torch.exp(log_scales.gather(1, choice)) * temperature
        return (mean + scale * (torch.log(u) - torch.log1p(-u))).squeeze(1).clamp(-1.0, 1.0)

    def sample(self, params: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               argmax: bool = False) -> torch.Tensor:
        """params (B, 3M) -> sampled audio (B,) float32 in [-1, 1]."""
        noise = torch.rand(params.shape[0], self.noise_size, generator=generator, device=params.device)
        return self.sample_symbols(params, noise, temperature, argmax)


def make_output(kind: str, mixtures: int = 10) -> MuLawCategorical | DiscretizedLogisticMixture:
    """Output distribution by name: "mulaw" (256-way softmax) or "mol" (mixture of logistics)."""
    if kind == "mulaw":
        return MuLawCategorical()
    if kind == "mol":
        return DiscretizedLogisticMixture(mixtures=mixtures)
    raise ValueError(f"unknown decoder output {kind!r}: expected 'mulaw' or 'mol'")
