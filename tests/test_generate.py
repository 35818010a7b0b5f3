"""Batched generation: exact against a naive loop, reproducible with a seed, speaker-dependent."""

import numpy as np
import pytest
import torch

from speechvq.errors import SpeechVQError
from speechvq.inference.generate import generate
from wavenet_testutils import CODE_DIM, HOP, tiny_decoder


def _decoder(output="mulaw", seed=0):
    """Sharper outputs so that sampled audio depends visibly on the conditioning."""
    return tiny_decoder(output, seed, head_gain=20.0)


def _codes(batch, frames, seed=1):
    return torch.randn(batch, CODE_DIM, frames, generator=torch.Generator().manual_seed(seed))


def _naive_argmax(dec, z_q, speaker, length):
    """Greedy decoding by re-running the teacher-forced pass for every sample of one utterance."""
    wav = torch.zeros(1, length)
    with torch.no_grad():
        for t in range(length):
            params = dec(wav[:, :t + 1], z_q, speaker)[:, :, t]
            wav[0, t] = dec.output.sample(params, argmax=True)[0]
    return wav[0].numpy()


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_argmax_generation_equals_naive_loop_with_mixed_lengths(output):
    dec = _decoder(output)
    lengths = [21, 8, 14]
    z_q = _codes(3, 6)
    speaker = torch.tensor([2, 0, 1])
    audio = generate(dec, z_q, speaker, lengths, argmax=True, progress=False)
    assert [len(a) for a in audio] == lengths
    for b, n in enumerate(lengths):
        expected = _naive_argmax(dec, z_q[b:b + 1, :, :-(-n // HOP)], speaker[b:b + 1], n)
        np.testing.assert_allclose(audio[b], expected, atol=1e-5)


@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_same_seed_same_audio_and_different_seed_different(output):
    dec = _decoder(output)
    z_q, speaker = _codes(2, 10), torch.tensor([0, 1])
    a = generate(dec, z_q, speaker, [40, 33], seed=3, progress=False)
    b = generate(dec, z_q, speaker, [40, 33], seed=3, progress=False)
    c = generate(dec, z_q, speaker, [40, 33], seed=4, progress=False)
    for x, y, w in zip(a, b, c):
        assert x.dtype == np.float32 and np.abs(x).max() <= 1.0
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, w)


def test_different_speakers_give_different_audio_from_the_same_codes():
    dec = _decoder()
    z_q = _codes(1, 10).repeat(3, 1, 1)
    audio = generate(dec, z_q, torch.tensor([0, 1, 2]), [40] * 3, seed=0, progress=False)
    assert not np.array_equal(audio[0], audio[1])
    assert not np.array_equal(audio[1], audio[2])


def test_temperature_zero_is_argmax():
    dec = _decoder()
    z_q, speaker = _codes(2, 5), torch.tensor([0, 2])
    greedy = generate(dec, z_q, speaker, [20, 17], argmax=True, progress=False)
    cold = generate(dec, z_q, speaker, [20, 17], temperature=0.0, seed=1, progress=False)
    for x, y in zip(greedy, cold):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs", [dict(lengths=[25]), dict(lengths=[0]), dict(temperature=-1.0),
                                    dict(use_cuda_graph=True), dict(speaker=torch.tensor([0, 1]))])
