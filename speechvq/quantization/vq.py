"""Vector quantizers: the VQ-VAE paper's codebook-loss quantizer and the EMA variant of VQ-VAE-2.

Both map continuous latents z_e (B, D, T) to the nearest of K codebook vectors in L2 and
pass gradients straight through (forward value: the codebook vector; gradient with respect
to z_e: the gradient arriving at the quantized output, unchanged). Shared behaviour:

- Distances, k-means and EMA statistics are computed in float32, also under
  ``torch.autocast`` (which is disabled inside the quantizer).
- Optional k-means initialisation: on the first training forward the codebook is set by a
  few Lloyd iterations over that batch's encoder outputs.
- Dead-code restarts: a code that no vector of `restart_after_steps` consecutive training
  forwards was assigned to is moved onto a random encoder output of the current batch
  (distinct outputs for distinct codes when the batch has at least K vectors).
- No device-to-host read in a training forward (on a GPU the step never waits for the
  device): dead codes are restarted by masks, not by a list of indices, and whether k-means
  has run is read from the device once and then remembered on the host. The k-means
  initialisation and the state updates (in-place writes of buffers, collectives) are excluded
  from ``torch.compile`` (`torch.compiler.disable`); the distances and losses are compiled.
- Usage: `perplexity` and `used_codes` of each batch in the result (`codebook_usage`); buffers
  `unused_steps` (training forwards since each code was last used), `code_usage`
  (assignments counted over training) and `restart_count` (codes restarted so far).
- Under ``torch.distributed`` (training mode only) the per-code counts (and, for EMA, the
  per-code sums) are summed over ranks before use, and k-means and restart vectors are
  chosen on rank 0 and broadcast, so every rank keeps an identical codebook. Every rank
  must therefore run the same number of training forwards. Evaluation mode communicates
  nothing and changes no state.

`encode` gives the nearest codes alone, without touching any state, in either mode.

All state lives in registered buffers (and the paper quantizer's codebook parameter), so
it is saved in and restored from ``state_dict``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from speechvq.errors import SpeechVQError
from speechvq.quantization.usage import codebook_usage

DISTANCE_CHUNK_ROWS = 16384
"""Rows of the (N, K) distance matrix computed at once; bounds memory on long inputs."""


@dataclass
class VQResult:
    """What a quantizer returns for z_e (B, D, T).

    Attributes:
        quantized: (B, D, T) codebook vectors; gradients pass straight through to z_e.
        codes: (B, T) int64 indices in [0, K).
        loss: scalar float32, the quantizer's training loss (codebook + beta * commitment for
            `VectorQuantizer`, beta * commitment for `EMAVectorQuantizer`).
        commitment_loss: scalar, mean squared distance ||z_e - sg[e]||^2 per element (moves z_e).
        codebook_loss: scalar, mean squared distance ||sg[z_e] - e||^2 per element (moves the
            codebook; zero for the EMA quantizer, whose codebook is not trained by gradient).
        perplexity: scalar float32, exp(entropy) of the batch's code histogram (1..K).
        used_codes: scalar int64, number of distinct codes in the batch.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    perplexity: torch.Tensor
    used_codes: torch.Tensor


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (L2) for each vector: (N, D), (K, D) -> (N,) int64.

    Uses argmin_k ||e_k||^2 - 2 z.e_k (the ||z||^2 term does not change the argmin), one
    addmm per chunk of `DISTANCE_CHUNK_ROWS` rows.
    """
    codebook_sq = codebook.pow(2).sum(dim=1)
    codebook_t = codebook.t()
    chunks = [
        torch.addmm(codebook_sq, part, codebook_t, alpha=-2.0).argmin(dim=1)
        for part in vectors.split(DISTANCE_CHUNK_ROWS)
    ]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def kmeans(vectors: torch.Tensor, num_clusters: int, iterations: int) -> torch.Tensor:
    """Lloyd's k-means: (N, D) float32 -> (num_clusters, D) centroids.

    Starts from distinct random rows (with repetition only when N < num_clusters); a
    cluster that loses all its points keeps its previous centroid.
    """
    num = vectors.shape[0]
    if num >= num_clusters:
        start = torch.randperm(num, device=vectors.device)[:num_clusters]
    else:
        start = torch.randint(num, (num_clusters,), device=vectors.device)
    centroids = vectors[start].clone()
    ones = vectors.new_ones(num)
    for _ in range(iterations):
        assign = nearest_codes(vectors, centroids)
        counts = vectors.new_zeros(num_clusters).index_add_(0, assign, ones)
        sums = vectors.new_zeros(num_clusters, vectors.shape[1]).index_add_(0, assign, vectors)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1.0)[:, None], centroids)
    return centroids


def _require_int(name: str, value, minimum: int) -> None:
    """Raise SpeechVQError naming the argument unless `value` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SpeechVQError(f"quantizer {name}={value!r}: must be an integer >= {minimum}")


