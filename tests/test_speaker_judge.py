"""The speaker judge, the conversion contour, and the decoder's training-only parts (judge, discriminator)."""

from __future__ import annotations

import math

import pytest
import torch

from speechvq.errors import SpeechVQError
from speechvq.models.source_filter import SourceFilterDecoder
from speechvq.modules.speaker_judge import SpeakerJudge, centre_log_f0


@pytest.mark.parametrize("length", [300, 1001, 8192])
def test_the_judge_gives_one_logit_per_speaker_for_any_length(length):
    torch.manual_seed(0)
    judge = SpeakerJudge(num_speakers=5, channels=8)
    assert judge(torch.randn(3, length)).shape == (3, 5)


def test_the_judge_refuses_bad_sizes_naming_them():
    with pytest.raises(ValueError, match="got 0, 8, 40"):
        SpeakerJudge(num_speakers=0, channels=8)
    with pytest.raises(SpeechVQError, match="speaker_judge_weight"):
        SourceFilterDecoder(speaker_judge_weight=-0.1)
    with pytest.raises(SpeechVQError, match="speaker_judge_channels"):
        SourceFilterDecoder(speaker_judge_weight=0.1, speaker_judge_channels=0)


def _voice(f0: float, formant: float, n: int, length: int = 4096) -> torch.Tensor:
    """n items of a pulse train at f0 through a resonance at `formant` hertz, random phase and level."""
    t = torch.arange(length) / 16000
    phase = torch.rand(n, 1) * 2 * math.pi
    wav = sum(torch.sin(2 * math.pi * k * f0 * t + k * phase) / (1 + ((k * f0 - formant) / 150) ** 2)
              for k in range(1, int(4000 / f0)))
    return wav * (0.1 + 0.3 * torch.rand(n, 1)) + 0.003 * torch.randn(n, length)


def test_the_judge_learns_to_tell_two_voices_with_the_same_pitch_apart():
    torch.manual_seed(0)
    judge = SpeakerJudge(num_speakers=2, channels=16)
    optimiser = torch.optim.Adam(judge.parameters(), lr=3e-3)
    labels = torch.tensor([0] * 4 + [1] * 4)
    for _ in range(30):
        wav = torch.cat([_voice(120.0, 500.0, 4), _voice(120.0, 900.0, 4)])
        loss = torch.nn.functional.cross_entropy(judge(wav), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_out = torch.cat([_voice(125.0, 500.0, 4), _voice(125.0, 900.0, 4)])
    assert torch.equal(judge(held_out).argmax(-1), labels)


def test_the_contour_is_centred_on_the_target_mean_and_keeps_its_shape():
    torch.manual_seed(0)
    f0 = torch.exp(4.5 + 0.3 * torch.randn(6, 40)) * (torch.rand(6, 40) > 0.4)
    f0[5] = 0.0  # an item without voiced frames
    target = torch.log(torch.tensor([100.0, 150.0, 220.0, 300.0, 90.0, 200.0]))
    out = centre_log_f0(f0, target)
    voiced = f0 > 0
    assert torch.equal(out > 0, voiced)
    for i in range(5):
        logs = out[i][voiced[i]].log()
        assert float(logs.mean()) == pytest.approx(float(target[i]), abs=1e-5)
        # one factor for every frame: the intervals of the contour are kept
        ratio = out[i][voiced[i]] / f0[i][voiced[i]]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)
    assert torch.equal(out[5], f0[5])


def _decoder(**extra) -> SourceFilterDecoder:
    return SourceFilterDecoder(code_dim=8, num_speakers=3, speaker_dim=4, cond_channels=8, residual_channels=8,
                               gate_channels=16, skip_channels=8, layers=4, speaker_judge_channels=8, **extra)


def _batch():
    t = torch.arange(2048) / 16000
    wav = (0.3 * torch.sin(2 * math.pi * 200 * t))[None].repeat(3, 1)
    f0 = torch.tensor([100.0, 200.0, 0.0])[:, None].repeat(1, 32)
    return wav, torch.randn(3, 8, 32), torch.tensor([0, 1, 2]), f0


