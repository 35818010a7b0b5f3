"""K-means baselines for the unit probes: what clustering plain spectral frames gives.

The field's yardstick for discovered speech units is k-means on hand-made features (the
first iteration of HuBERT, Hsu et al. 2021, clusters MFCCs; the ZeroSpeech challenges ship
MFCC baselines). Two feature kinds are computed here, one vector centred on each 64-sample
code frame, so that a feature frame and a code frame cover the same time and an utterance of
n samples has ``num_frames(n)`` of both:

* ``logmel``: 80 mel bands (Slaney scale, 0 to 8 kHz) of a 400-sample (25 ms) Hann window,
  power in dB with a floor at -100 dB; (F, 80) float32;
* ``mfcc``: 13 cepstral coefficients (DCT-II) of that log-mel spectrum, plus their first and
  second time derivatives (9-frame regression, edges repeated); (F, 39) float32.

`fit_kmeans` clusters training frames with scikit-learn's MiniBatchKMeans (fixed seed); the
cluster ids then play the part of codes in the counting measures
(`speechvq.analysis.unit_measures`).
"""

from __future__ import annotations

import warnings

import numpy as np

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, num_frames

FEATURE_KINDS = ("logmel", "mfcc")
N_FFT = 400  # 25 ms at 16 kHz
N_MELS = 80
N_MFCC = 13
DELTA_WIDTH = 9
POWER_FLOOR = 1e-10  # -100 dB
DEFAULT_NUM_CLUSTERS = 512
DEFAULT_MAX_KMEANS_FRAMES = 50000
_KMEANS_BATCH = 1024
_KMEANS_INITS = 3


def frame_features(wav: np.ndarray) -> dict[str, np.ndarray]:
    """Log-mel and MFCC+Δ+ΔΔ frames of a (n,) float32 16 kHz waveform.

    Frame i is centred on sample 64 i + 32, the centre of code frame i (the signal is
    zero-padded at both ends). Returns {"logmel": (F, 80), "mfcc": (F, 39)} float32 arrays
    with F = ceil(n / 64).
    """
    import librosa

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    frames = num_frames(wav.size)
    left = N_FFT // 2 - HOP_LENGTH // 2  # analysis window j then starts 64 j - left, centred on 64 j + 32
    padded = np.zeros(HOP_LENGTH * (frames - 1) + N_FFT, dtype=np.float32)
    padded[left:left + wav.size] = wav
    power = librosa.feature.melspectrogram(y=padded, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                           center=False, n_mels=N_MELS, power=2.0)  # (80, F)
    logmel = librosa.power_to_db(power, ref=1.0, amin=POWER_FLOOR, top_db=None)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=N_MFCC)  # (13, F)
    deltas = [librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=order, mode="nearest") for order in (1, 2)]
    return {"logmel": logmel.T.astype(np.float32), "mfcc": np.concatenate([mfcc, *deltas]).T.astype(np.float32)}


def fit_kmeans(features: np.ndarray, num_clusters: int = DEFAULT_NUM_CLUSTERS, seed: int = 0,
               max_train_frames: int = DEFAULT_MAX_KMEANS_FRAMES):
    """MiniBatchKMeans fitted to (N, D) training frames; returns the fitted estimator.

    At most `max_train_frames` frames are used (a random subset drawn with `seed`, also the
    k-means seed). `num_clusters` is lowered to the number of frames when there are fewer
    (the estimator's ``n_clusters`` says how many it has). Its ``predict`` maps (M, D)
    float32 frames to (M,) int cluster ids.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    if len(features) == 0:
        raise ValueError("k-means needs at least one training frame")
    if len(features) > max_train_frames:
        pick = np.random.default_rng(seed).choice(len(features), size=max_train_frames, replace=False)
        features = features[pick]
    model = MiniBatchKMeans(n_clusters=min(num_clusters, len(features)), batch_size=_KMEANS_BATCH,
                            n_init=_KMEANS_INITS, random_state=seed)
    # One BLAS/OpenMP thread, as the linear probes: faster on a small or shared CPU.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct frames than clusters
        model.fit(features)
    return model
