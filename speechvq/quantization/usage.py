"""Codebook usage statistics, computed in one place: code counts, perplexity, used and dead codes.

A code histogram ``counts`` (K,) gives the empirical code distribution p_k = counts_k / sum;
its entropy H = -sum_k p_k ln p_k (0 ln 0 = 0, no epsilon), its perplexity exp(H) (1..K: the
number of equally used codes with the same entropy), the codes used at least once and the
dead codes (never used). All-zero counts have entropy 0 and perplexity 1.

Used by the quantizer (per batch, as tensors, so training syncs only at log time), the
VQ-VAE's validation, ``speechvq diagnose``, ``speechvq info``, the probe and the prior's
unigram rate. The same key names everywhere: ``perplexity``, ``used_codes``, ``dead_codes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def code_counts(indices, num_codes: int) -> torch.Tensor:
    """Histogram of integer codes (any shape, torch or numpy) -> (num_codes,) int64 on the codes' device.

    ValueError for a code outside [0, num_codes).
    """
    if isinstance(indices, torch.Tensor):
        codes = indices.reshape(-1).long()
    else:  # a copy: memory-mapped code files are read-only
        codes = torch.from_numpy(np.array(indices, dtype=np.int64).reshape(-1))
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_codes):
        raise ValueError(f"codes must lie in [0, {num_codes}), got {int(codes.min())}..{int(codes.max())}")
    return torch.bincount(codes, minlength=int(num_codes))


@dataclass(frozen=True)
class CodebookUsage:
    """Usage of a codebook of ``num_codes`` codes (tensor fields: no host sync until read).

    Attributes:
        num_codes: K.
        entropy: () float, nats, of the code distribution (the counts' dtype; float64 for integers).
        used_codes: () int64, codes used at least once.
    """

    num_codes: int
    entropy: torch.Tensor
    used_codes: torch.Tensor

    @property
    def perplexity(self) -> torch.Tensor:
        """() float, exp(entropy): 1..K."""
        return torch.exp(self.entropy)

    @property
    def dead_codes(self) -> torch.Tensor:
        """() int64, codes never used."""
        return self.num_codes - self.used_codes

    @property
    def entropy_bits(self) -> float:
        """The entropy in bits (a host float)."""
        return float(self.entropy) / math.log(2.0)

    def as_dict(self) -> dict[str, float | int]:
        """{"perplexity": float, "used_codes": int, "dead_codes": int} (host values, JSON-ready)."""
        return {"perplexity": float(self.perplexity), "used_codes": int(self.used_codes),
                "dead_codes": int(self.dead_codes)}


def codebook_usage(counts) -> CodebookUsage:
    """Usage statistics of a code histogram (K,) (tensor or array of counts, integer or float).

    Integer counts are taken in float64; float counts keep their dtype (the quantizer's float32
    per-batch counts stay on their device and in its graph-free dtype).
    """
    counts = torch.as_tensor(counts).reshape(-1)
    if not counts.is_floating_point():
        counts = counts.double()
    probs = counts / counts.sum().clamp(min=1.0)
    return CodebookUsage(num_codes=int(counts.numel()), entropy=torch.special.entr(probs).sum(),
                         used_codes=(counts > 0).sum())


def usage_of_codes(indices, num_codes: int) -> CodebookUsage:
    """`codebook_usage` of the histogram of integer codes (`code_counts`)."""
    return codebook_usage(code_counts(indices, num_codes))
