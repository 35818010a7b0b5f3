"""The code prior: causality, the uniform start, learning, sampling, speaker conditioning, configs."""

from __future__ import annotations

import math

import pytest
import torch

from speechvq.config import compose
from speechvq.models.builders import build_prior
from speechvq.models.prior import Prior, unigram_entropy_bits

K = 512



def tiny_prior(num_speakers: int = 0, zero_init_output: bool = False, seed: int = 0) -> Prior:
    """A 2-layer prior in eval mode; a random output layer unless `zero_init_output`."""
    torch.manual_seed(seed)
    return Prior(num_codes=K, dim=32, layers=2, heads=2, max_len=256, num_speakers=num_speakers,
                 zero_init_output=zero_init_output).eval()


@pytest.mark.parametrize("t", [0, 7, 18])
def test_changing_code_t_changes_no_prediction_up_to_t_and_changes_t_plus_1(t):
    prior = tiny_prior()
    codes = torch.randint(0, K, (2, 20), generator=torch.Generator().manual_seed(t))
    changed = codes.clone()
    changed[:, t] = (changed[:, t] + 1 + torch.arange(2) * 100) % K
    with torch.no_grad():
        before, after = prior(codes), prior(changed)
    assert before.shape == (2, 20, K)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-6)
    if t + 1 < codes.shape[1]:
        assert (after[:, t + 1] - before[:, t + 1]).abs().amax() > 1e-3


def test_untrained_zero_logit_prior_costs_exactly_log2_k_bits_per_code():
    prior = tiny_prior(num_speakers=3, zero_init_output=True)
    codes = torch.randint(0, K, (3, 40))
    bits = prior.nll_bits(codes, torch.tensor([0, 2, -1]))
    assert bits.shape == (3, 40)
    torch.testing.assert_close(bits, torch.full_like(bits, math.log2(K)), rtol=0, atol=1e-5)
    assert math.log2(K) == 9.0


def test_tiny_prior_overfits_a_short_code_sequence():
    torch.manual_seed(0)
    prior = Prior(num_codes=K, dim=32, layers=2, heads=2, max_len=64)
    codes = torch.randint(0, K, (1, 32))
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(prior.nll_bits(codes).mean())
    for _ in range(60):
        loss = prior.nll_bits(codes).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    with torch.no_grad():
        last = float(prior.nll_bits(codes).mean())
    assert first == pytest.approx(9.0, abs=1e-4)
    assert last < 1.0
    # ... and it has learnt the sequence: greedy sampling reproduces it
    assert torch.equal(prior.sample(1, 32, temperature=0), codes)


def test_sampling_with_a_seed_is_reproducible_and_the_cache_matches_full_recomputation():
    prior = tiny_prior(num_speakers=2)
    speaker = torch.tensor([0, 1, -1])

    def draw(seed, **kwargs):
        return prior.sample(3, 40, speaker, temperature=1.0, generator=torch.Generator().manual_seed(seed), **kwargs)

    first = draw(5)
    assert first.shape == (3, 40) and first.dtype == torch.int64
    assert first.min() >= 0 and first.max() < K
    assert torch.equal(first, draw(5))
    assert not torch.equal(first, draw(6))
    # The cached steps draw what a full recomputation of every prefix draws from the same seed.
    generator, recomputed = torch.Generator().manual_seed(5), torch.zeros(3, 0, dtype=torch.long)
    with torch.no_grad():
        for _ in range(40):
            # forward() shifts its input right, so a dummy code at the last position is never seen.
            logits = prior(torch.cat((recomputed, recomputed.new_zeros(3, 1)), dim=1), speaker)[:, -1].float()
            drawn = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            recomputed = torch.cat((recomputed, drawn), dim=1)
    assert torch.equal(first, recomputed)


def test_greedy_and_top_1_sampling_follow_the_argmax_of_the_forward_pass():
    prior = tiny_prior()
    greedy = prior.sample(2, 16, temperature=0)
    with torch.no_grad():
        assert torch.equal(prior(greedy).argmax(-1), greedy)
    top1 = prior.sample(2, 16, temperature=1.3, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(top1, greedy)


def test_top_k_restricts_each_draw_to_the_k_most_likely_codes():
    prior = tiny_prior()
    drawn = prior.sample(4, 12, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        top3 = prior(drawn).topk(3, dim=-1).indices  # (B, F, 3)
    assert (top3 == drawn.unsqueeze(-1)).any(-1).all()


def test_speaker_conditioning_changes_predictions_and_minus_one_means_none():
    prior = tiny_prior(num_speakers=3)
    codes = torch.randint(0, K, (1, 10)).repeat(3, 1)
    with torch.no_grad():
        logits = prior(codes, torch.tensor([0, 1, -1]))
        unconditioned = prior(codes, None)
    assert (logits[0] - logits[1]).abs().amax() > 1e-3
    torch.testing.assert_close(logits[2], unconditioned[2])
    with pytest.raises(ValueError, match="speaker index"):
        prior(codes, torch.tensor([0, 1, 3]))


def test_sequences_longer_than_max_len_are_refused():
    prior = tiny_prior()
    with pytest.raises(ValueError, match="max_len"):
        prior(torch.zeros(1, 257, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        prior.sample(1, 257)


def test_unigram_entropy():
    assert unigram_entropy_bits([5, 5, 0, 0]) == pytest.approx(1.0)
    assert unigram_entropy_bits(torch.ones(512, dtype=torch.int64)) == pytest.approx(9.0)
    assert unigram_entropy_bits([7, 0]) == 0.0


@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_prior_presets_compose_and_build(preset):
    cfg = compose("train_prior", ["run_dir=r", "codes=c", f"prior={preset}"])
    prior = build_prior(cfg.prior, num_codes=K, num_speakers=4)
    assert prior.num_codes == K and prior.num_speakers == 4
    assert cfg.data.crop_codes <= prior.max_len
    unconditional = build_prior({**cfg.prior, "speaker_conditioning": False}, num_codes=K, num_speakers=4)
    assert unconditional.num_speakers == 0
