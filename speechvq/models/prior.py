"""The code-level prior p(z): a causal Transformer over VQ-VAE code sequences.

Stage two of the VQ-VAE recipe: with the encoder frozen, codes of a corpus (250 per second
of 16 kHz audio, values in [0, K)) are modelled autoregressively. VQ-VAE-2 uses
self-attention for its prior; this is a small GPT-style decoder-only Transformer:

- input at step t is the code t-1 (a learned BOS token at t=0, handled here, not by callers),
  so ``logits[:, t]`` predicts ``codes[:, t]`` from ``codes[:, :t]``;
- pre-LayerNorm blocks, `scaled_dot_product_attention` with ``is_causal=True``;
- rotary position embeddings (relative positions: sampling may run longer than the training
  crops, up to `max_len`);
- optional speaker conditioning: a learned speaker vector added at every position. A speaker
  index of -1 means "no speaker" (nothing added), so a speaker-conditioned prior also scores
  utterances of speakers it never saw, if it was trained with some speaker dropout;
- the output layer starts at zero (``zero_init_output``), making an untrained prior exactly
  uniform: log2(K) bits per code (9 bits for K=512).

`sample` generates with a key/value cache, one code per step; `step_logits` gives the same
step-by-step logits for one known or decoded sequence (the entropy coder of
`speechvq.inference.codec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechvq.quantization.usage import codebook_usage


def unigram_entropy_bits(counts) -> float:
    """Entropy in bits of the code distribution given by (K,) counts: the rate of a prior with no context.

    Codes never seen are ignored; all-zero counts raise ValueError.
    """
    usage = codebook_usage(np.asarray(counts, dtype=np.float64))
    if int(usage.used_codes) == 0:
        raise ValueError("code counts are all zero")
    return usage.entropy_bits


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, F, Dh) queries/keys by position; `cos`/`sin` are (F, Dh) (cast to x's dtype)."""
    return x * cos.to(x.dtype) + _rotate_half(x) * sin.to(x.dtype)


