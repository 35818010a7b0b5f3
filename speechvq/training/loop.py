"""Training: a generic, resumable `Trainer` and `train(cfg)` for the VQ-VAE (stage 1).

`train(cfg)` takes the composed ``configs/train.yaml`` (see `speechvq.config.compose`) and
trains encoder + quantizer + decoder on random segments of a prepared corpus, validating on
its held-out utterances. Run directory layout (DESIGN.md)::

    RUN/config.yaml                      the resolved config
    RUN/checkpoints/step_NNNNNNN.pt      every trainer.checkpoint_every steps (the last keep_last kept)
    RUN/checkpoints/last.pt              the latest checkpoint (resumed from by default)
    RUN/checkpoints/best.pt              lowest validation NLL so far
    RUN/tb/                              TensorBoard events

Trainer API (reused by the prior's ``train_prior``)::

    trainer = Trainer(
        model,                      # nn.Module, unwrapped; the Trainer moves, compiles and DDP-wraps it
        loss_fn,                    # loss_fn(wrapped_model, batch) -> (loss scalar, {name: scalar metric})
        dataset_factory,            # epoch -> map-style Dataset of training items (may return the same one)
        collate_fn,                 # list of items -> batch (dict of tensors, moved to the device)
        trainer_cfg,                # the ``trainer`` config node (configs/trainer/default.yaml)
        run_dir,                    # the run directory
        kind="vqvae",               # checkpoint kind ("vqvae" | "prior")
        config=resolved_cfg_dict,   # stored in every checkpoint and as RUN/config.yaml
        batch_size=16, num_workers=0, seed=0,
        validate_fn=fn,             # fn(unwrapped_model, step, logger) -> {name: float}; rank 0, eval mode, no_grad
        best_metric="nll_bits_per_sample",   # key of validate_fn's result; lower is better -> best.pt
        checkpoint_extras=fn,       # fn(unwrapped_model) -> dict merged into every checkpoint (speakers, ...)
        resume_must_match={"speakers": [...]},  # checkpoint entries that must be equal to resume
        ctx=setup_distributed(...), # DistContext (rank, world size, device)
    )
    result = trainer.fit()          # -> TrainResult(model (unwrapped), step, skipped_updates, valid)

One step = one batch per process: forward under autocast, backward, clip the global
gradient norm, skip the update when that norm is not finite or above
``grad_skip_threshold`` (VDVAE; counted in ``skipped_updates``), Adam step, learning-rate
schedule step (linear warm-up, then cosine/exponential decay or constant).

Data order is a pure function of (seed, step): epoch e is a permutation of the dataset
drawn from a generator seeded with (seed, e), cut into global batches of
``batch_size * world_size`` items of which each rank takes its slice; each epoch gets a
fresh dataset from `dataset_factory` (and a DataLoader whose worker seeds derive from
(seed, e)). Together with the checkpointed model, optimizer, scheduler, scaler and RNG
states (and segments that depend only on (seed, epoch, index)) this makes a resumed CPU run
end with exactly the weights of an uninterrupted one, whatever the number of data workers.
"""

from __future__ import annotations

import math
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from speechvq.audio import num_frames
from speechvq.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from speechvq.data.dataset import PreparedCorpus, SegmentDataset, collate_segments
from speechvq.errors import CheckpointError, SpeechVQError
from speechvq.fileio import atomic_path, write_text_atomic
from speechvq.models.builders import build_vqvae
from speechvq.f0 import f0_stats
from speechvq.models.loading import load_state_strict, load_vqvae
from speechvq.training.distributed import (
    DistContext,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from speechvq.training.logging import RunLogger

LN2 = math.log(2.0)
STEP_FILE = re.compile(r"^step_(\d{7,})\.pt$")

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, Mapping[str, Any]]]


@dataclass
class TrainResult:
    """What `Trainer.fit` / `train` return: the trained (unwrapped) model and the run's counters."""

    model: nn.Module
    step: int
    skipped_updates: int
    valid: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule and data order


def lr_factor(step: int, max_steps: int, warmup_steps: int, decay: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based).

    Linear warm-up over `warmup_steps` (step 0 gets 1/warmup), then `decay` from 1 to
    `min_lr_ratio` at `max_steps`: ``cosine`` (half cosine), ``exponential`` (geometric) or
    ``constant`` (stays 1).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if decay == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if decay == "exponential":
        return min_lr_ratio**progress
    raise SpeechVQError(f"trainer.decay={decay!r}: choose cosine, exponential or constant")