def test_bad_arguments_are_refused(kwargs):
    dec = _decoder()
    args = dict(decoder=dec, z_q=_codes(1, 6), speaker=torch.tensor([0]), lengths=[24], progress=False) | kwargs
    if kwargs.get("use_cuda_graph") and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SpeechVQError):
        generate(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("output", ["mulaw", "mol"])
def test_cuda_graph_equals_eager(output):
    dec = _decoder(output).cuda()
    z_q, speaker, lengths = _codes(3, 12).cuda(), torch.tensor([0, 1, 2]).cuda(), [48, 30, 45]
    for kwargs in (dict(seed=5), dict(argmax=True)):
        eager = generate(dec, z_q, speaker, lengths, progress=False, use_cuda_graph=False, **kwargs)
        graph = generate(dec, z_q, speaker, lengths, progress=False, use_cuda_graph=True, **kwargs)
        assert [len(a) for a in graph] == lengths
        for x, y in zip(eager, graph):
            np.testing.assert_array_equal(x, y)


def test_numpy_and_torch_engines_sample_alike():
    """The CPU NumPy engine and the torch engine (the CUDA path, run eagerly) draw the same samples."""
    from speechvq.inference.generate import _conditioning, _NumpyMuLawEngine, _TorchEngine

    dec = _decoder()
    z_q, speaker = _codes(2, 3), torch.tensor([1, 2])
    noise = torch.rand(3, HOP, 2, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        local, global_ = _conditioning(dec, z_q, speaker, [12, 12])
        fast = _NumpyMuLawEngine(dec, local, global_, temperature=0.8, argmax=False)
        eager = _TorchEngine(dec, local, global_, temperature=0.8, argmax=False, use_cuda_graph=False)
        for frame in range(3):
            torch.testing.assert_close(fast.run_frame(frame, noise[frame]), eager.run_frame(frame, noise[frame]),
                                       rtol=0, atol=0)


@pytest.mark.parametrize("live,fraction,expected", [
    ([True, True, True, True], 0.5, False),     # nobody finished
    ([False, False, False, False], 0.5, False),  # generation is over
    ([True, True, True, False], 0.5, False),    # 3 of 4 live: the graph engine keeps stepping
    ([True, True, False, False], 0.5, True),    # half live: compact
    ([True, False, False, False], 0.5, True),
    ([True, True, True, False], 1.0, True),     # eager engines: compact at once
    ([True] * 5 + [False] * 4, 0.5, False),     # 5 of 9 > half
    ([True] * 4 + [False] * 5, 0.5, True),
])
def test_compaction_policy(live, fraction, expected):
    from speechvq.inference.generate import should_compact

    assert should_compact(np.array(live), fraction) is expected


def test_a_graph_batch_of_b_streams_is_compacted_at_most_log2_b_times():
    from speechvq.inference.generate import should_compact

    lengths = np.arange(1, 257)  # every stream ends at a different frame
    rows, compactions = np.arange(256), 0
    for t in range(257):
        live = lengths[rows] > t
        if should_compact(live, 0.5):
            rows, compactions = rows[live], compactions + 1
    assert compactions <= 8


@pytest.mark.parametrize("output", ["mulaw", "mol"])  # the NumPy engine and the torch engine
@pytest.mark.parametrize("policy", ["never", "half"])
def test_audio_does_not_depend_on_when_the_batch_is_compacted(monkeypatch, output, policy):
    """Finished streams may keep stepping (the CUDA-graph engine): each stream's audio stays the same."""
    import speechvq.inference.generate as gen

    dec = _decoder(output)
    lengths = [9, 40, 17, 26, 5]
    z_q, speaker = _codes(5, 10), torch.tensor([0, 1, 2, 0, 1])
    reference = generate(dec, z_q, speaker, lengths, seed=7, progress=False)
    selects = []
    for engine in (gen._NumpyMuLawEngine, gen._TorchEngine):
        real = engine.select
        monkeypatch.setattr(engine, "select",
                            lambda self, rows, real=real: (selects.append(len(rows)), real(self, rows)))
    real_policy = gen.should_compact
    monkeypatch.setattr(gen, "should_compact", lambda live, fraction: policy == "half" and real_policy(live, 0.5))
    audio = generate(dec, z_q, speaker, lengths, seed=7, progress=False)
    assert selects == ([] if policy == "never" else [2, 1])
    assert [len(a) for a in audio] == lengths
    for x, y in zip(reference, audio):
        if output == "mulaw":  # the same noise and the same bins
            np.testing.assert_array_equal(x, y)
        else:  # the same noise; float samples equal up to rounding (BLAS kernels depend on the batch size)
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
