"""Fundamental frequency (F0) at the code rate: WORLD extraction, per-speaker log-F0 statistics,
the pitch mapping used by voice conversion, and the bits an F0 track costs.

Units: F0 tracks are (F,) float32 arrays in hertz, one value per 64-sample code frame
(4 ms at 16 kHz, `speechvq.audio.HOP_LENGTH`), 0 where the frame is unvoiced. Frame f
describes samples [64 f, 64 f + 64), like code f. Statistics are of the natural log of F0 over
voiced frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, num_frames
from speechvq.errors import SpeechVQError

#: WORLD's search range in hertz: covers low male voices and high female and child voices.
F0_FLOOR = 50.0
F0_CEIL = 600.0


def world_f0(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """(n,) float waveform -> (ceil(n / hop_length),) float32 F0 in hertz, 0 where unvoiced.

    WORLD's DIO estimate refined by StoneMask, one frame every `hop_length` samples (pyworld).
    DIO is about 50x faster than Harvest at this frame rate, which matters for a corpus cached
    once by ``prepare``; its voicing decisions are the same ones the metrics use.
    """
    import pyworld

    x = np.ascontiguousarray(np.asarray(wav, dtype=np.float64).reshape(-1))
    frames = num_frames(x.shape[0]) if hop_length == HOP_LENGTH else -(-x.shape[0] // hop_length)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    period_ms = 1000.0 * hop_length / sample_rate
    f0, times = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=period_ms)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    out = np.zeros(frames, dtype=np.float32)
    keep = min(frames, f0.shape[0])
    out[:keep] = f0[:keep]
    out[~np.isfinite(out)] = 0.0
    return out


@dataclass(frozen=True)
class F0Stats:
    """Mean and standard deviation of log F0 (natural log of hertz) over `voiced_frames` frames."""

    mean: float
    std: float
    voiced_frames: int

    @property
    def median_hz(self) -> float:
        """exp(mean): the geometric mean F0 in hertz."""
        return math.exp(self.mean)

    def to_list(self) -> list[float]:
        """[mean, std, voiced_frames]: the checkpoint's storage form (plain floats)."""
        return [float(self.mean), float(self.std), float(self.voiced_frames)]

    @classmethod
    def from_list(cls, values: Iterable[float]) -> "F0Stats":
        mean, std, count = (float(v) for v in values)
        return cls(mean, std, int(count))


def f0_stats(tracks: Iterable[np.ndarray]) -> F0Stats | None:
    """Log-F0 statistics of the voiced frames of `tracks`; None if fewer than 2 frames are voiced."""
    voiced = [np.log(t[t > 0].astype(np.float64)) for t in tracks]
    values = np.concatenate(voiced) if voiced else np.zeros(0)
    if values.shape[0] < 2:
        return None
    return F0Stats(float(values.mean()), float(max(values.std(), 1e-3)), int(values.shape[0]))


# How `SpeechVQ.conversion_f0` standardises a source contour: by the utterance's own mean (every
# output centred on the target speaker's mean; the default, see recipes/vctk/README.md), or by
# its speaker's statistics.
F0_MAPPINGS = ("utterance", "speaker")


def map_f0(f0: np.ndarray, source: F0Stats | None, target: F0Stats | None,
           shift_semitones: float | None = None) -> np.ndarray:
    """Move a contour into another speaker's range; unvoiced frames stay 0.

    Without `shift_semitones`: log F0 is standardised with the source's statistics and
    rescaled with the target's (log-Gaussian mapping), so the source's mean goes to the
    target's mean. With `shift_semitones`: every voiced frame is multiplied by
    2 ** (shift / 12) instead, and the statistics are not used. With neither statistics
    nor a shift, the contour is returned unchanged.
    """
    f0 = np.asarray(f0, dtype=np.float32)
    out = np.zeros_like(f0)
    voiced = f0 > 0
    if shift_semitones is not None:
        out[voiced] = f0[voiced] * 2.0 ** (float(shift_semitones) / 12.0)
        return out
    if source is None or target is None:
        return f0.copy()
    log_f0 = np.log(f0[voiced].astype(np.float64))
    out[voiced] = np.exp((log_f0 - source.mean) / source.std * target.std + target.mean)
    return out


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute pitch difference in cents (1200 per octave) of positive frequencies a and b."""
    return np.abs(1200.0 * np.log2(np.asarray(a, np.float64) / np.asarray(b, np.float64)))


def f0_track_bits(tracks: Iterable[np.ndarray], step_cents: float = 10.0) -> dict[str, float]:
    """Empirical cost of sending F0 tracks beside the codes, in bits.

    Each frame sends its voicing flag, coded given the previous frame's flag, and each voiced
    frame its log F0 quantised to `step_cents`, coded as the difference to the previous voiced
    frame's value (the first voiced frame of a track in absolute steps). Both are entropy-coded
    with the frequencies of these very tracks (an ideal adaptive coder's limit; a lower bound
    for a real one). Returns ``f0_bits_per_frame`` and ``f0_frames``; multiply by the frame
    rate for bits per second.
    """
    from collections import Counter

    flags: Counter = Counter()
    deltas: Counter = Counter()
    frames = 0
    for track in tracks:
        track = np.asarray(track)
        voiced = track > 0
        frames += track.shape[0]
        previous = np.concatenate([[False], voiced[:-1]])
        flags.update(zip(previous.tolist(), voiced.tolist()))
        steps = np.round(1200.0 * np.log2(track[voiced] / F0_FLOOR) / step_cents).astype(np.int64)
        if steps.shape[0]:
            deltas.update(np.concatenate([[10**6 + steps[0]], np.diff(steps)]).tolist())
    if frames == 0:
        raise SpeechVQError("f0_track_bits: no frames")

    def conditional_entropy_bits(counts: Counter, condition) -> float:
        total = 0.0
        groups: dict = {}
        for key, n in counts.items():
            groups.setdefault(condition(key), []).append(n)
        for values in groups.values():
            p = np.asarray(values, np.float64) / sum(values)
            total += -float(sum(values) * (p * np.log2(p)).sum())
        return total

    bits = conditional_entropy_bits(flags, lambda k: k[0]) + conditional_entropy_bits(deltas, lambda k: 0)
    return {"f0_bits_per_frame": bits / frames, "f0_frames": float(frames)}
