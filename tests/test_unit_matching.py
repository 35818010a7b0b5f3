"""tools/unit_matching.py: the quantisations compared in the unit-matching ablation."""

import importlib.util
from pathlib import Path

import pytest
import torch

from speechvq.quantization.vq import nearest_codes

_spec = importlib.util.spec_from_file_location(
    "unit_matching", Path(__file__).resolve().parents[1] / "tools" / "unit_matching.py")
unit_matching = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unit_matching)


@pytest.mark.parametrize("seed", range(4))
def test_base_and_a_weightless_prior_are_the_nearest_code(seed):
    g = torch.Generator().manual_seed(seed)
    codebook, z_e = torch.randn(32, 8, generator=g), torch.randn(50, 8, generator=g)
    counts = torch.randint(0, 20, (32,), generator=g).float()
    nearest = nearest_codes(z_e, codebook)
    assert torch.equal(unit_matching.match_codes(z_e, codebook, "base"), nearest)
    assert torch.equal(unit_matching.match_codes(z_e, codebook, "prior0", counts=counts), nearest)
    # a strong prior moves codes towards the target's frequent ones
    strong = unit_matching.match_codes(z_e, codebook, "prior50", counts=counts)
    assert counts[strong].mean() > counts[nearest].mean()


@pytest.mark.parametrize("seed", range(4))
def test_nearest_neighbour_matching_uses_only_the_targets_units(seed):
    g = torch.Generator().manual_seed(seed)
    codebook, z_e = torch.randn(32, 8, generator=g), torch.randn(50, 8, generator=g)
    own = torch.randperm(32, generator=g)[:6]
    pool = codebook[own].repeat(3, 1)  # the target's frames sit exactly on six codes
    codes = unit_matching.match_codes(z_e, codebook, "knn1", pool=pool)
    assert set(codes.tolist()) <= set(own.tolist())


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        unit_matching.match_codes(torch.zeros(2, 3), torch.zeros(4, 3), "median")
