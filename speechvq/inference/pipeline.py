"""`SpeechVQ`: a trained VQ-VAE ready to encode, decode, reconstruct and convert.

This is the object `speechvq.load(CKPT)` returns and the one the inference commands use::

    model = speechvq.load("exp/demo/vqvae")
    codes = model.encode(wav)                        # (F,) int64, F = ceil(n / 64), 250 per second
    audio = model.decode(codes, speaker="p225")      # (64 * F,) float32 in [-1, 1] at 16 kHz
    converted = model.convert(wav, speaker="p226")   # encode + decode as another speaker
    prior = CodingPrior.from_checkpoint("exp/prior")  # speechvq.inference.codec
    data = model.compress(wav, prior, speaker="p225")  # the bytes of a .svq file, about 1 kbit/s
    audio = model.decompress(data, prior)            # in the stored speaker's voice

Two decoders (the checkpoint says which, `decoder_name`): the paper's autoregressive WaveNet
generates sample by sample; the source-filter decoder generates in one forward pass from the
codes, the speaker and an F0 contour — the source's WORLD F0 mapped onto the target speaker's
log-F0 statistics when converting, or the decoder's own prediction from the codes when only
codes are given.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from speechvq.audio import SAMPLE_RATE, num_frames, resample
from speechvq.errors import SpeechVQError, UnknownSpeakerError
from speechvq.f0 import F0_MAPPINGS, F0Stats, f0_stats, map_f0, world_f0
from speechvq.inference.codec import CodingPrior, compress_codes, decompress_codes, units_hash
from speechvq.inference.generate import generate
from speechvq.models.loading import load_vqvae


class SpeechVQ:
    """A VQ-VAE in eval mode on one device, with its speaker list (index = embedding row) and the
    speakers' log-F0 statistics (name -> `F0Stats`, from the training data; may be empty)."""

    def __init__(self, vqvae: torch.nn.Module, speakers: Sequence[str], device: torch.device, checkpoint: str = "",
                 f0_statistics: dict[str, F0Stats] | None = None):
        self.vqvae = vqvae.to(device).eval()
        self.speakers = list(speakers)
        self.device = device
        self.checkpoint = checkpoint
        self.f0_statistics = dict(f0_statistics or {})

    @property
    def autoregressive(self) -> bool:
        """True for the paper's WaveNet decoder, False for the source-filter decoder."""
        return bool(self.vqvae.autoregressive)

    @property
    def decoder_name(self) -> str:
        """Which decoder generates: shown by the commands that generate audio."""
        return ("autoregressive WaveNet (sample by sample)" if self.autoregressive
                else "source-filter WaveNet (one forward pass, F0-driven)")

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> "SpeechVQ":
        """Load a checkpoint file or run directory (its best.pt, else last.pt); cuda by default when present."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vqvae, speakers, payload = load_vqvae(checkpoint, device)
        stats = {str(k): F0Stats.from_list(v) for k, v in (payload.get("f0_stats") or {}).items()}
        return cls(vqvae, speakers, device, checkpoint=str(payload.get("path", checkpoint)), f0_statistics=stats)

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

    def source_f0(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(n,) waveform -> (ceil(n' / 64),) float32 WORLD F0 in hertz at the code rate (0: unvoiced)."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE:
            wav = resample(wav, sample_rate, SAMPLE_RATE)
        return world_f0(wav)

    def conversion_f0(self, f0: np.ndarray, source_speaker: str | None, target_speaker: str,
                      pitch_shift: float | None = None, f0_mapping: str = "utterance") -> np.ndarray:
        """A source contour moved into the target speaker's range (`speechvq.f0.map_f0`).

        ``f0_mapping="utterance"`` (default): log F0 is standardised with this utterance's own
        mean (and the source speaker's spread where known), so every output is centred on the
        target's mean. ``"speaker"``: standardised with the training statistics of
        `source_speaker` when the model knows it (else those of this utterance alone), so an
        utterance pitched above its speaker's average stays above the target's. `pitch_shift`
        semitones overrides either mapping.
        """
        if f0_mapping not in F0_MAPPINGS:
            raise SpeechVQError(f"f0_mapping={f0_mapping!r}: choose one of {', '.join(F0_MAPPINGS)}")
        if pitch_shift is not None:
            return map_f0(f0, None, None, shift_semitones=pitch_shift)
        speaker = self.f0_statistics.get(source_speaker) if source_speaker is not None else None
        utterance = f0_stats([f0])
        source = speaker or utterance
        if f0_mapping == "utterance" and utterance is not None:
            source = F0Stats(utterance.mean, speaker.std if speaker else utterance.std, utterance.voiced_frames)
        return map_f0(f0, source, self.f0_statistics.get(target_speaker))

    @torch.inference_mode()
    def decode_batch(
        self,
        codes: Sequence[np.ndarray],
        speakers: Sequence[str],
        temperature: float = 1.0,
        argmax: bool = False,
        seed: int | None = None,
        progress: bool = False,
        f0: Sequence[np.ndarray | None] | None = None,
    ) -> list[np.ndarray]:
        """Generate audio for many code sequences at once (one batch, different lengths and speakers).

        codes: sequences of (F_i,) ints in [0, K); speakers: one name per sequence; f0 (source-filter
        decoder only): one (F_i,) hertz contour per sequence, or None (for all or for one) to use
        the decoder's prediction from the codes. temperature/argmax apply to the autoregressive
        decoder; seed fixes the sampling (or the excitation noise).
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
        if not self.autoregressive:
            return self._decode_source_filter(z_q, speaker, lengths, f0, seed)
        sample_lengths = torch.tensor([n * self.vqvae.hop_length for n in lengths], dtype=torch.long)
        return generate(
            self.vqvae.decoder, z_q, speaker, sample_lengths,
            temperature=temperature, argmax=argmax, seed=seed, progress=progress,
        )

    def _decode_source_filter(self, z_q: torch.Tensor, speaker: torch.Tensor, lengths: list[int],
                              f0: Sequence[np.ndarray | None] | None, seed: int | None) -> list[np.ndarray]:
        decoder = self.vqvae.decoder
        contour = decoder.predict_f0(z_q, speaker)
        for i, given in enumerate(f0 or []):
            if given is None:
                continue
            given = np.asarray(given, dtype=np.float32).reshape(-1)
            if given.shape[0] != lengths[i]:
                raise SpeechVQError(f"f0 of sequence {i} has {given.shape[0]} frames, its codes {lengths[i]}")
            contour[i] = 0.0
            contour[i, : lengths[i]] = torch.from_numpy(given).to(contour)
        for i, n in enumerate(lengths):
            contour[i, n:] = 0.0
        generator = torch.Generator(device=self.device).manual_seed(0 if seed is None else int(seed))
        wav = decoder(z_q, speaker, contour, generator=generator).float().cpu().numpy()
        # the STFT loss barely sees a DC offset, so the filter may leave one: remove it per output
        hop = decoder.hop_length  # the model's samples per code
        return [np.clip(w[: n * hop] - w[: n * hop].mean(), -1.0, 1.0) for w, n in zip(wav, lengths)]

    def decode(self, codes: np.ndarray, speaker: str, temperature: float = 1.0, argmax: bool = False,
               seed: int | None = None, f0: np.ndarray | None = None) -> np.ndarray:
        """(F,) codes -> (64 * F,) float32 waveform at 16 kHz in `speaker`'s voice (f0: see decode_batch)."""
        return self.decode_batch([codes], [speaker], temperature=temperature, argmax=argmax, seed=seed,
                                 f0=[f0])[0]

    def convert(self, wav: np.ndarray, speaker: str, sample_rate: int = SAMPLE_RATE, temperature: float = 1.0,
                argmax: bool = False, seed: int | None = None, source_speaker: str | None = None,
                pitch_shift: float | None = None, f0_mapping: str = "utterance") -> np.ndarray:
        """Voice conversion: (n,) waveform at `sample_rate` -> (64 * ceil(n' / 64),) float32 at 16 kHz in
        `speaker`'s voice, n' = the input's length at 16 kHz.

        Source-filter decoder: the source's F0 is mapped onto the target's statistics (see
        `conversion_f0`; `source_speaker` names the source if the model knows it).
        """
        self.speaker_index(speaker)
        codes = self.encode(wav, sample_rate)
        f0 = None
        if not self.autoregressive:
            f0 = self.conversion_f0(self.source_f0(wav, sample_rate), source_speaker, speaker, pitch_shift, f0_mapping)
        return self.decode(codes, speaker, temperature=temperature, argmax=argmax, seed=seed, f0=f0)

    @cached_property
    def units_hash(self) -> str:
        """Hash of the encoder and codebook weights, which define the codes (`codec.units_hash`)."""
        return units_hash(self.vqvae)

    def compress(self, wav: np.ndarray, prior: CodingPrior, sample_rate: int = SAMPLE_RATE,
                 speaker: str | None = None) -> bytes:
        """(n,) waveform at `sample_rate` -> the bytes of a .svq file (`speechvq.inference.codec`).

        speaker: the utterance's speaker (one this model knows), stored as the default voice of
        `decompress` and used as the prior's conditioning where the prior knows it.
        """
        if speaker is not None:
            self.speaker_index(speaker)
        wav = resample(np.asarray(wav, dtype=np.float32).reshape(-1), sample_rate, SAMPLE_RATE)
        return compress_codes(prior, self.encode(wav), units_hash=self.units_hash,
                              speaker=prior.speaker_row(speaker), speaker_name=speaker or "",
                              num_samples=wav.shape[0])

    def read_compressed(self, data: bytes, prior: CodingPrior, speaker: str | None = None,
                        name: str = "<data>") -> tuple[np.ndarray, str, int]:
        """.svq bytes -> ((F,) int64 codes, the voice to decode with, the audio's length in samples).

        The voice is `speaker`, else the one stored in the file; errors name `name` (the file).
        """
        codes, header = decompress_codes(prior, data, units_hash=self.units_hash, name=name)
        if header.sample_rate != SAMPLE_RATE:
            raise SpeechVQError(f"{name}: codes of {header.sample_rate} Hz audio; this model works at "
                                f"{SAMPLE_RATE} Hz")
        voice = speaker or header.speaker
        if not voice:
            raise SpeechVQError(f"{name}: no speaker stored in the file; choose a voice (--speaker)")
        self.speaker_index(voice)
        return codes, voice, header.num_samples or self.vqvae.hop_length * header.num_codes

    def decompress(self, data: bytes, prior: CodingPrior, speaker: str | None = None, temperature: float = 1.0,
                   argmax: bool = False, seed: int | None = None, name: str = "<data>") -> np.ndarray:
        """.svq bytes -> (n,) float32 waveform at 16 kHz, n = the compressed audio's length, in `speaker`'s
        voice (default: the stored speaker's); the source-filter decoder predicts F0 from the codes."""
        codes, voice, num_samples = self.read_compressed(data, prior, speaker, name)
        return self.decode(codes, voice, temperature=temperature, argmax=argmax, seed=seed)[:num_samples]