def rotary_tables(max_len: int, head_dim: int,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(max_len, head_dim) cos and sin of the rotary angles of positions 0..max_len-1, computed in `dtype`."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=dtype) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=dtype), inv_freq)  # (max_len, Dh/2)
    angles = torch.cat((angles, angles), dim=-1)  # (max_len, Dh)
    return angles.cos(), angles.sin()


@dataclass
class KVCache:
    """Keys and values of past positions for step-by-step sampling.

    keys/values: one (B, H, max_steps, Dh) tensor per layer; positions [0, length) are filled.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0


class Attention(nn.Module):
    """Multi-head causal self-attention with rotary positions (B, F, D) -> (B, F, D)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, f, d = x.shape
        q, k, v = self.qkv(x).view(b, f, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, H, F, Dh)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, h, f, dh = y.shape
        return self.proj(y.transpose(1, 2).reshape(b, f, h * dh))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Full causal attention over x (B, F, D); cos/sin (F, Dh)."""
        q, k, v = self._split(x)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self._merge(y)

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        """One new position x (B, 1, D) attending to the cached ones and itself; cos/sin (1, Dh)."""
        q, k, v = self._split(x)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        t = cache.length
        cache.keys[layer][:, :, t : t + 1] = k
        cache.values[layer][:, :, t : t + 1] = v
        y = F.scaled_dot_product_attention(q, cache.keys[layer][:, :, : t + 1], cache.values[layer][:, :, : t + 1])
        return self._merge(y)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x)); (B, F, D) -> (B, F, D)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass: x (B, F, D), cos/sin (F, Dh) -> (B, F, D)."""
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        """One new position: x (B, 1, D), cos/sin (1, Dh) -> (B, 1, D); appends to `cache`'s `layer`."""
        x = x + self.attn.step(self.norm1(x), cos, sin, cache, layer)
        return x + self.mlp(self.norm2(x))


class Prior(nn.Module):
    """Autoregressive prior over codes: p(z) = prod_t p(z_t | z_<t, speaker).

    Args:
        num_codes: codebook size K; codes are int64 in [0, K).
        dim: model width D (a multiple of 2 * heads, for rotary positions).
        layers: number of Transformer blocks.
        heads: attention heads.
        max_len: longest code sequence accepted by `forward` and `sample` (size of the rotary
            tables); 250 codes per second, so 8192 is about 33 s.
        num_speakers: speakers for conditioning; 0 = unconditional.
        dropout: dropout on attention weights, block outputs and embeddings while training.
        zero_init_output: start the output layer at zero so that the untrained prior is
            uniform (exactly log2(K) bits per code).
    """

    def __init__(
        self,
        num_codes: int = 512,
        dim: int = 256,
        layers: int = 4,
        heads: int = 4,
        max_len: int = 8192,
        num_speakers: int = 0,
        dropout: float = 0.0,
        zero_init_output: bool = True,
    ):
        super().__init__()
        if dim % (2 * heads):
            raise ValueError(f"dim ({dim}) must be a multiple of 2 * heads ({2 * heads}) for rotary positions")
        self.num_codes = num_codes
        self.num_speakers = num_speakers
        self.max_len = max_len
        self.dim = dim
        self.heads = heads
        self.bos = num_codes  # the extra input token standing before the first code
        self.embed = nn.Embedding(num_codes + 1, dim)
        self.speaker_embed = nn.Embedding(num_speakers, dim) if num_speakers > 0 else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)
        cos, sin = rotary_tables(max_len, dim // heads)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2: scale the residual projections by depth
            nn.init.normal_(block.attn.proj.weight, std=0.02 / math.sqrt(2 * layers))
            nn.init.normal_(block.mlp[2].weight, std=0.02 / math.sqrt(2 * layers))
        if zero_init_output:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def _speaker_vector(self, speaker: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(B, 1, D) speaker vectors (zero where speaker == -1), or None when unconditioned."""
        if speaker is None or self.speaker_embed is None:
            return None
        speaker = torch.as_tensor(speaker, device=self.embed.weight.device).reshape(-1)
        if speaker.shape[0] != batch:
            raise ValueError(f"speaker has {speaker.shape[0]} entries for a batch of {batch}")
        if int(speaker.max()) >= self.num_speakers or int(speaker.min()) < -1:
            raise ValueError(f"speaker index out of range [-1, {self.num_speakers})")
        known = (speaker >= 0).unsqueeze(-1)
        vectors = self.speaker_embed(speaker.clamp(min=0)) * known
        return vectors.unsqueeze(1)

    def _check_length(self, length: int) -> None:
        if length > self.max_len:
            raise ValueError(f"sequence of {length} codes is longer than the prior's max_len ({self.max_len})")

    def forward(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Next-code logits.

        Args:
            codes: (B, F) int64 codes in [0, K).
            speaker: (B,) int64 speaker indices (-1 = none), or None (unconditioned).

        Returns:
            (B, F, K) logits; ``logits[:, t]`` predicts ``codes[:, t]`` from ``codes[:, :t]``.
        """
        b, f = codes.shape
        self._check_length(f)
        inputs = torch.cat((torch.full_like(codes[:, :1], self.bos), codes[:, :-1]), dim=1)
        x = self.embed(inputs)
        spk = self._speaker_vector(speaker, b)
        if spk is not None:
            x = x + spk
        x = self.drop(x)
        cos, sin = self.rotary_cos[:f], self.rotary_sin[:f]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))

    def nll_bits(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F) negative log2-likelihood of each code, in bits (log2(K) for a uniform prior)."""
        logits = self(codes, speaker).float()
        nats = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")
        return nats / math.log(2.0)

    def _new_cache(self, batch: int, steps: int, like: torch.Tensor) -> KVCache:
        shape = (batch, self.heads, steps, self.dim // self.heads)
        return KVCache(
            keys=[like.new_zeros(shape) for _ in self.blocks],
            values=[like.new_zeros(shape) for _ in self.blocks],
        )

    def _step(self, token: torch.Tensor, spk: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
        """Feed one input token (B,) at position cache.length; return (B, K) logits for that position."""
        t = cache.length
        x = self.embed(token).unsqueeze(1)
        if spk is not None:
            x = x + spk
        cos, sin = self.rotary_cos[t : t + 1], self.rotary_sin[t : t + 1]
        for i, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache, i)
        cache.length += 1
        return self.head(self.norm(x))[:, 0]

    @torch.no_grad()
    def step_logits(self, num_codes: int, speaker: int = -1) -> Generator[torch.Tensor, int, None]:
        """Next-code logits of one sequence (batch 1), one position at a time, with the key/value cache.

        A generator: ``next(g)`` gives the (K,) logits of code 0; ``g.send(code)`` feeds code t
        (an int in [0, K)) and gives the (K,) logits of code t + 1, for t + 1 < num_codes
        (at most `max_len`). speaker: a speaker row, or -1 for none (an unconditional prior
        ignores it). Logits have the model's dtype, on its device.
        """
        self._check_length(num_codes)
        device = self.embed.weight.device
        spk = self._speaker_vector(torch.tensor([speaker], dtype=torch.long, device=device), 1)
        cache = self._new_cache(1, num_codes, self.embed.weight)
        token = torch.full((1,), self.bos, dtype=torch.long, device=device)
        for _ in range(num_codes):
            code = yield self._step(token, spk, cache)[0]
            token = torch.tensor([code], dtype=torch.long, device=device)

    @staticmethod
    def _draw(logits: torch.Tensor, temperature: float, top_k: int | None,
              generator: torch.Generator | None) -> torch.Tensor:
        """(B, K) logits -> (B,) codes: argmax at temperature 0, else a draw from softmax(logits / T)."""
        logits = logits.float()
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            threshold = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    @torch.no_grad()
    def sample(
        self,
        batch: int,
        num_codes: int,
        speaker: torch.Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw code sequences from the prior (call in eval mode: dropout stays on in training mode).

        Args:
            batch: number of sequences B.
            num_codes: length F of each sequence (250 codes per second), at most `max_len`.
            speaker: (B,) int64 speaker indices (-1 = none), or None.
            temperature: softmax temperature; 0 takes the most likely code (greedy).
            top_k: keep only the k most likely codes at each step (None: all).
            generator: torch.Generator on the model's device, for reproducible draws.

        Returns:
            (B, F) int64 codes.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self._check_length(num_codes)
        device = self.embed.weight.device
        if speaker is not None:
            speaker = torch.as_tensor(speaker, dtype=torch.long, device=device)
        out = torch.empty(batch, num_codes, dtype=torch.long, device=device)
        spk = self._speaker_vector(speaker, batch)
        cache = self._new_cache(batch, num_codes, self.embed.weight)  # past keys/values
        token = torch.full((batch,), self.bos, dtype=torch.long, device=device)
        for t in range(num_codes):
            token = self._draw(self._step(token, spk, cache), temperature, top_k, generator)
            out[:, t] = token
        return out
