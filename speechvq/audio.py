"""Audio in and out: load (any rate, any channels) to 16 kHz mono float32, atomic 16-bit
wav writes, and μ-law companding (torchaudio's definition, 256 levels).

Units: waveforms are float32 in [-1, 1] at `SAMPLE_RATE` hertz; one code frame is
`HOP_LENGTH` samples, so there are `CODES_PER_SECOND` codes per second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr

from speechvq.errors import AudioError
from speechvq.fileio import atomic_path

if TYPE_CHECKING:  # torch is imported where needed: `prepare` and `synth` start faster without it
    import torch

SAMPLE_RATE = 16000
HOP_LENGTH = 64
CODES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
MULAW_CHANNELS = 256
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a (n,) float32 waveform from `orig_sr` to `target_sr` hertz with soxr (HQ)."""
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    return soxr.resample(np.asarray(wav, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, min_samples: int = HOP_LENGTH) -> np.ndarray:
    """Read wav/flac/ogg as (n,) float32 mono in [-1, 1] at `sample_rate` hertz.

    Channels are averaged and the rate converted. Refused with an `AudioError` naming the
    file: missing, unreadable or corrupt, empty, shorter than `min_samples` after
    resampling (one code frame by default), or containing NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: unreadable or corrupt audio ({reason})") from None
    if data.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or Inf values")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wav = resample(wav, sr, sample_rate)
    if wav.shape[0] < min_samples:
        raise AudioError(
            f"{path}: too short ({wav.shape[0]} samples at {sample_rate} Hz; at least {min_samples} needed)"
        )
    return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)


def save_wav(path: str | os.PathLike, wav, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a (n,) waveform in [-1, 1] as 16-bit PCM mono wav, atomically. Returns the path."""
    if hasattr(wav, "detach"):  # a torch tensor
        wav = wav.detach().cpu().float().numpy()
    wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wav, sample_rate, subtype="PCM_16", format="WAV")
    return path


def float_to_int16(wav: np.ndarray) -> np.ndarray:
    """(n,) float in [-1, 1] -> (n,) int16 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(wav, dtype=np.float32) * 32768.0), -32768, 32767).astype(np.int16)


def int16_to_float(wav: np.ndarray) -> np.ndarray:
    """(n,) int16 -> (n,) float32 in [-1, 1)."""
    return np.asarray(wav, dtype=np.float32) / 32768.0


def mulaw_encode(wav: torch.Tensor, quantization_channels: int = MULAW_CHANNELS) -> torch.Tensor:
    """μ-law companding and quantisation (torchaudio.functional.mu_law_encoding) of `wav` clamped to [-1, 1].

    wav: float tensor, any shape (computed in float32). Returns int64 indices in
    [0, channels-1], same shape.
    """
    from torchaudio.functional import mu_law_encoding

    return mu_law_encoding(wav.float().clamp(-1.0, 1.0), quantization_channels)


def mulaw_decode(indices: torch.Tensor, quantization_channels: int = MULAW_CHANNELS) -> torch.Tensor:
    """Inverse of `mulaw_encode` (torchaudio.functional.mu_law_decoding): int indices in
    [0, channels-1] -> float32 in [-1, 1], same shape."""
    from torchaudio.functional import mu_law_decoding

    return mu_law_decoding(indices.float(), quantization_channels)


def num_frames(num_samples: int) -> int:
    """Number of code frames for `num_samples` samples: ceil(n / 64)."""
    return -(-int(num_samples) // HOP_LENGTH)