def _world_size() -> int:
    """Number of ranks of the default process group, 1 when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _gather_rows(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) on every rank -> (world * M, D) identical on every rank, M = min N over ranks (random rows)."""
    world = _world_size()
    if world == 1:
        return vectors
    num = torch.tensor([vectors.shape[0]], device=vectors.device)
    dist.all_reduce(num, op=dist.ReduceOp.MIN)
    rows = vectors[torch.randperm(vectors.shape[0], device=vectors.device)[: int(num)]].contiguous()
    gathered = [torch.empty_like(rows) for _ in range(world)]
    dist.all_gather(gathered, rows)
    return torch.cat(gathered)


def _broadcast_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Make `tensor` equal to rank 0's value on every rank (in place); no-op without torch.distributed."""
    if _world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


class _Quantizer(nn.Module):
    """Nearest-neighbour quantization, k-means init, usage tracking and restarts shared by both quantizers.

    Subclasses provide the ``codebook`` tensor (K, D) and `_losses`; the EMA quantizer also
    `_update_codebook` and sets ``_needs_sums``.
    """

    _needs_sums = False
    codebook: torch.Tensor

    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float,
        kmeans_init: bool,
        kmeans_iters: int,
        restart_after_steps: int | None,
    ) -> None:
        super().__init__()
        _require_int("num_codes", num_codes, 2)
        _require_int("dim", dim, 1)
        _require_int("kmeans_iters", kmeans_iters, 0)
        _require_int("restart_after_steps", restart_after_steps or 0, 0)
        if not beta >= 0:
            raise SpeechVQError(f"quantizer beta={beta!r}: must be >= 0")
        self.num_codes = int(num_codes)
        self.dim = int(dim)
        self.beta = float(beta)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.restart_after_steps = int(restart_after_steps or 0)
        self.register_buffer("initialized", torch.tensor(not self.kmeans_init))
        self.register_buffer("unused_steps", torch.zeros(self.num_codes, dtype=torch.int64))
        self.register_buffer("code_usage", torch.zeros(self.num_codes, dtype=torch.int64))
        self.register_buffer("restart_count", torch.zeros((), dtype=torch.int64))
        self._known_initialized = False  # host copy of `initialized` once it is True (no per-step read)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # the loaded buffer may say otherwise: read it again

    def _is_initialized(self) -> bool:
        """Whether k-means has run (read from the device until it has, then remembered)."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, kmeans_init={self.kmeans_init}, "
            f"restart_after_steps={self.restart_after_steps}"
        )

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of `codes`: (B, T) integer in [0, K) -> (B, D, T) float (the forward's `quantized`)."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_codes):
            raise SpeechVQError(
                f"code values must lie in [0, {self.num_codes}), got {int(codes.min())}..{int(codes.max())}"
            )
        return F.embedding(codes.long(), self.codebook.detach()).transpose(1, 2).contiguous()

    def _flat(self, z_e: torch.Tensor) -> torch.Tensor:
        """z_e (B, D, T) -> detached (B * T, D) float32 rows; ValueError for another shape."""
        if z_e.dim() != 3 or z_e.shape[1] != self.dim:
            raise ValueError(f"quantizer expects z_e of shape (B, {self.dim}, T), got {tuple(z_e.shape)}")
        return z_e.detach().transpose(1, 2).reshape(-1, self.dim).float()

    @torch.no_grad()
    def encode(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest codes of z_e (B, D, T) -> (B, T) int64, the forward's ``codes``, in either mode.

        Side-effect free: no EMA update, no k-means initialisation, no dead-code restart, no
        usage counting and no communication between ranks.
        """
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            codes = nearest_codes(self._flat(z_e), self.codebook.detach().float())
        return codes.view(z_e.shape[0], z_e.shape[2])

    def forward(self, z_e: torch.Tensor) -> VQResult:
        """Quantize z_e (B, D, T) -> `VQResult`; in training mode also update codebook state."""
        flat = self._flat(z_e)  # (N, D) float32, N = B * T
        batch, _, frames = z_e.shape
        update = self.training
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            if update and self.kmeans_init and not self._is_initialized():
                self._kmeans_initialize(flat)
            codes = nearest_codes(flat, self.codebook.detach().float())  # (N,)
            counts, sums = self._statistics(flat, codes, training=update)
            z_q = F.embedding(codes.view(batch, frames), self.codebook).transpose(1, 2).contiguous()  # (B, D, T)
            loss, commitment_loss, codebook_loss = self._losses(z_e.float(), z_q)
            # Forward value exactly z_q; d quantized / d z_e = identity; no decoder gradient reaches the codebook.
            quantized = z_q.detach() + (z_e - z_e.detach())
            usage = codebook_usage(counts)
            if update:
                self._update_state(counts, sums, flat)
        return VQResult(
            quantized=quantized,
            codes=codes.view(batch, frames),
            loss=loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=usage.perplexity,
            used_codes=usage.used_codes,
        )

    def _statistics(
        self, flat: torch.Tensor, codes: torch.Tensor, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-code counts (K,) float32 and, in training when the subclass needs them, sums (K, D) float32.

        In training both are summed over ranks (one all_reduce).
        """
        counts = flat.new_zeros(self.num_codes).index_add_(0, codes, flat.new_ones(codes.shape[0]))
        reduce = training and _world_size() > 1
        if not (training and self._needs_sums):
            if reduce:
                dist.all_reduce(counts)
            return counts, None
        stats = flat.new_zeros(self.num_codes, self.dim + 1)  # [sums | counts]: one all_reduce
        stats[:, : self.dim].index_add_(0, codes, flat)
        stats[:, self.dim] = counts
        if reduce:
            dist.all_reduce(stats)
        return stats[:, self.dim], stats[:, : self.dim]

    @torch.compiler.disable
    @torch.no_grad()
    def _kmeans_initialize(self, flat: torch.Tensor) -> None:
        """Set the codebook to k-means centroids of this batch (all ranks' vectors; rank 0's result)."""
        vectors = _gather_rows(flat)
        centroids = kmeans(vectors, self.num_codes, self.kmeans_iters)
        everything = torch.ones(self.num_codes, dtype=torch.bool, device=flat.device)
        self._set_codes(everything, _broadcast_from_rank0(centroids))
        self.initialized.fill_(True)
        self._known_initialized = True

    @torch.compiler.disable
    @torch.no_grad()
    def _update_state(self, counts: torch.Tensor, sums: torch.Tensor | None, flat: torch.Tensor) -> None:
        """A training forward's state changes: the EMA update (`sums` given), usage and restarts."""
        if sums is not None:
            self._update_codebook(counts, sums)
        self._track_usage_and_restart(counts, flat)

    def _track_usage_and_restart(self, counts: torch.Tensor, flat: torch.Tensor) -> None:
        """Advance the usage buffers with this step's counts (K,) and restart codes unused for too long.

        Without reading the device: every code gets a candidate row of `flat` (distinct rows
        when there are at least K), and the dead codes (a mask) take theirs.
        """
        used = counts > 0
        self.code_usage += counts.long()
        self.unused_steps.add_(1).masked_fill_(used, 0)
        if not self.restart_after_steps:
            return
        dead = self.unused_steps >= self.restart_after_steps  # (K,) bool
        num = flat.shape[0]
        if num >= self.num_codes:
            rows = torch.randperm(num, device=flat.device)[: self.num_codes]
        else:
            rows = torch.randint(num, (self.num_codes,), device=flat.device)
        self._set_codes(dead, _broadcast_from_rank0(flat[rows].contiguous()))
        self.unused_steps.masked_fill_(dead, 0)
        self.restart_count += dead.sum()

    def _set_codes(self, mask: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite the codebook rows where `mask` (K,) bool is True with those of `vectors` (K, D) float32."""
        self.codebook.data.copy_(torch.where(mask[:, None], vectors.to(self.codebook.dtype), self.codebook.data))

    def _losses(
        self, z_e: torch.Tensor, z_q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, commitment_loss, codebook_loss) for z_e (B, D, T) float32 and z_q (B, D, T)."""
        raise NotImplementedError

    def _update_codebook(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        """EMA update from this step's counts (K,) and sums (K, D)."""
        raise NotImplementedError


class VectorQuantizer(_Quantizer):
    """The VQ-VAE paper's quantizer: a learned codebook trained by the codebook loss.

    loss = ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2 (means over batch, frames and
    dimensions); the quantized output is z_e + sg[e - z_e] in value and gradient. The codebook
    starts uniform in [-1/K, 1/K] (unless `kmeans_init`).

    Args:
        num_codes: K, codebook size.
        dim: D, vector dimension.
        beta: commitment weight (0.25 in the paper).
        kmeans_init: set the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        restart_after_steps: restart a code unused for this many training forwards (0/None: never).
    """

    def __init__(
        self,
        num_codes: int = 512,
        dim: int = 64,
        beta: float = 0.25,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        restart_after_steps: int | None = 100,
    ) -> None:
        super().__init__(num_codes, dim, beta, kmeans_init, kmeans_iters, restart_after_steps)
        bound = 1.0 / self.num_codes
        self.codebook = nn.Parameter(torch.empty(self.num_codes, self.dim).uniform_(-bound, bound))

    def _losses(self, z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        commitment_loss = F.mse_loss(z_e, z_q.detach().float())
        codebook_loss = F.mse_loss(z_q.float(), z_e.detach())
        return codebook_loss + self.beta * commitment_loss, commitment_loss, codebook_loss


class EMAVectorQuantizer(_Quantizer):
    """VQ-VAE-2's quantizer: codebook = exponential moving averages of assigned encoder outputs.

    Per training forward, with n_k vectors assigned to code k summing to s_k (over all ranks)::

        N_k <- decay * N_k + (1 - decay) * n_k          (buffer ema_count)
        S_k <- decay * S_k + (1 - decay) * s_k          (buffer ema_sum)
        e_k  = S_k / ((N_k + eps) / (sum N + K eps) * sum N)   (Laplace-smoothed count)

    The codebook is not trained by gradient (it is a buffer); loss = beta * commitment.
    The codebook starts standard normal with N_k = 1, S_k = e_k (unless `kmeans_init`). A
    restarted code gets N_k = 1, S_k = its new vector.

    Args:
        num_codes: K, codebook size.
        dim: D, vector dimension.
        beta: commitment weight (0.25).
        decay: EMA decay (0.99).
        eps: Laplace smoothing of the counts.
        kmeans_init, kmeans_iters, restart_after_steps: as in `VectorQuantizer`.
    """

    _needs_sums = True

    def __init__(
        self,
        num_codes: int = 512,
        dim: int = 64,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        restart_after_steps: int | None = 100,
    ) -> None:
        super().__init__(num_codes, dim, beta, kmeans_init, kmeans_iters, restart_after_steps)
        if not 0.0 <= decay < 1.0:
            raise SpeechVQError(f"quantizer decay={decay!r}: must be in [0, 1)")
        if not eps > 0.0:
            raise SpeechVQError(f"quantizer eps={eps!r}: must be > 0")
        self.decay = float(decay)
        self.eps = float(eps)
        codebook = torch.randn(self.num_codes, self.dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(self.num_codes))
        self.register_buffer("ema_sum", codebook.clone())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, decay={self.decay}, eps={self.eps}"

    def _losses(self, z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        commitment_loss = F.mse_loss(z_e, z_q.float())
        return self.beta * commitment_loss, commitment_loss, commitment_loss.new_zeros(())

    def _update_codebook(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        weight = 1.0 - self.decay
        self.ema_count.lerp_(counts, weight)
        self.ema_sum.lerp_(sums, weight)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def _set_codes(self, mask: torch.Tensor, vectors: torch.Tensor) -> None:
        super()._set_codes(mask, vectors)
        self.ema_count.masked_fill_(mask, 1.0)
        self.ema_sum.copy_(torch.where(mask[:, None], vectors.to(self.ema_sum.dtype), self.ema_sum))
