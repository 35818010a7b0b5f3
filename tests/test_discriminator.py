"""The multi-period/multi-scale discriminator and the source-filter decoder's adversarial terms."""

from __future__ import annotations

import math

import pytest
import torch

from speechvq.errors import SpeechVQError
from speechvq.models.source_filter import SourceFilterDecoder
from speechvq.modules.discriminator import (
    MultiDiscriminator,
    PeriodDiscriminator,
    adversarial_loss,
    discriminator_loss,
    feature_matching_loss,
    judge_frozen,
)


@pytest.mark.parametrize("length", [1000, 1001, 4096])
def test_every_judge_gives_logits_and_features_for_any_length(length):
    torch.manual_seed(0)
    judges = MultiDiscriminator(channels=4, periods=(2, 3, 5), scales=2)
    out = judges(torch.randn(3, 1, length))
    assert len(out) == 5
    for logits, features in out:
        assert logits.dim() == 2 and logits.shape[0] == 3 and logits.shape[1] >= 1
        assert len(features) >= 5 and all(f.shape[0] == 3 for f in features)


def test_a_period_judge_sees_the_waveform_folded_by_its_period():
    torch.manual_seed(0)
    judge = PeriodDiscriminator(period=4, channels=4)
    x = torch.randn(1, 1, 400)
    first = judge(x)[1][0]  # (1, C, 34, 4): the period is the last axis, untouched by the (5, 1) kernels
    assert first.shape[2:] == (34, 4)
    shifted = x.view(1, 1, 100, 4).roll(1, dims=3).reshape(1, 1, 400)  # each sample moves to another phase
    assert torch.allclose(judge(shifted)[1][0], first.roll(1, dims=3), atol=1e-6)


def test_bad_widths_are_refused_with_the_value():
    with pytest.raises(ValueError, match="channels=6"):
        MultiDiscriminator(channels=6)
    with pytest.raises(SpeechVQError, match="discriminator_channels"):
        SourceFilterDecoder(adversarial_weight=1.0, discriminator_channels=6)
    with pytest.raises(SpeechVQError, match="adversarial_weight"):
        SourceFilterDecoder(adversarial_weight=-1.0)


def _judgement(values: list[float]) -> list:
    return [(torch.full((2, 3), v), [torch.full((2, 4, 5), v)]) for v in values]


def test_least_squares_terms_vanish_exactly_at_their_targets():
    real_ok, fake_ok = _judgement([1.0, 1.0]), _judgement([0.0, 0.0])
    assert float(discriminator_loss(real_ok, fake_ok)) == 0.0
    assert float(adversarial_loss(real_ok)) == 0.0
    assert float(feature_matching_loss(real_ok, real_ok)) == 0.0
    # each judge's term is a mean square: a fake judged 0.5 by both judges costs 2 * 0.25
    assert float(discriminator_loss(real_ok, _judgement([0.5, 0.5]))) == pytest.approx(0.5)
    assert float(adversarial_loss(_judgement([0.5, 0.5]))) == pytest.approx(0.5)
    assert float(feature_matching_loss(real_ok, _judgement([0.5, 1.0]))) == pytest.approx(0.5)


def test_frozen_judge_passes_gradients_to_the_input_only():
    torch.manual_seed(0)
    judges = MultiDiscriminator(channels=4, periods=(2, 3), scales=1)
    wav = torch.randn(2, 1, 512, requires_grad=True)
    frozen = judge_frozen(judges, wav)
    live = judges(wav)
    for (a, _), (b, _) in zip(frozen, live):
        assert torch.equal(a, b)
    adversarial_loss(frozen).backward()
    assert wav.grad.abs().sum() > 0
    assert all(p.grad is None for p in judges.parameters())


def _decoder(**extra) -> SourceFilterDecoder:
    return SourceFilterDecoder(code_dim=8, num_speakers=2, speaker_dim=4, cond_channels=8, residual_channels=8,
                               gate_channels=16, skip_channels=8, layers=4, **extra)


def _batch():
    t = torch.arange(2048) / 16000
    wav = (0.3 * torch.sin(2 * math.pi * 200 * t))[None].repeat(2, 1)
    return wav, torch.randn(2, 8, 32), torch.tensor([0, 1]), torch.full((2, 32), 200.0)


def test_each_side_learns_only_from_its_own_terms():
    torch.manual_seed(0)
    decoder = _decoder(adversarial_weight=1.5, feature_matching_weight=3.0, discriminator_channels=4)
    decoder.train()
    terms = decoder.loss(*_batch())
    judge = list(decoder.discriminator.parameters())
    generator = [p for name, p in decoder.named_parameters() if not name.startswith("discriminator.")]
    # the judges learn from the discriminator term only; the decoder from every other term
    for name in ("adversarial", "feature_matching"):
        assert all(g is None for g in torch.autograd.grad(terms[name], judge, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(terms["discriminator"], generator, retain_graph=True,
                                                      allow_unused=True))
    moved = torch.autograd.grad(terms["adversarial"], decoder.source_in.weight, retain_graph=True)[0]
    assert moved.abs().sum() > 0
    rest = terms["stft_convergence"] + terms["stft_log_magnitude"] + terms["f0_loss"]
    expected = rest + terms["discriminator"] + 1.5 * terms["adversarial"] + 3.0 * terms["feature_matching"]
    assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_adversarial_terms_only_in_training_and_generation_never_judged():
    torch.manual_seed(0)
    decoder = _decoder(adversarial_weight=1.0, discriminator_channels=4)
    plain = _decoder()
    plain.load_state_dict({k: v for k, v in decoder.state_dict().items() if not k.startswith("discriminator.")})
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


def test_the_discriminator_learns_to_tell_a_tone_from_noise():
    torch.manual_seed(0)
    judges = MultiDiscriminator(channels=4, periods=(2, 3), scales=1)
    optimiser = torch.optim.Adam(judges.parameters(), lr=2e-3)
    t = torch.arange(2048) / 16000
    real = (0.3 * torch.sin(2 * math.pi * 200 * t)).expand(4, 1, -1)
    losses = []
    for _ in range(40):
        fake = 0.2 * torch.randn(4, 1, 2048)
        loss = discriminator_loss(judges(real), judges(fake))
        losses.append(float(loss.detach()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert losses[-1] < 0.2 * losses[0]
