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
