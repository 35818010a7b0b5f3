"""tools/envelope_ceiling.py: the readout of the envelope from code vectors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

_spec = importlib.util.spec_from_file_location(
    "envelope_ceiling", Path(__file__).resolve().parents[1] / "tools" / "envelope_ceiling.py")
envelope_ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(envelope_ceiling)


def test_context_features_stack_neighbours_with_repeated_edges_and_the_speaker():
    z = np.arange(12, dtype=np.float32).reshape(4, 3)  # 4 frames of 3 channels
    x = envelope_ceiling.context_features(z, speaker=1, num_speakers=3, context=1)
    assert x.shape == (4, 3 * 3 + 3)
    np.testing.assert_array_equal(x[0, :9], np.concatenate([z[0], z[0], z[1]]))  # edge repeated
    np.testing.assert_array_equal(x[2, :9], np.concatenate([z[1], z[2], z[3]]))
    np.testing.assert_array_equal(x[:, 9:], np.tile([0, 1, 0], (4, 1)))


@pytest.mark.parametrize("seed", range(3))
def test_a_readout_of_codes_that_carry_the_envelope_scores_near_one_and_of_noise_near_zero(seed):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, 20))

    def utterances(count):
        codes = [rng.normal(size=(60, 8)) for _ in range(count)]
        return codes, [(c @ mixing).T * 5.0 for c in codes]  # (bands, frames) log spectra in dB

    train_codes, train_mels = utterances(20)
    test_codes, test_mels = utterances(5)
    readout = envelope_ceiling.fit_readout(np.concatenate(train_codes), np.concatenate([m.T for m in train_mels]))
    carried = envelope_ceiling.pooled_envelope_r2(test_mels, [readout.predict(c).T for c in test_codes])
    noise = [rng.normal(size=c.shape) for c in train_codes]
    blind = envelope_ceiling.fit_readout(np.concatenate(noise), np.concatenate([m.T for m in train_mels]))
    missed = envelope_ceiling.pooled_envelope_r2(
        test_mels, [blind.predict(rng.normal(size=c.shape)).T for c in test_codes])
    assert carried > 0.99 and missed < 0.05


def test_pooled_r2_is_undefined_when_nothing_moves():
    flat = np.zeros((4, 10))
    with pytest.raises(ValueError, match="undefined"):
        envelope_ceiling.pooled_envelope_r2([flat], [flat])
