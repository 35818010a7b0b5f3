"""How much the codes say about the speaker: what voice conversion needs to be low.

Two measures on a prepared corpus, fitted on the train split and scored on held-out utterances:

- ``frame_speaker_accuracy``: each code is mapped to the speaker it occurs with most often in
  training (many-to-one); the share of held-out frames whose code maps to their true speaker.
- ``utterance_speaker_accuracy``: each utterance becomes its normalised histogram of codes;
  a held-out utterance is assigned the speaker whose training centroid (mean histogram) is
  closest in cosine; the share assigned correctly.

``chance`` is 1 / number of speakers. Units free of the speaker score near chance on both;
speaker-dependent units score far above it, the utterance level first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def speaker_information(codes: Sequence[np.ndarray], speakers: Sequence[int], train: Sequence[bool],
                        num_codes: int) -> dict[str, float]:
    """Speaker information of per-utterance (F_i,) int code sequences.

    Args:
        codes: one code sequence per utterance.
        speakers: the utterance's speaker index.
        train: True for utterances used to fit, False for those scored.
        num_codes: K.
    Returns:
        frame_speaker_accuracy, utterance_speaker_accuracy, chance, num_speakers,
        num_test_utterances.
    """
    speakers = np.asarray(speakers)
    train = np.asarray(train, dtype=bool)
    num_speakers = int(speakers.max()) + 1
    if train.all() or not train.any():
        raise ValueError("speaker_information needs both training and held-out utterances")
    histograms = np.stack([np.bincount(np.asarray(c, np.int64), minlength=num_codes) for c in codes]).astype(np.float64)
    joint = np.zeros((num_codes, num_speakers))
    for h, s in zip(histograms[train], speakers[train]):
        joint[:, s] += h
    code_to_speaker = joint.argmax(axis=1)
    held_out = histograms[~train]
    frame_hits = sum(h[code_to_speaker == s].sum() for h, s in zip(held_out, speakers[~train]))
    frame_accuracy = float(frame_hits / held_out.sum())
    normalised = histograms / np.linalg.norm(histograms, axis=1, keepdims=True).clip(min=1e-12)
    centroids = np.stack([normalised[train & (speakers == s)].mean(axis=0) if (train & (speakers == s)).any()
                          else np.zeros(num_codes) for s in range(num_speakers)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True).clip(min=1e-12)
    predicted = (normalised[~train] @ centroids.T).argmax(axis=1)
    return {
        "frame_speaker_accuracy": frame_accuracy,
        "utterance_speaker_accuracy": float((predicted == speakers[~train]).mean()),
        "chance": 1.0 / num_speakers,
        "num_speakers": float(num_speakers),
        "num_test_utterances": float((~train).sum()),
    }
