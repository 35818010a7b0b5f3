"""K-means baselines: feature frames aligned with code frames, k-means units scored like codes."""

from __future__ import annotations

import numpy as np
import pytest

from speechvq.analysis.baselines import N_MELS, fit_kmeans, frame_features
from speechvq.analysis.unit_measures import majority_baseline, many_to_one_accuracy, pnmi
from speechvq.audio import num_frames


@pytest.mark.parametrize("num_samples", [1, 63, 64, 65, 16000])
def test_one_feature_frame_per_code_frame(num_samples):
    features = frame_features(np.zeros(num_samples, dtype=np.float32))
    assert features["logmel"].shape == (num_frames(num_samples), N_MELS)
    assert features["mfcc"].shape == (num_frames(num_samples), 39)
    assert features["logmel"].dtype == np.float32 and np.isfinite(features["mfcc"]).all()


def test_feature_frame_is_centred_on_its_code_frame():
    wav = np.zeros(64 * 200, dtype=np.float32)
    wav[64 * 120 + 32] = 1.0  # a click at the centre of code frame 120
    energy = frame_features(wav)["logmel"].mean(axis=1)
    assert int(energy.argmax()) == 120
    assert energy[119] == pytest.approx(energy[121], abs=0.5)  # symmetric around it
    assert energy[0] == pytest.approx(-100.0)  # silence sits at the -100 dB floor


def skewed_phones(n: int, num_phones: int, seed: int) -> np.ndarray:
    p = 1.0 / np.arange(1, num_phones + 1)
    return np.random.default_rng(seed).choice(num_phones, size=n, p=p / p.sum())


def test_kmeans_of_one_hot_phone_features_is_perfect():
    train_y, test_y = skewed_phones(3000, 12, seed=0), skewed_phones(1000, 12, seed=1)
    eye = np.eye(12, dtype=np.float32)
    model = fit_kmeans(eye[train_y], num_clusters=512, seed=0)
    train_units, test_units = model.predict(eye[train_y]), model.predict(eye[test_y])
    assert many_to_one_accuracy(train_units, train_y, test_units, test_y) == 1.0
    assert pnmi(test_units, test_y) == pytest.approx(1.0)


def test_kmeans_of_noise_is_at_the_majority_baseline():
    train_y, test_y = skewed_phones(6000, 8, seed=2), skewed_phones(3000, 8, seed=3)
    rng = np.random.default_rng(4)
    train_x, test_x = rng.normal(size=(6000, 10)).astype(np.float32), rng.normal(size=(3000, 10)).astype(np.float32)
    model = fit_kmeans(train_x, num_clusters=64, seed=0)
    train_units, test_units = model.predict(train_x), model.predict(test_x)
    accuracy = many_to_one_accuracy(train_units, train_y, test_units, test_y)
    assert accuracy == pytest.approx(majority_baseline(test_y, train_y), abs=0.03)
    assert pnmi(test_units, test_y) < 0.05


def test_kmeans_is_seeded_and_caps_clusters_and_frames():
    x = np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32)
    a, b = fit_kmeans(x, num_clusters=8, seed=3), fit_kmeans(x, num_clusters=8, seed=3)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert fit_kmeans(x[:20], num_clusters=512).n_clusters == 20
    assert fit_kmeans(x, num_clusters=8, max_train_frames=50).n_steps_ >= 1
    with pytest.raises(ValueError, match="at least one"):
        fit_kmeans(x[:0])