class BatchSchedule:
    """Which dataset items each rank reads at each step: a pure function of (seed, step).

    Args:
        num_items: dataset length N.
        batch_size: items per rank and step.
        world_size, rank: this process's place among the data-parallel processes.
        seed: base seed of the per-epoch permutations.
    """

    def __init__(self, num_items: int, batch_size: int, world_size: int, rank: int, seed: int) -> None:
        if num_items < 1:
            raise SpeechVQError("the training set is empty")
        if batch_size < 1:
            raise SpeechVQError(f"batch_size={batch_size}: must be at least 1")
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.global_batch = batch_size * world_size
        self.seed = seed
        #: steps per epoch; an epoch is one permutation (or, for tiny sets, one global batch)
        self.steps_per_epoch = max(1, num_items // self.global_batch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's item indices for each step of `epoch`: steps_per_epoch lists of batch_size ints."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        repeats = -(-self.global_batch // self.num_items)
        order = torch.cat([torch.randperm(self.num_items, generator=generator) for _ in range(repeats)]).tolist()
        batches = []
        for position in range(self.steps_per_epoch):
            chunk = order[position * self.global_batch: (position + 1) * self.global_batch]
            batches.append(chunk[self.rank * self.batch_size: (self.rank + 1) * self.batch_size])
        return batches

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, position within the epoch) of global step `step`."""
        return divmod(step, self.steps_per_epoch)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# ---------------------------------------------------------------------------------------------
# RNG state (tensors and plain lists only: checkpoints are read with weights_only=True)


def rng_state() -> dict:
    """Python, NumPy, torch CPU and (if present) CUDA generator states as checkpoint-safe values."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what `rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Checkpoint files of a run directory


