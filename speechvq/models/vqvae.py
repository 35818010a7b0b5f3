"""The assembled VQ-VAE: encoder -> vector quantizer -> speaker-conditioned decoder.

Shapes (B batch, T samples at 16 kHz, F = ceil(T / 64) frames at 250 per second, D code dimension)::

    wav (B, T) float in [-1, 1] --encoder--> z_e (B, D, F) --quantizer--> codes (B, F) int64, z_q (B, D, F)
    autoregressive WaveNet:  (wav, z_q, speaker (B,)) --teacher-forced--> nll (B, T) nats per sample
    source-filter decoder:   (z_q, speaker, f0 (B, F) Hz) --> wav (B, 64 F), multi-resolution STFT loss

Training minimises the decoder's reconstruction term (``nll.mean()``, or the STFT loss) plus
the quantizer's codebook/commitment terms, plus the optional speaker adversary. Speakers are
embedding indices here; their names are stored in checkpoints (`speechvq.models.loading`).

Speaker-free-units levers (off by default): time-jitter of z_q during training
(``jitter``), a gradient-reversal speaker classifier on z_e (``speaker_adversary``), the
encoder's instance normalisation, and a random voice shift of what the encoder hears in
training (``voice_shift``; the decoder still reconstructs the original). ``frozen_units`` keeps
encoder and quantizer fixed (eval mode, no gradient): the unit vocoder, a decoder trained on the
codes of another VQ-VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechvq.audio import SAMPLE_RATE
from speechvq.errors import SpeechVQError
from speechvq.modules.speaker_free import SpeakerClassifier, grad_reverse, random_voice_shift, time_jitter
from speechvq.quantization.vq import VQResult


@dataclass
class VQVAEOutput:
    """Result of `VQVAE.forward`.

    Attributes:
        nll: (B, T) float, negative log-likelihood of each target sample in nats (autoregressive
            decoder; None for the source-filter decoder).
        vq: the quantizer's result (codes (B, F), straight-through z_q (B, D, F), losses, perplexity).
        loss: scalar: reconstruction + ``vq.loss`` (+ speaker adversary): what training minimises.
        terms: scalar parts for logging (``stft_convergence``, ``f0_loss``, ``speaker_adversary_ce``, ...).
    """

    nll: torch.Tensor | None
    vq: VQResult
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


class VQVAE(nn.Module):
    """Encoder, quantizer and decoder, given as built modules (see `speechvq.models.builders`).

    Args:
        encoder: wav (B, T) -> z_e (B, D, ceil(T / hop_length)); has ``hop_length``.
        quantizer: z_e (B, D, F) -> `VQResult`; has ``num_codes``, ``dim`` and ``lookup(codes)``.
        decoder: autoregressive (``nll(wav, z_q, speaker) -> (B, T)`` nats) or source-filter
            (``loss(wav, z_q, speaker, f0) -> dict``); its ``autoregressive`` attribute says which.
        jitter: probability of time-jitter per frame of z_q in training (0: off).
        speaker_adversary: weight of the gradient-reversal speaker classifier on z_e (0: none).
        num_speakers: classes of that classifier.
        voice_shift: in training the encoder hears the input with pitch and formants scaled by a
            random factor within 1 +- voice_shift (0: off); the decoder's target is unchanged.
        frozen_units: encoder and quantizer stay in eval mode and receive no gradient.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, jitter: float = 0.0,
                 speaker_adversary: float = 0.0, num_speakers: int = 1, voice_shift: float = 0.0,
                 frozen_units: bool = False) -> None:
        super().__init__()
        decoder_hop = getattr(decoder, "hop_length", None)
        if decoder_hop is not None and int(decoder_hop) != int(encoder.hop_length):
            raise SpeechVQError(f"the decoder's hop_length={decoder_hop} disagrees with the encoder's hop of "
                                f"{encoder.hop_length} samples per code")
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.jitter = float(jitter)
        if not 0.0 <= voice_shift < 0.5:
            raise ValueError(f"voice_shift={voice_shift}: must be in [0, 0.5)")
        self.voice_shift = float(voice_shift)
        self.speaker_adversary = float(speaker_adversary)
        self.speaker_classifier = (
            SpeakerClassifier(int(quantizer.dim), int(num_speakers)) if self.speaker_adversary > 0 else None
        )
        self.frozen_units = bool(frozen_units)
        if self.frozen_units:
            for module in (self.encoder, self.quantizer):
                module.requires_grad_(False)

    @property
    def autoregressive(self) -> bool:
        """True for the WaveNet decoder (likelihood, sample-by-sample generation)."""
        return bool(getattr(self.decoder, "autoregressive", True))

    def train(self, mode: bool = True) -> "VQVAE":
        """As nn.Module.train, but frozen units stay in eval mode (no codebook updates)."""
        super().train(mode)
        if self.frozen_units:
            self.encoder.eval()
            self.quantizer.eval()
        return self

    @property
    def hop_length(self) -> int:
        """Samples per code, the encoder's stride product (64 in every shipped preset)."""
        return int(self.encoder.hop_length)

    @property
    def sample_rate(self) -> int:
        """Hertz of the audio the model reads and writes (16000)."""
        return int(getattr(self.decoder, "sample_rate", SAMPLE_RATE))

    @property
    def codes_per_second(self) -> float:
        """Code frames per second of audio: sample_rate / hop_length (250 for the presets)."""
        return self.sample_rate / self.hop_length

    @property
    def num_codes(self) -> int:
        """K, the codebook size."""
        return int(self.quantizer.num_codes)

    def forward(self, wav: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor | None = None) -> VQVAEOutput:
        """wav (B, T) float in [-1, 1], speaker (B,) int64, f0 (B, ceil(T / 64)) Hz -> `VQVAEOutput`.

        f0 is required by the source-filter decoder and ignored by the autoregressive one
        (teacher-forced). In training mode the quantizer also updates its codebook statistics
        (EMA, dead-code restarts), unless the units are frozen. With ``voice_shift`` the encoder
        hears a voice-shifted copy of `wav` in training; the decoder's target is `wav`.
        """
        heard = wav
        if self.training and self.voice_shift > 0:
            with torch.no_grad():
                heard = random_voice_shift(wav, self.voice_shift)
        if self.frozen_units:
            with torch.no_grad():
                z_e = self.encoder(heard)
                vq = self.quantizer(z_e)
        else:
            z_e = self.encoder(heard)
            vq = self.quantizer(z_e)
        z_q = vq.quantized
        if self.training and self.jitter > 0:
            z_q = time_jitter(z_q, self.jitter)
        terms: dict[str, torch.Tensor] = {}
        nll = None
        if self.autoregressive:
            nll = self.decoder.nll(wav, z_q, speaker)
            reconstruction = nll.mean()
        else:
            if f0 is None:
                raise ValueError("the source-filter decoder needs f0 (B, F) in hertz")
            terms = self.decoder.loss(wav, z_q, speaker, f0)
            reconstruction = terms.pop("loss")
        loss = reconstruction + vq.loss
        if self.speaker_classifier is not None and not self.frozen_units:
            logits = self.speaker_classifier(grad_reverse(z_e, 1.0))
            ce = F.cross_entropy(logits.float(), speaker)
            terms["speaker_adversary_ce"] = ce
            terms["speaker_adversary_accuracy"] = (logits.argmax(-1) == speaker).float().mean()
            loss = loss + self.speaker_adversary * ce
        return VQVAEOutput(nll=nll, vq=vq, loss=loss, terms=terms)

    def encode_continuous(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float -> z_e (B, D, ceil(T / 64)), the encoder output before quantization."""
        return self.encoder(wav)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) float -> codes (B, ceil(T / hop_length)) int64 in [0, K), 250 per second.

        Side-effect free in either mode: `quantizer.encode` (no EMA updates, no restarts).
        """
        return self.quantizer.encode(self.encoder(wav))

    def quantized(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, F) int64 -> z_q (B, D, F) float, the code vectors the decoder is conditioned on."""
        return self.quantizer.lookup(codes)
