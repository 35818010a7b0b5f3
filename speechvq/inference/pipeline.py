"""`SpeechVQ`: a trained VQ-VAE ready to encode, decode, reconstruct and convert.

This is the object `speechvq.load(CKPT)` returns and the one the inference commands use::

    model = speechvq.load("exp/demo/vqvae")
    codes = model.encode(wav)                        # (F,) int64, F = ceil(n / 64), 250 per second
    audio = model.decode(codes, speaker="p225")      # (64 * F,) float32 in [-1, 1] at 16 kHz
    converted = model.convert(wav, speaker="p226")   # encode + decode as another speaker
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, num_frames, resample
from speechvq.errors import SpeechVQError, UnknownSpeakerError
from speechvq.inference.generate import generate
from speechvq.models.loading import load_vqvae


class SpeechVQ:
    """A VQ-VAE in eval mode on one device, with its speaker list (index = embedding row)."""

    def __init__(self, vqvae: torch.nn.Module, speakers: Sequence[str], device: torch.device, checkpoint: str = ""):
        self.vqvae = vqvae.to(device).eval()
        self.speakers = list(speakers)
        self.device = device
        self.checkpoint = checkpoint

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> "SpeechVQ":
        """Load a checkpoint file or run directory (its best.pt, else last.pt); cuda by default when present."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vqvae, speakers, payload = load_vqvae(checkpoint, device)
        return cls(vqvae, speakers, device, checkpoint=str(payload.get("path", checkpoint)))

    @property
    def num_codes(self) -> int:
        """Codebook size K."""
        return int(self.vqvae.num_codes)

    def speaker_index(self, name: str) -> int:
        """Embedding row of speaker `name`; unknown names are refused with the list of known ones."""
        try:
            return self.speakers.index(name)
        except ValueError:
            known = ", ".join(self.speakers[:50]) + (" ..." if len(self.speakers) > 50 else "")
            raise UnknownSpeakerError(f"unknown speaker {name!r}; this model knows: {known}") from None

    @torch.inference_mode()
    def encode(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(n,) float waveform at `sample_rate` -> (ceil(n' / 64),) int64 codes, n' = length at 16 kHz."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE:
            wav = resample(wav, sample_rate, SAMPLE_RATE)
        if wav.shape[0] == 0 or not np.isfinite(wav).all():
            raise SpeechVQError("encode: the waveform is empty or contains NaN/Inf")
        x = torch.from_numpy(wav).to(self.device)[None]
        codes = self.vqvae.encode(x)[0, : num_frames(wav.shape[0])]
        return codes.cpu().numpy().astype(np.int64)

    @torch.inference_mode()
    def decode_batch(
        self,
        codes: Sequence[np.ndarray],
        speakers: Sequence[str],
        temperature: float = 1.0,
        argmax: bool = False,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[np.ndarray]:
        """Generate audio for many code sequences at once (one batch, different lengths and speakers).

        codes: sequences of (F_i,) ints in [0, K); speakers: one name per sequence.
        Returns (64 * F_i,) float32 waveforms at 16 kHz (an empty list for no sequences).
        """
        if len(codes) != len(speakers):
            raise ValueError("decode_batch: one speaker per code sequence")
        if not codes:
            return []
        rows = [self.speaker_index(s) for s in speakers]
        lengths = [int(np.asarray(c).reshape(-1).shape[0]) for c in codes]
        for c in codes:
            c = np.asarray(c)
            if c.size == 0 or c.min() < 0 or c.max() >= self.num_codes:
                raise SpeechVQError(f"codes must be a non-empty sequence of integers in [0, {self.num_codes})")
        padded = torch.zeros(len(codes), max(lengths), dtype=torch.long)
        for i, c in enumerate(codes):
            padded[i, : lengths[i]] = torch.as_tensor(np.asarray(c, dtype=np.int64).reshape(-1))
        z_q = self.vqvae.quantized(padded.to(self.device))
        speaker = torch.tensor(rows, dtype=torch.long, device=self.device)
        sample_lengths = torch.tensor([n * HOP_LENGTH for n in lengths], dtype=torch.long)
        return generate(
            self.vqvae.decoder, z_q, speaker, sample_lengths,
            temperature=temperature, argmax=argmax, seed=seed, progress=progress,
        )

    def decode(self, codes: np.ndarray, speaker: str, temperature: float = 1.0, argmax: bool = False,
               seed: int | None = None) -> np.ndarray:
        """(F,) codes -> (64 * F,) float32 waveform at 16 kHz in `speaker`'s voice."""
        return self.decode_batch([codes], [speaker], temperature=temperature, argmax=argmax, seed=seed)[0]

    def convert(self, wav: np.ndarray, speaker: str, sample_rate: int = SAMPLE_RATE, temperature: float = 1.0,
                argmax: bool = False, seed: int | None = None) -> np.ndarray:
        """Voice conversion: (n,) waveform at `sample_rate` -> (64 * ceil(n' / 64),) float32 at 16 kHz in
        `speaker`'s voice, n' = the input's length at 16 kHz."""
        self.speaker_index(speaker)
        return self.decode(self.encode(wav, sample_rate), speaker, temperature=temperature, argmax=argmax, seed=seed)
