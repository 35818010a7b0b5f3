"""Objective voice-conversion metrics: mel-cepstral distortion, speaker similarity, code agreement,
voicing, pitch and spectral flatness.

* **MCD** (dB), as in the voice-conversion literature (VCC baselines, sprocket): WORLD spectral
  envelope (pyworld: harvest or dio + stonemask F0, then cheaptrick) -> mel-cepstrum of order 24
  with all-pass constant 0.42 (16 kHz) via pysptk.sp2mc; c0 (energy) excluded; silent frames
  dropped by normalised power (sprocket's ``extfrm``: frames more than 20 dB below the
  utterance's mean power); the two sequences aligned by DTW on the Euclidean mel-cepstral
  distance; then, per aligned frame pair, ``MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)``,
  averaged over the alignment path.
* **Speaker similarity**: utterance embeddings from resemblyzer's pretrained GE2E speaker
  encoder (256-dim, unit norm; the weights ship with the package and load offline), speaker
  centroids (normalised mean of a speaker's utterance embeddings) and cosine similarity.
* **Code agreement**: the share of frames whose VQ-VAE code is the same in a converted
  utterance as in its source (content preservation without ASR); **phone agreement**: the
  share of the source's phone-aligned frames whose converted code maps, through the probe's
  many-to-one code -> phone mapping, to the aligned phone.
* **Voicing and pitch**, on WORLD F0 tracks (`speechvq.f0.world_f0`, hertz, 0 where unvoiced)
  compared frame by frame: **voiced retention**, the share of a source's voiced frames that
  are voiced in the output (buzzy or whispered outputs lose voicing); **F0 error**, the median
  absolute difference in cents over frames voiced in both.
* **Spectral flatness** (librosa: geometric over arithmetic mean of the power spectrum, in
  [0, 1]): near 0 for a harmonic sound, about 0.5 for white noise; the median over the frames
  within 40 dB of the loudest, so that silence does not dominate. A noisy vocoder raises it.
* **Envelope dynamics** (reconstructions, which keep their source's timing): 40-band log-mel
  spectrograms (10 ms frames) of source and output over the source's frames within 35 dB of
  its loudest, each band's mean over the utterance removed from both; the R^2 of the output's
  deviations against the source's, i.e. the share of the source's formant movements (phone
  to phone) that the output reproduces frame by frame. 1 for a copy, about 0.94 for WORLD
  analysis-resynthesis, 0 or below for a fixed spectral envelope. Gain and a fixed
  equalisation of the output do not change it; MCD measures those.
* **Envelope shape error** (dB): what envelope dynamics leave out, the average spectral shape
  (the speaker's timbre: mean formant positions, spectral tilt). Each signal's 40-band log-mel
  averaged over its own frames within 35 dB of its loudest, the mean over bands removed (gain
  does not count); the rms over bands of output minus reference. Needs no time alignment, so
  it also compares a conversion with the target's recording of another take. 0 for a copy.

All waveforms are (n,) float32 in [-1, 1] at 16 kHz unless stated.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch

from speechvq.audio import SAMPLE_RATE
from speechvq.errors import SpeechVQError
from speechvq.f0 import cents

MCEP_ORDER = 24
MCEP_ALPHA = 0.42  # all-pass constant for 16 kHz
FRAME_PERIOD_MS = 5.0
POWER_THRESHOLD_DB = -20.0
F0_METHODS = ("harvest", "dio")
FLATNESS_N_FFT = 1024  # 64 ms at 16 kHz
FLATNESS_HOP_LENGTH = 256  # 16 ms at 16 kHz
FLATNESS_RANGE_DB = 40.0
ENVELOPE_N_MELS = 40
ENVELOPE_N_FFT = 512  # 32 ms at 16 kHz
ENVELOPE_HOP_LENGTH = 160  # 10 ms at 16 kHz
ENVELOPE_RANGE_DB = 35.0
_MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


# ----------------------------------------------------------------------------- mel-cepstra

def world_mcep(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    order: int = MCEP_ORDER,
    alpha: float = MCEP_ALPHA,
    f0_method: str = "harvest",
    frame_period_ms: float = FRAME_PERIOD_MS,
) -> tuple[np.ndarray, np.ndarray]:
    """Mel-cepstrum of the WORLD spectral envelope, one frame per `frame_period_ms`.

    wav: (n,) float waveform in [-1, 1] at `sample_rate` hertz.
    Returns (mcep, power_db): mcep (F, order + 1) float64 with c0 in column 0, and
    power_db (F,) the frame power of the envelope in dB relative to the utterance mean
    (sprocket's normalised power), used to drop silent frames.
    """
    try:
        import pysptk
        import pyworld
    except ImportError as exc:
        raise SpeechVQError(f"mel-cepstral distortion needs pyworld and pysptk ({exc}); "
                            "install them with `pip install 'speechvq[metrics]'`") from None
    if f0_method not in F0_METHODS:
        raise SpeechVQError(f"unknown F0 method {f0_method!r}; choose from {', '.join(F0_METHODS)}")
    x = np.ascontiguousarray(np.asarray(wav, dtype=np.float64).reshape(-1))
    if x.size == 0:
        raise SpeechVQError("cannot compute a mel-cepstrum of an empty waveform")
    if f0_method == "harvest":
        f0, times = pyworld.harvest(x, sample_rate, frame_period=frame_period_ms)
    else:
        f0, times = pyworld.dio(x, sample_rate, frame_period=frame_period_ms)
        f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)  # (F, fft/2 + 1) power spectrum
    mcep = pysptk.sp2mc(envelope, order=order, alpha=alpha)
    return mcep, normalized_power_db(envelope)


def normalized_power_db(envelope: np.ndarray) -> np.ndarray:
    """Frame power of a (F, fft/2 + 1) power spectrogram in dB relative to its mean frame power.

    The power of a frame is the mean over the full (two-sided) FFT of its bins, as in
    sprocket's ``spc2npow``. Returns (F,) float64 dB.
    """
    envelope = np.asarray(envelope, dtype=np.float64)
    half = envelope.shape[1] - 1
    power = (envelope[:, 0] + envelope[:, half] + 2.0 * envelope[:, 1:half].sum(axis=1)) / (2 * half)
    power = np.maximum(power, 1e-300)
    return 10.0 * np.log10(power / power.mean())


def speech_frames(mcep: np.ndarray, power_db: np.ndarray, threshold_db: float = POWER_THRESHOLD_DB) -> np.ndarray:
    """Rows of `mcep` (F, order + 1) whose `power_db` (F,) exceeds `threshold_db`.

    If no frame passes (a silent or constant signal), all frames are kept so that the
    distortion stays defined.
    """
    keep = power_db > threshold_db
    return mcep[keep] if keep.any() else mcep


# ----------------------------------------------------------------------------- DTW and MCD

# DTW steps (rows, columns): diagonal, down a row, along a row. Between predecessors of equal
# accumulated cost the first in this order wins.
_DTW_STEPS = np.array([[1, 1], [1, 0], [0, 1]])


def dtw_path(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost monotonic alignment of a (N, M) cost matrix (steps (1,1), (1,0), (0,1)).

    Returns the path as a (L, 2) int array of (row, column) pairs from (0, 0) to (N-1, M-1).
    The accumulated cost is D[i, j] = cost[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1])
    (librosa.sequence.dtw, unweighted steps).
    """
    import librosa

    cost = np.asarray(cost, dtype=np.float64)
    _, path = librosa.sequence.dtw(C=cost, step_sizes_sigma=_DTW_STEPS)
    return np.ascontiguousarray(path[::-1], dtype=np.int64)


def mcd_frames(reference: np.ndarray, converted: np.ndarray) -> float:
    """Mean MCD (dB) between two (F, D) mel-cepstral sequences WITHOUT c0, aligned by DTW.

    Frames are aligned on the Euclidean distance of the cepstra; the distortion of each
    aligned pair is ``10 / ln 10 * sqrt(2 * sum_d diff_d^2)`` and the result is their mean.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(converted, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise SpeechVQError(f"mel-cepstra must be non-empty (F, D) arrays of equal D, got {a.shape} and {b.shape}")
    distance = np.sqrt(np.maximum(
        (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0))  # (N, M)
    path = dtw_path(distance)
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(_MCD_CONST * np.sqrt((diff * diff).sum(axis=1)).mean())


def mcep_features(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    f0_method: str = "harvest",
    threshold_db: float = POWER_THRESHOLD_DB,
) -> np.ndarray:
    """The frames MCD compares: (F', 24) float64 mel-cepstra c1..c24 of the non-silent frames.

    wav: (n,) float waveform in [-1, 1] at `sample_rate` hertz. Compute once per file and
    pass pairs to `mcd_frames` when one recording is compared with several others.
    """
    mcep, power_db = world_mcep(wav, sample_rate, f0_method=f0_method)
    return speech_frames(mcep, power_db, threshold_db)[:, 1:]


def mel_cepstral_distortion(
    reference: np.ndarray,
    converted: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    f0_method: str = "harvest",
    threshold_db: float = POWER_THRESHOLD_DB,
) -> float:
    """MCD in dB between two waveforms of the same sentence, with DTW (see the module docstring).

    reference, converted: (n,) float waveforms in [-1, 1] at `sample_rate` hertz (lengths may
    differ). Mel-cepstra of order 24 (alpha 0.42), c0 excluded, silent frames dropped.
    """
    return mcd_frames(mcep_features(reference, sample_rate, f0_method, threshold_db),
                      mcep_features(converted, sample_rate, f0_method, threshold_db))


# ----------------------------------------------------------------------------- speaker similarity

class SpeakerEncoder:
    """resemblyzer's pretrained GE2E speaker encoder, loaded offline on the CPU.

    `embed(wav)` takes a (n,) float waveform at 16 kHz and returns a (256,) float32 unit
    vector. Volume is normalised and long pauses trimmed first (resemblyzer's preprocessing);
    if trimming would leave nothing, the untrimmed waveform is used.
    """

    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # resemblyzer imports scipy.ndimage.morphology
            try:
                from resemblyzer import VoiceEncoder, normalize_volume, preprocess_wav
                from resemblyzer.hparams import audio_norm_target_dBFS
            except ImportError as exc:
                raise SpeechVQError(
                    f"speaker similarity needs resemblyzer ({exc}); "
                    "install it with `pip install --no-deps resemblyzer webrtcvad-wheels`"
                ) from None
        self._preprocess = preprocess_wav
        self._normalize = lambda wav: normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
        self._encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """(n,) float32 waveform at 16 kHz -> (256,) float32 unit-norm speaker embedding."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if not np.any(wav):
            raise SpeechVQError("cannot embed a silent (all-zero) waveform")
        processed = self._preprocess(wav)
        if processed.size < SAMPLE_RATE // 10:  # the voice activity detector found (almost) no speech
            processed = self._normalize(wav)
        return self._encoder.embed_utterance(processed.astype(np.float32)).astype(np.float32)


def centroid(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Speaker centroid: the L2-normalised mean of (256,) utterance embeddings -> (256,) float32."""
    stacked = np.stack([np.asarray(e, dtype=np.float64) for e in embeddings])
    mean = stacked.mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors, in [-1, 1]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


# ----------------------------------------------------------------------------- content preservation

@torch.no_grad()
def encode_codes(vqvae: torch.nn.Module, wav: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Codes of a (n,) float waveform at 16 kHz: (ceil(n / 64),) int64, via `vqvae.encode`."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32).reshape(1, -1), device=device)
    return vqvae.encode(x)[0].cpu().numpy()


def share_equal(a: Sequence, b: Sequence) -> float:
    """Share of positions where `a` and `b` agree, over their common length (in [0, 1])."""
    length = min(len(a), len(b))
    if length == 0:
        raise SpeechVQError("cannot compare codes of an empty waveform")
    return float(np.mean(np.asarray(a[:length]) == np.asarray(b[:length])))


def code_agreement(vqvae: torch.nn.Module, converted_wav: np.ndarray, source_wav: np.ndarray,
                   device: torch.device | str = "cpu") -> float:
    """Share of frames whose code in `converted_wav` equals the code in `source_wav`.

    Both (n,) float waveforms at 16 kHz are encoded with `vqvae.encode` (64 samples per
    frame); the code sequences are cropped to their common length. Returns a share in [0, 1].
    """
    return share_equal(encode_codes(vqvae, converted_wav, device), encode_codes(vqvae, source_wav, device))


def phone_agreement(codes: np.ndarray, code_to_phone: Sequence[str], labels: Sequence[str | None]) -> float | None:
    """Share of labelled frames whose code maps (many-to-one, from the probe) to the aligned phone.

    codes: (F,) codes of a converted utterance; code_to_phone: phone name of each of the K
    codes (the probe's ``code_to_phone``); labels: the source utterance's phone per frame
    (None where unaligned). Frames are cropped to the common length; frames whose label is
    None or not one of the mapping's phones (e.g. silence the probe excluded) are skipped.
    Returns None when no frame is left.
    """
    known = set(code_to_phone)
    pairs = [(code_to_phone[int(c)], label) for c, label in zip(codes, labels) if label is not None and label in known]
    if not pairs:
        return None
    return float(np.mean([predicted == label for predicted, label in pairs]))


# ----------------------------------------------------------------------------- voicing, pitch, flatness

def voiced_retention(source_f0: np.ndarray, output_f0: np.ndarray) -> float | None:
    """Share of the source's voiced frames that are voiced in the output, in [0, 1].

    source_f0, output_f0: (F,) F0 tracks in hertz on the same frame grid, 0 where unvoiced,
    compared frame by frame (no alignment) over their common length. None when the source has
    no voiced frame there.
    """
    length = min(len(source_f0), len(output_f0))
    voiced = np.asarray(source_f0[:length]) > 0
    if not voiced.any():
        return None
    return float(np.mean(np.asarray(output_f0[:length])[voiced] > 0))


def f0_error_cents(reference_f0: np.ndarray, output_f0: np.ndarray) -> float | None:
    """Median absolute F0 difference in cents (1200 per octave) over the frames voiced in both.

    reference_f0, output_f0: (F,) F0 tracks in hertz on the same frame grid, 0 where unvoiced,
    compared frame by frame over their common length. None when no frame is voiced in both.
    """
    length = min(len(reference_f0), len(output_f0))
    reference = np.asarray(reference_f0[:length], dtype=np.float64)
    output = np.asarray(output_f0[:length], dtype=np.float64)
    both = (reference > 0) & (output > 0)
    if not both.any():
        return None
    return float(np.median(cents(output[both], reference[both])))


def spectral_flatness(
    wav: np.ndarray,
    n_fft: int = FLATNESS_N_FFT,
    hop_length: int = FLATNESS_HOP_LENGTH,
    range_db: float = FLATNESS_RANGE_DB,
) -> float:
    """Median spectral flatness (in [0, 1]) of the non-silent frames of a (n,) float waveform.

    Frames of `n_fft` samples every `hop_length` (librosa's centred framing, power spectrum);
    only frames whose RMS is within `range_db` dB of the loudest frame's count. About 0.5 for
    white noise, near 0 for a tone or a voiced vowel. Raises SpeechVQError for a silent waveform.
    """
    import librosa

    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.any(x):
        raise SpeechVQError("cannot compute the spectral flatness of a silent (all-zero) waveform")
    flatness = librosa.feature.spectral_flatness(y=x, n_fft=n_fft, hop_length=hop_length)[0]
    rms = librosa.feature.rms(y=x, frame_length=n_fft, hop_length=hop_length)[0]
    length = min(len(flatness), len(rms))
    level_db = 20.0 * np.log10(np.maximum(rms[:length], 1e-12) / rms[:length].max())
    return float(np.median(flatness[:length][level_db >= -range_db]))


def log_mel_db(x: np.ndarray, hop_length: int = ENVELOPE_HOP_LENGTH) -> np.ndarray:
    """(n,) float waveform -> (ENVELOPE_N_MELS, frames) log-mel power in dB (librosa, centred frames)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(x, dtype=np.float32).reshape(-1), sr=SAMPLE_RATE,
                                         n_fft=ENVELOPE_N_FFT, hop_length=hop_length,
                                         n_mels=ENVELOPE_N_MELS, fmax=SAMPLE_RATE / 2)
    return 10.0 * np.log10(mel + 1e-10)


def envelope_deviations(reference: np.ndarray, estimate: np.ndarray,
                        range_db: float = ENVELOPE_RANGE_DB) -> tuple[np.ndarray, np.ndarray] | None:
    """(bands, frames) log spectra in dB -> their movements (dX, dY), each (bands, kept frames).

    Over the common frames, the reference's within `range_db` dB of its loudest (mean level over
    the bands) are kept and each band's mean over them removed from both. None when fewer than
    two frames are kept.
    """
    frames = min(reference.shape[-1], estimate.shape[-1])
    reference, estimate = reference[:, :frames], estimate[:, :frames]
    level = reference.mean(axis=0)
    keep = level >= level.max() - range_db
    if keep.sum() < 2:
        return None
    return (reference[:, keep] - reference[:, keep].mean(axis=1, keepdims=True),
            estimate[:, keep] - estimate[:, keep].mean(axis=1, keepdims=True))


def envelope_r2(reference: np.ndarray, estimate: np.ndarray, range_db: float = ENVELOPE_RANGE_DB) -> float | None:
    """R^2 of `estimate`'s envelope movements against `reference`'s, at most 1.

    reference, estimate: (bands, frames) log spectra in dB on the same frame grid (`log_mel_db`).
    R^2 = 1 - sum (dY - dX)^2 / sum dX^2 over their `envelope_deviations`. None when fewer than
    two frames qualify or the reference does not move.
    """
    deviations = envelope_deviations(reference, estimate, range_db)
    if deviations is None:
        return None
    dx, dy = deviations
    total = float(np.sum(dx ** 2))
    if total <= 1e-6 * dx.size:  # below 0.001 dB rms: nothing moves
        return None
    return 1.0 - float(np.sum((dy - dx) ** 2)) / total


def envelope_shape(x: np.ndarray, range_db: float = ENVELOPE_RANGE_DB) -> np.ndarray:
    """(n,) float waveform -> (ENVELOPE_N_MELS,) average log-mel shape in dB, mean over bands 0.

    The mean of `log_mel_db` over the frames within `range_db` dB of the loudest (mean over bands).
    """
    mel = log_mel_db(x)
    level = mel.mean(axis=0)
    shape = mel[:, level >= level.max() - range_db].mean(axis=1)
    return shape - shape.mean()


def envelope_shape_error_db(reference_shape: np.ndarray, output_shape: np.ndarray) -> float:
    """Rms over bands (dB) of the difference of two `envelope_shape`s; 0 for a copy."""
    return float(np.sqrt(np.mean((np.asarray(output_shape) - np.asarray(reference_shape)) ** 2)))


def envelope_tilt_db(reference_shape: np.ndarray, output_shape: np.ndarray) -> float:
    """How much brighter `output_shape` is than `reference_shape` (two `envelope_shape`s), in dB.

    The mean over the upper half of the bands (above about 1.8 kHz at 16 kHz) of their
    difference, less its mean over the lower half: positive where the output has more energy
    at high frequencies, relative to low ones, than the reference; 0 for a copy or a gain.
    """
    difference = np.asarray(output_shape, np.float64) - np.asarray(reference_shape, np.float64)
    half = len(difference) // 2
    return float(difference[half:].mean() - difference[:half].mean())


def envelope_dynamics_r2(source: np.ndarray, output: np.ndarray, range_db: float = ENVELOPE_RANGE_DB) -> float | None:
    """Share of the source's spectral-envelope movements that `output` reproduces, at most 1.

    source, output: (n,) float waveforms on the same time axis (a reconstruction), compared over
    their common length: `envelope_r2` of their `log_mel_db` spectrograms (10 ms frames).
    """
    length = min(len(source), len(output))
    return envelope_r2(log_mel_db(source[:length]), log_mel_db(output[:length]), range_db)
