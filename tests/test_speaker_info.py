"""Utterance speaker identification from unit histograms, leaving one utterance out."""

from __future__ import annotations

import numpy as np
import pytest

from speechvq.analysis.speaker_info import leave_one_out_speaker_accuracy


def test_speaker_specific_units_identify_every_utterance():
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(4), 5)  # 4 speakers x 5 utterances
    histograms = np.zeros((20, 40))
    for u, s in enumerate(speakers):  # speaker s uses units 10 s .. 10 s + 9 only
        histograms[u, 10 * s:10 * s + 10] = rng.integers(1, 20, 10)
    result = leave_one_out_speaker_accuracy(histograms, speakers)
    assert result == {"accuracy": 1.0, "chance": 0.25, "num_utterances": 20, "num_speakers": 4}


def test_the_left_out_utterance_does_not_vote_for_its_own_speaker():
    # Parallel sentences in speaker-free units: utterance k of every speaker has the same histogram.
    # Left out, an utterance finds its sentence only in the other speakers' centroids.
    sentences = np.random.default_rng(1).integers(0, 30, size=(3, 50)).astype(float)
    histograms = np.concatenate([sentences] * 4)  # 4 speakers x 3 sentences
    speakers = np.repeat(np.arange(4), 3)
    assert leave_one_out_speaker_accuracy(histograms, speakers)["accuracy"] == 0.0


def test_speakers_with_one_utterance_are_candidates_but_not_scored():
    histograms = np.array([[5, 0, 0], [4, 1, 0], [0, 5, 1], [0, 0, 7]], dtype=float)
    speakers = [0, 0, 1, 2]
    result = leave_one_out_speaker_accuracy(histograms, speakers)
    assert result["num_utterances"] == 2 and result["accuracy"] == 1.0
    assert result["chance"] == pytest.approx(1 / 3)