class CheckpointDir:
    """``RUN/checkpoints``: step files, ``last.pt`` and ``best.pt``; writes are atomic, rank 0 only."""

    def __init__(self, run_dir: str | Path, keep_last: int) -> None:
        self.path = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, int(keep_last))

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    def step_files(self) -> list[Path]:
        """step_NNNNNNN.pt files, oldest first."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, payload: dict, step: int) -> Path:
        """Write step_NNNNNNN.pt and point last.pt at the same content; drop step files beyond keep_last."""
        self.path.mkdir(parents=True, exist_ok=True)
        step_path = save_checkpoint(self.path / f"step_{step:07d}.pt", payload)
        self._link(step_path, self.last)
        for old in self.step_files()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return step_path

    def save_best(self, payload: dict) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(self.best, payload)

    @staticmethod
    def _link(source: Path, target: Path) -> None:
        """Make `target` a hard link to `source` atomically (a copy where links are not supported)."""
        with atomic_path(target) as tmp:
            tmp = Path(tmp)
            tmp.unlink(missing_ok=True)
            try:
                tmp.hardlink_to(source)
            except OSError:
                tmp.write_bytes(source.read_bytes())


# ---------------------------------------------------------------------------------------------
# The generic trainer


class Trainer:
    """Resumable single- or multi-process training of `model` on batches from `dataset_factory`.

    See the module docstring for the arguments. Rank 0 logs (console + TensorBoard),
    validates and writes checkpoints; every rank runs the same number of steps.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        dataset_factory: Callable[[int], torch.utils.data.Dataset],
        collate_fn: Callable,
        trainer_cfg: DictConfig | Mapping,
        run_dir: str | Path,
        *,
        kind: str,
        config: dict,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        validate_fn: Callable[[nn.Module, int, RunLogger], dict[str, float]] | None = None,
        best_metric: str = "nll_bits_per_sample",
        checkpoint_extras: Callable[[nn.Module], dict] | None = None,
        resume_must_match: Mapping[str, Any] | None = None,
        ctx: DistContext | None = None,
    ) -> None:
        self.cfg = OmegaConf.create(trainer_cfg) if not isinstance(trainer_cfg, DictConfig) else trainer_cfg
        self.ctx = ctx or setup_distributed(str(self.cfg.get("device", "auto")))
        self.run_dir = Path(run_dir)
        self.kind = kind
        self.config = config
        self.loss_fn = loss_fn
        self.dataset_factory = dataset_factory
        self.collate_fn = collate_fn
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.validate_fn = validate_fn
        self.best_metric = best_metric
        self.checkpoint_extras = checkpoint_extras
        self.resume_must_match = dict(resume_must_match or {})
        self.checkpoints = CheckpointDir(self.run_dir, int(self.cfg.keep_last))
        self.max_steps = int(self.cfg.max_steps)
        if self.max_steps < 1:
            raise SpeechVQError(f"trainer.max_steps={self.max_steps}: must be at least 1")

        self.model = model.to(self.ctx.device)
        self.precision = self._precision()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=float(self.cfg.lr),
            betas=tuple(float(b) for b in self.cfg.betas),
            weight_decay=float(self.cfg.weight_decay),
        )
        schedule = dict(
            max_steps=self.max_steps,
            warmup_steps=int(self.cfg.warmup_steps),
            decay=str(self.cfg.decay),
            min_lr_ratio=float(self.cfg.min_lr_ratio),
        )
        lr_factor(0, **schedule)  # validates trainer.decay before any work
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, **schedule))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == torch.float16)
        self.step = 0
        self.skipped_updates = 0
        self.best_value = math.inf
        self.last_valid: dict[str, float] = {}

    # -- set-up ----------------------------------------------------------------------------

    def _precision(self) -> torch.dtype | None:
        """The autocast dtype (None: full float32) chosen by trainer.precision."""
        choice = str(self.cfg.get("precision", "auto"))
        cuda = self.ctx.device.type == "cuda"
        if choice == "auto":
            return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
        if choice == "fp32":
            return None
        if choice == "bf16":
            return torch.bfloat16
        if choice == "fp16":
            if not cuda:
                raise SpeechVQError("trainer.precision=fp16 needs CUDA (use bf16 or fp32 on CPU)")
            return torch.float16
        raise SpeechVQError(f"trainer.precision={choice!r}: choose auto, fp32, bf16 or fp16")

    def _wrapped(self) -> nn.Module:
        """The module the loss function calls: optionally compiled, DDP-wrapped under torchrun."""
        module = self.model
        if bool(self.cfg.get("compile", False)):
            if self.ctx.device.type != "cuda":
                raise SpeechVQError("trainer.compile=true needs CUDA")
            module = torch.compile(module)
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            # Quantizer buffers stay identical on every rank by its own all-reduces: no buffer broadcast.
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)
        return module

    def _payload(self) -> dict:
        payload = {
            "kind": self.kind,
            "model": unwrap_model(self.model).state_dict(),
            "config": self.config,
            "step": self.step,
            "skipped_updates": self.skipped_updates,
            "best_value": self.best_value,
            "best_metric": self.best_metric,
            "valid": dict(self.last_valid),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }
        if self.checkpoint_extras is not None:
            payload.update(self.checkpoint_extras(unwrap_model(self.model)))
        return payload

    def resume(self) -> bool:
        """Restore the state of ``RUN/checkpoints/last.pt`` if it exists; True if resumed."""
        if not self.checkpoints.last.is_file():
            return False
        payload = load_checkpoint(self.checkpoints.last, kind=self.kind, map_location="cpu")
        old_config = payload.get("config") or {}
        for section in ("model", "prior"):
            if old_config.get(section) != self.config.get(section):
                raise CheckpointError(
                    f"{self.checkpoints.last}: was trained with another {section} config; "
                    "use a new run_dir or trainer.resume=false"
                )
        for key, value in self.resume_must_match.items():
            if payload.get(key) != value:
                raise CheckpointError(
                    f"{self.checkpoints.last}: its {key} differ from this run's; "
                    "use a new run_dir or trainer.resume=false"
                )
        load_state_strict(unwrap_model(self.model), payload["model"], str(self.checkpoints.last))
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload["rng"])
        self.step = int(payload["step"])
        self.skipped_updates = int(payload.get("skipped_updates", 0))
        self.best_value = float(payload.get("best_value", math.inf))
        self.last_valid = dict(payload.get("valid", {}))
        return True

    def _batches(self, schedule: BatchSchedule) -> Iterator[Any]:
        """Batches from the current step on, forever (a DataLoader per epoch)."""
        epoch, position = schedule.locate(self.step)
        while True:
            dataset = self.dataset_factory(epoch)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=schedule.epoch_batches(epoch)[position:],
                collate_fn=self.collate_fn,
                num_workers=self.num_workers,
                generator=generator,
                pin_memory=self.ctx.device.type == "cuda",
            )
            yield from loader
            epoch, position = epoch + 1, 0

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until trainer.max_steps (resuming first when trainer.resume), return the result."""
        ctx, cfg = self.ctx, self.cfg
        if bool(cfg.get("resume", True)) and self.resume():
            resumed_from = self.step
        else:
            resumed_from = None
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.config)))
        barrier(ctx)

        progress = None
        if ctx.is_main and bool(cfg.get("progress", True)):
            from tqdm import tqdm

            progress = tqdm(total=self.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        logger = RunLogger(
            self.run_dir, enabled=ctx.is_main, write_line=(progress.write if progress is not None else None)
        )
        if resumed_from is not None:
            logger.line(f"resumed from {self.checkpoints.last} at step {resumed_from}")
        try:
            self._loop(logger, progress)
        finally:
            if progress is not None:
                progress.close()
            logger.close()
        return TrainResult(unwrap_model(self.model), self.step, self.skipped_updates, dict(self.last_valid))

    def _loop(self, logger: RunLogger, progress) -> None:
        ctx, cfg = self.ctx, self.cfg
        probe_dataset = self.dataset_factory(0)
        schedule = BatchSchedule(len(probe_dataset), self.batch_size, ctx.world_size, ctx.rank, self.seed)
        del probe_dataset
        model = self._wrapped()
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_clip = cfg.get("grad_clip")
        skip_threshold = cfg.get("grad_skip_threshold")
        log_every, valid_every = max(1, int(cfg.log_every)), max(1, int(cfg.valid_every))
        checkpoint_every = max(1, int(cfg.checkpoint_every))
        sums: dict[str, float] = {}
        window_steps, window_skipped, window_items = 0, 0, 0
        window_start = time.perf_counter()
        batches = self._batches(schedule)

        while self.step < self.max_steps:
            batch = _to_device(next(batches), ctx.device)
            self.model.train()
            with torch.autocast(ctx.device.type, dtype=self.precision or torch.float32,
                                enabled=self.precision is not None):
                loss, metrics = self.loss_fn(model, batch)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            max_norm = float(grad_clip) if grad_clip is not None else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            skip = not math.isfinite(grad_norm) or (skip_threshold is not None and grad_norm > float(skip_threshold))
            if skip:
                self.skipped_updates += 1
                window_skipped += 1
            else:
                self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            lr = self.scheduler.get_last_lr()[0]
            with warnings.catch_warnings():
                # a skipped first update makes torch warn that the scheduler stepped before the optimizer
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                self.scheduler.step()
            self.step += 1

            window_steps += 1
            window_items += _batch_items(batch)
            for name, value in {"loss": loss, **metrics}.items():
                value = value.detach() if isinstance(value, torch.Tensor) else value
                sums[name] = sums.get(name, 0.0) + float(value)
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + (grad_norm if math.isfinite(grad_norm) else 0.0)
            if progress is not None:
                progress.update(1)
            if self.step % log_every == 0 or self.step == self.max_steps:
                elapsed = max(1e-9, time.perf_counter() - window_start)
                values = {name: total / window_steps for name, total in sums.items()}
                values.update(
                    lr=lr,
                    skipped_updates=self.skipped_updates,
                    skipped_in_window=window_skipped,
                    items_per_second=window_items * ctx.world_size / elapsed,
                )
                logger.scalars(values, self.step, prefix="train")
                logger.summary(self.step, values, "train")
                if progress is not None:
                    progress.set_postfix(loss=f"{values['loss']:.3f}", skipped=self.skipped_updates)
                sums, window_steps, window_skipped, window_items = {}, 0, 0, 0
                window_start = time.perf_counter()

            finished = self.step == self.max_steps
            if self.validate_fn is not None and (self.step % valid_every == 0 or finished):
                self._validate(logger)
            if self.step % checkpoint_every == 0 or finished:
                if ctx.is_main:
                    self.checkpoints.save(self._payload(), self.step)
                barrier(ctx)
            logger.flush()

    def _validate(self, logger: RunLogger) -> None:
        """Rank 0 validates (eval mode, no grad) and writes best.pt on improvement; others wait."""
        if self.ctx.is_main:
            module = unwrap_model(self.model)
            module.eval()
            with torch.no_grad():
                values = dict(self.validate_fn(module, self.step, logger))
            module.train()
            self.last_valid = {k: float(v) for k, v in values.items()}
            logger.scalars(self.last_valid, self.step, prefix="valid")
            logger.summary(self.step, self.last_valid, "valid")
            value = self.last_valid.get(self.best_metric)
            if value is not None and value < self.best_value:
                self.best_value = value
                self.checkpoints.save_best(self._payload())
        barrier(self.ctx)


def _batch_items(batch: Any) -> int:
    """Audio samples (or tokens) in a batch: numel of its "audio" tensor, else of its first tensor."""
    if isinstance(batch, Mapping):
        tensor = batch.get("audio", next((v for v in batch.values() if isinstance(v, torch.Tensor)), None))
    else:
        tensor = batch if isinstance(batch, torch.Tensor) else None
    return int(tensor.numel()) if tensor is not None else 0


# ---------------------------------------------------------------------------------------------
# The VQ-VAE


def vqvae_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`Trainer` loss function of the VQ-VAE: batch audio (B, T), speaker (B,), f0 (B, T/64) -> (loss, metrics).

    Metrics: the reconstruction term (nll_bits_per_sample for the autoregressive decoder; the
    STFT and F0 terms for the source-filter decoder), vq_loss, commitment_loss, codebook_loss,
    perplexity and used_codes of the batch's codes, and the speaker adversary's terms if any.
    """
    out = model(batch["audio"], batch["speaker"], batch.get("f0"))
    metrics = {name: value.detach() for name, value in out.terms.items()}
    if out.nll is not None:
        metrics["nll_bits_per_sample"] = out.nll.detach().mean() / LN2
    metrics.update({
        "vq_loss": out.vq.loss.detach(),
        "commitment_loss": out.vq.commitment_loss.detach(),
        "codebook_loss": out.vq.codebook_loss.detach(),
        "perplexity": out.vq.perplexity.detach(),
        "used_codes": out.vq.used_codes.detach(),
    })
    return out.loss, metrics