@pytest.mark.parametrize("extra,prefix,own,outputs,weighted", [
    ({"adversarial_weight": 1.5, "feature_matching_weight": 3.0, "discriminator_channels": 4}, "discriminator.",
     "discriminator", ("adversarial", "feature_matching"), {"adversarial": 1.5, "feature_matching": 3.0}),
    ({"speaker_judge_weight": 0.5}, "speaker_judge.", "speaker_judge", ("speaker_own", "speaker_converted"),
     {"speaker_own": 0.5, "speaker_converted": 0.5}),
])
def test_each_judge_learns_only_from_its_own_term_and_the_decoder_from_the_others(extra, prefix, own, outputs,
                                                                                  weighted):
    torch.manual_seed(0)
    decoder = _decoder(**extra)
    decoder.train()
    terms = decoder.loss(*_batch())
    judge = [p for name, p in decoder.named_parameters() if name.startswith(prefix)]
    generator = [p for name, p in decoder.named_parameters() if not name.startswith(prefix)]
    for name in outputs:
        assert all(g is None for g in torch.autograd.grad(terms[name], judge, retain_graph=True, allow_unused=True))
        moved = torch.autograd.grad(terms[name], decoder.source_in.weight, retain_graph=True)[0]
        assert moved.abs().sum() > 0
    assert all(g is None for g in torch.autograd.grad(terms[own], generator, retain_graph=True, allow_unused=True))
    expected = terms["stft_convergence"] + terms["stft_log_magnitude"] + terms["f0_loss"] + terms[own]
    expected = expected + sum(w * terms[name] for name, w in weighted.items())
    assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_a_conversion_is_rendered_with_another_speaker_at_that_speakers_mean_pitch():
    torch.manual_seed(0)
    decoder = _decoder(speaker_judge_weight=0.5)
    decoder.train()
    rendered = []
    decoder.speaker_embedding.register_forward_hook(lambda _m, args, _out: rendered.append(args[0].clone()))
    contours = []
    decoder.source_in.register_forward_pre_hook(lambda _m, args: contours.append(args[0][:, 0].clone()))
    wav, z_q, speaker, f0 = _batch()
    for _ in range(5):
        rendered.clear()
        contours.clear()
        decoder.loss(wav, z_q, speaker, f0)
        own, converted = rendered
        assert torch.equal(own, speaker) and bool((converted != speaker).all())
    # running means: speaker 0 at 100 Hz, speaker 1 at 200 Hz, speaker 2 never voiced
    assert decoder.speaker_log_f0_count.tolist() == [5.0, 5.0, 0.0]
    means = decoder.speaker_log_f0_sum[:2] / decoder.speaker_log_f0_count[:2]
    assert torch.allclose(means, torch.log(torch.tensor([100.0, 200.0])))
    # the last conversion's first harmonic: at its target's mean F0 (an unvoiced item and an unknown target unchanged)
    sources = (100.0, 200.0, 0.0)
    for item, target in enumerate(converted.tolist()):
        hz = sources[item] if sources[item] == 0 or target == 2 else sources[target]
        crossings = int((contours[1][item].sign().diff() != 0).sum())
        assert crossings == pytest.approx(2 * hz * 2048 / 16000, abs=2)


@pytest.mark.parametrize("extra,prefixes", [
    ({"adversarial_weight": 1.0, "discriminator_channels": 4}, ("discriminator.",)),
    ({"speaker_judge_weight": 0.5}, ("speaker_judge.", "speaker_log_f0")),
])
def test_training_only_parts_change_neither_evaluation_nor_generation(extra, prefixes):
    """The discriminator and the speaker judge: no terms in eval mode, never run by generation."""
    torch.manual_seed(0)
    decoder = _decoder(**extra)
    plain = _decoder()
    assert not any(k.startswith(prefixes) for k in plain.state_dict())
    plain.load_state_dict({k: v for k, v in decoder.state_dict().items() if not k.startswith(prefixes)})
    decoder.eval()
    plain.eval()
    batch = _batch()
    torch.manual_seed(1)
    scored = decoder.loss(*batch)
    torch.manual_seed(1)
    reference = plain.loss(*batch)
    assert scored.keys() == reference.keys()
    assert float(scored["loss"].detach()) == pytest.approx(float(reference["loss"].detach()))
    generator = torch.Generator().manual_seed(2)
    out = decoder(batch[1], batch[2], batch[3], generator=generator)
    assert torch.equal(out, plain(batch[1], batch[2], batch[3], generator=generator.manual_seed(2)))


def test_one_speaker_is_judged_on_reconstructions_only():
    torch.manual_seed(0)
    decoder = SourceFilterDecoder(code_dim=8, num_speakers=1, speaker_dim=4, cond_channels=8, residual_channels=8,
                                  gate_channels=16, skip_channels=8, layers=4, speaker_judge_channels=8,
                                  speaker_judge_weight=0.5)
    decoder.train()
    wav, z_q, _, f0 = _batch()
    terms = decoder.loss(wav, z_q, torch.zeros(3, dtype=torch.long), f0)
    assert "speaker_own" in terms and "speaker_converted" not in terms

