"""How much the codes say about the speaker: what voice conversion needs to be low.

Two measures on a prepared corpus, fitted on the train split and scored on held-out utterances:

- ``frame_speaker_accuracy``: each code is mapped to the speaker it occurs with most often in
  training (many-to-one); the share of held-out frames whose code maps to their true speaker.
- ``utterance_speaker_accuracy``: each utterance becomes its normalised histogram of codes;
  a held-out utterance is assigned the speaker whose training centroid (mean histogram) is
  closest in cosine; the share assigned correctly.

``chance`` is 1 / number of speakers. Units free of the speaker score near chance on both;
speaker-dependent units score far above it, the utterance level first.

`leave_one_out_speaker_accuracy` is the utterance measure without a split: every utterance
is scored against the centroids of all the others (its own speaker's centroid leaving it
out). The probe (`speechvq probe`) uses it on all the utterances it encodes, train and test
splits together: nothing in it is fitted to speaker labels but the centroids, and every
utterance is scored, where the train/test form would score only the few test utterances.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of a 2-D array scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


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
    normalised = _unit_rows(histograms)
    centroids = _unit_rows(np.stack([normalised[train & (speakers == s)].mean(axis=0) if (train & (speakers == s)).any()
                                     else np.zeros(num_codes) for s in range(num_speakers)]))
    predicted = (normalised[~train] @ centroids.T).argmax(axis=1)
    return {
        "frame_speaker_accuracy": frame_accuracy,
        "utterance_speaker_accuracy": float((predicted == speakers[~train]).mean()),
        "chance": 1.0 / num_speakers,
        "num_speakers": float(num_speakers),
        "num_test_utterances": float((~train).sum()),
    }


def leave_one_out_speaker_accuracy(histograms: np.ndarray, speakers: Sequence[int]) -> dict[str, float | int | None]:
    """Utterance speaker identification from unit histograms, leaving one utterance out.

    Args:
        histograms: (U, K) counts of each unit in each utterance.
        speakers: (U,) speaker index of each utterance.
    Each histogram is scaled to unit L2 norm; a speaker's centroid is the mean of its
    utterances' scaled histograms. Utterance u is assigned the speaker whose centroid is
    closest in cosine, its own speaker's centroid computed without u. Utterances whose speaker
    has no other utterance are not scored.
    Returns:
        accuracy (None when no utterance can be scored), chance (1 / number of speakers),
        num_utterances (scored), num_speakers.
    """
    speakers = np.asarray(speakers, dtype=np.int64)
    num_speakers = int(speakers.max()) + 1 if speakers.size else 0
    normalised = _unit_rows(np.asarray(histograms, dtype=np.float64))  # (U, K)
    sums = np.zeros((num_speakers, normalised.shape[1]))
    np.add.at(sums, speakers, normalised)
    counts = np.bincount(speakers, minlength=num_speakers).astype(np.float64)
    scored = counts[speakers] > 1
    similarity = normalised @ _unit_rows(sums / counts.clip(min=1)[:, None]).T  # (U, S)
    own = _unit_rows((sums[speakers] - normalised) / (counts[speakers] - 1).clip(min=1)[:, None])
    similarity[np.arange(len(speakers)), speakers] = np.sum(normalised * own, axis=1)
    similarity[:, counts == 0] = -np.inf
    correct = similarity.argmax(axis=1) == speakers
    return {
        "accuracy": float(correct[scored].mean()) if scored.any() else None,
        "chance": 1.0 / num_speakers if num_speakers else None,
        "num_utterances": int(scored.sum()),
        "num_speakers": num_speakers,
    }