class VQVAEValidation:
    """Validation of a VQ-VAE on held-out utterances (the valid split, else the test split).

    Each of at most `max_utterances` utterances (sorted by id) is cropped to its first
    `max_samples` samples (rounded down to a multiple of 64, at least 64); batches are
    zero-padded and the padding masked out. Returns the reconstruction figure —
    ``nll_bits_per_sample`` (teacher-forced NLL with the utterance's own codes) for the
    autoregressive decoder, ``stft_loss`` (one utterance at a time, unpadded) for the
    source-filter decoder — and ``perplexity``, ``used_codes`` of the code histogram; logs the
    histogram and, for the first `audio_clips` utterances, the input and a resynthesis
    (autoregressive: each sample drawn given the true past, seeded; source-filter: generated
    from the codes and the utterance's F0) to TensorBoard.
    """

    def __init__(self, corpus: PreparedCorpus, speakers: list[str], max_utterances: int, max_samples: int,
                 batch_size: int, audio_clips: int, device: torch.device, seed: int = 0,
                 with_f0: bool = False) -> None:
        utterances = corpus.utterances("valid") or corpus.utterances("test")
        utterances = sorted(utterances, key=lambda u: u.id)[: max(0, int(max_utterances))]
        index = {name: i for i, name in enumerate(speakers)}
        self.items = []
        for utt in utterances:
            length = max(64, min(utt.num_samples, int(max_samples)) // 64 * 64)
            audio = np.zeros(length, dtype=np.float32)
            available = min(length, utt.num_samples)
            audio[:available] = corpus.audio(utt, 0, available)
            f0 = np.zeros(length // 64, dtype=np.float32)
            if with_f0:
                part = corpus.f0(utt, 0, min(f0.shape[0], num_frames(utt.num_samples)))
                f0[: part.shape[0]] = part
            self.items.append((utt.id, torch.from_numpy(audio), index[utt.speaker], torch.from_numpy(f0)))
        self.batch_size = max(1, int(batch_size))
        self.audio_clips = int(audio_clips)
        self.device = device
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, model: nn.Module, step: int, logger: RunLogger) -> dict[str, float]:
        if not model.autoregressive:
            return self._source_filter(model, step, logger)
        total_nll, total_samples = 0.0, 0
        counts = torch.zeros(model.num_codes, dtype=torch.int64)
        for start in range(0, len(self.items), self.batch_size):
            chunk = self.items[start: start + self.batch_size]
            lengths = torch.tensor([len(audio) for _, audio, _, _ in chunk])
            wav = torch.zeros(len(chunk), int(lengths.max()))
            for row, (_, audio, _, _) in enumerate(chunk):
                wav[row, : len(audio)] = audio
            wav = wav.to(self.device)
            speaker = torch.tensor([s for _, _, s, _ in chunk], device=self.device)
            out = model(wav, speaker)
            mask = (torch.arange(wav.shape[1]) < lengths[:, None]).to(self.device)
            total_nll += float((out.nll.float() * mask).sum())
            total_samples += int(lengths.sum())
            frame_mask = (torch.arange(out.vq.codes.shape[1]) < (lengths[:, None] // model.hop_length))
            counts += torch.bincount(out.vq.codes.cpu()[frame_mask], minlength=model.num_codes)
        self._log_clips(model, step, logger)
        return {"nll_bits_per_sample": total_nll / max(1, total_samples) / LN2, **self._usage(counts, step, logger)}

    def _source_filter(self, model: nn.Module, step: int, logger: RunLogger) -> dict[str, float]:
        total, counts = 0.0, torch.zeros(model.num_codes, dtype=torch.int64)
        for _, audio, speaker, f0 in self.items:
            wav = audio[None].to(self.device)
            out = model(wav, torch.tensor([speaker], device=self.device), f0[None].to(self.device))
            total += float(out.terms["stft_convergence"] + out.terms["stft_log_magnitude"])
            counts += torch.bincount(out.vq.codes.cpu().reshape(-1), minlength=model.num_codes)
        if logger.enabled:
            generator = torch.Generator(device=self.device).manual_seed(self.seed)
            for utt_id, audio, speaker, f0 in self.items[: self.audio_clips]:
                z_q = model.quantized(model.encode(audio[None].to(self.device)))
                out = model.decoder(z_q, torch.tensor([speaker], device=self.device), f0[None].to(self.device),
                                    generator=generator)
                logger.audio(f"clips/{utt_id}/input", audio, step)
                logger.audio(f"clips/{utt_id}/resynthesis", out[0].clamp(-1, 1).cpu(), step)
        return {"stft_loss": total / max(1, len(self.items)), **self._usage(counts, step, logger)}

    @staticmethod
    def _usage(counts: torch.Tensor, step: int, logger: RunLogger) -> dict[str, float]:
        probs = counts.double() / counts.sum().clamp(min=1)
        perplexity = float(torch.exp(-(probs * probs.clamp(min=1e-12).log()).sum()))
        logger.histogram("valid/code_usage", counts, step)
        return {"perplexity": perplexity, "used_codes": int((counts > 0).sum())}

    def _log_clips(self, model: nn.Module, step: int, logger: RunLogger) -> None:
        if not logger.enabled:
            return
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        for utt_id, audio, speaker, _ in self.items[: self.audio_clips]:
            wav = audio[None].to(self.device)
            z_q = model.quantized(model.encode(wav))
            params = model.decoder(wav, z_q, torch.tensor([speaker], device=self.device))  # (1, C, T)
            flat = params[0].transpose(0, 1).float()  # (T, C)
            resynthesis = model.decoder.output.sample(flat, generator=generator)
            logger.audio(f"clips/{utt_id}/input", audio, step)
            logger.audio(f"clips/{utt_id}/teacher_forced", resynthesis, step)


def _is_missing(cfg: DictConfig, key: str) -> bool:
    """True if dotted `key` is absent or ``???`` in `cfg`."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return not isinstance(node, DictConfig) or leaf not in node or OmegaConf.is_missing(node, leaf)


def speaker_f0_stats(corpus: PreparedCorpus, speakers: list[str]) -> dict[str, list[float]]:
    """Per-speaker log-F0 statistics of the train split (`F0Stats.to_list` form) for checkpoints."""
    stats = {}
    for name in speakers:
        found = f0_stats(corpus.f0(u) for u in corpus.utterances("train") if u.speaker == name)
        if found is not None:
            stats[name] = found.to_list()
    return stats


def _units_from(cfg: DictConfig, speakers: list[str]) -> tuple[dict, dict]:
    """For a unit vocoder: the source VQ-VAE's (encoder/quantizer weights, model config entries).

    The vocoder's model config takes the source's encoder, quantizer and codebook sizes, so its
    checkpoint is self-contained; the speakers must be the same.
    """
    source, source_speakers, payload = load_vqvae(str(cfg.units_from))
    if source_speakers != speakers:
        raise SpeechVQError(f"units_from={cfg.units_from}: its speakers differ from those of {cfg.data.prepared}")
    model = payload["config"]["model"]
    entries = {key: model[key] for key in ("num_codes", "code_dim", "encoder", "quantizer")}
    weights = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    weights.update({f"quantizer.{k}": v for k, v in source.quantizer.state_dict().items()})
    return weights, entries


def train(cfg: DictConfig) -> TrainResult:
    """Train the VQ-VAE described by the composed ``train`` config; return the trained model.

    With ``units_from=CKPT`` only the decoder is trained, on the frozen encoder and quantizer of
    that VQ-VAE (a unit vocoder; its model config takes their settings from CKPT).
    Under torchrun every process calls this; a process group set up here is torn down at the
    end (one that the caller initialised is left alone).
    """
    for key in ("run_dir", "data.prepared"):
        if _is_missing(cfg, key):
            raise SpeechVQError(f"config value {key} is missing: add {key}=... to the command line")
    corpus = PreparedCorpus(cfg.data.prepared)
    speakers = corpus.speakers
    unit_weights = None
    if cfg.get("units_from"):
        unit_weights, entries = _units_from(cfg, speakers)
        cfg = cfg.copy()
        with open_dict(cfg):
            for key, value in entries.items():
                cfg.model[key] = value
    try:
        config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:  # omegaconf interpolation / missing-value errors are config mistakes
        raise SpeechVQError(f"invalid config: {str(exc).splitlines()[0]}") from None
    segment_samples = int(cfg.data.segment_samples)
    if segment_samples < 64 or segment_samples % 64:
        raise SpeechVQError(f"data.segment_samples={segment_samples}: must be a positive multiple of 64")
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))

    owns_group = not (dist.is_available() and dist.is_initialized())
    ctx = setup_distributed(str(cfg.trainer.device))
    try:
        seed = int(cfg.seed)
        seed_everything(seed)
        model = build_vqvae(cfg.model, num_speakers=len(speakers), frozen_units=unit_weights is not None)
        if unit_weights is not None:
            model.load_state_dict(unit_weights, strict=False)
        with_f0 = not model.autoregressive
        f0_statistics = speaker_f0_stats(corpus, speakers) if corpus.has_f0 else {}
        if with_f0 and not f0_statistics:
            raise SpeechVQError(f"{corpus.root}: the source-filter decoder needs the F0 cache; "
                                "run `speechvq prepare` again")

        def dataset_factory(epoch: int) -> SegmentDataset:
            dataset = SegmentDataset(corpus, "train", segment_samples, speakers, seed=seed, with_f0=with_f0)
            dataset.set_epoch(epoch)
            return dataset

        validation = VQVAEValidation(
            corpus,
            speakers,
            max_utterances=int(cfg.data.max_valid_utterances),
            max_samples=int(cfg.data.valid_samples),
            batch_size=int(cfg.data.batch_size),
            audio_clips=int(cfg.trainer.audio_clips),
            device=ctx.device,
            seed=seed,
            with_f0=with_f0,
        )
        trainer = Trainer(
            model,
            vqvae_loss,
            dataset_factory,
            collate_segments,
            cfg.trainer,
            cfg.run_dir,
            kind="vqvae",
            config=config,
            batch_size=int(cfg.data.batch_size),
            num_workers=int(cfg.data.num_workers),
            seed=seed,
            validate_fn=validation if len(validation) else None,
            best_metric="nll_bits_per_sample" if model.autoregressive else "stft_loss",
            checkpoint_extras=lambda _model: {"speakers": list(speakers), "f0_stats": f0_statistics},
            resume_must_match={"speakers": list(speakers)},
            ctx=ctx,
        )
        if not len(validation) and ctx.is_main:
            print(f"speechvq train: {corpus.root} has no valid or test utterances: no validation, no best.pt")
        return trainer.fit()
    finally:
        if owns_group:
            teardown_distributed()
