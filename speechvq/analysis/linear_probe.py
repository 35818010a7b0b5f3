"""Linear probes: how much of a label (phone, speaker) a frame representation makes linearly readable.

Multinomial logistic regression (scikit-learn) on standardised (N, D) features, fitted on a
random subset of training frames and scored on every test frame: accuracy, per-class F1 and
the confusion matrix. Used by `speechvq.analysis.probe` on z_q and z_e.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from speechvq.errors import DataError

DEFAULT_MAX_PROBE_FRAMES = 20000
DEFAULT_MAX_ITER = 200


@dataclass
class LinearProbeResult:
    """A fitted-and-scored linear probe.

    accuracy: share of test frames predicted right; f1: (C,) per-class F1 on the test frames
    (classes 0..C-1, 0 for a class never predicted nor present); confusion: (C, C) int64
    counts, rows = true class, columns = predicted class; num_train: frames the probe saw.
    """

    accuracy: float
    f1: np.ndarray
    confusion: np.ndarray
    num_train: int
    predictions: np.ndarray = field(repr=False)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, max_train_frames: int = DEFAULT_MAX_PROBE_FRAMES,
                 max_iter: int = DEFAULT_MAX_ITER, seed: int = 0) -> LinearProbeResult:
    """Multinomial logistic regression from (N, D) features to (N,) int class ids in [0, num_classes).

    Features are standardised with the training statistics; at most `max_train_frames`
    training frames (drawn at random with `seed`) are used and lbfgs stops after `max_iter`
    iterations (a probe, not a converged classifier). Scored on all test frames.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix, f1_score
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_x, test_x = np.asarray(train_x, dtype=np.float32), np.asarray(test_x, dtype=np.float32)
    train_y, test_y = np.asarray(train_y, dtype=np.int64), np.asarray(test_y, dtype=np.int64)
    if len(train_y) == 0 or len(test_y) == 0:
        raise DataError("a linear probe needs training and test frames; none were left")
    if len(train_y) > max_train_frames:
        pick = np.random.default_rng(seed).choice(len(train_y), size=max_train_frames, replace=False)
        train_x, train_y = train_x[pick], train_y[pick]
    if len(np.unique(train_y)) < 2:
        predictions = np.full(len(test_y), int(train_y[0]), dtype=np.int64)
    else:
        scaler = StandardScaler().fit(train_x)
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        # One BLAS/OpenMP thread: on a shared or small CPU, sklearn's threaded loss is several times slower.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(scaler.transform(train_x), train_y)
        predictions = model.predict(scaler.transform(test_x)).astype(np.int64)
    classes = np.arange(num_classes)
    return LinearProbeResult(
        accuracy=float(np.mean(predictions == test_y)),
        f1=f1_score(test_y, predictions, labels=classes, average=None, zero_division=0.0),
        confusion=confusion_matrix(test_y, predictions, labels=classes),
        num_train=int(len(train_y)),
        predictions=predictions,
    )
