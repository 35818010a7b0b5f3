"""The generic trainer: resumable single- or multi-process optimisation of any model on any data.

Every training of this package runs on one `Trainer`: the VQ-VAE (`speechvq.training.vqvae`),
the code prior (`speechvq.training.train_prior`) and the unit vocoder (a VQ-VAE decoder
trained on frozen codes, ``units_from=``). What is specific to a model comes in as functions:
its loss, its training data, its validation and its checkpoint entries.

One step = one batch per process: forward under autocast, backward, clip the global
gradient norm, skip the update when that norm is not finite or above
``grad_skip_threshold`` (VDVAE; counted in ``skipped_updates``), Adam step, learning-rate
schedule step (`speechvq.training.schedule`). Metrics stay on the device between logging
steps and are read once per ``log_every`` steps; the gradient norm is read every step (the
skip decision needs it). Data order and the checkpointed RNG states make a resumed CPU run end
with exactly the weights of an uninterrupted one, whatever the number of data workers.

Writes to the run directory (see `speechvq.training.state` for RUN/checkpoints)::

    RUN/config.yaml                      the resolved config
    RUN/checkpoints/                     step files, last.pt, best.pt
    RUN/tb/                              TensorBoard events
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from speechvq.checkpoint import load_checkpoint, unwrap_model
from speechvq.errors import CheckpointError, SpeechVQError
from speechvq.fileio import write_text_atomic
from speechvq.models.loading import load_state_strict
from speechvq.training.distributed import DistContext, barrier, check_same_step, setup_distributed
from speechvq.training.logging import RunLogger
from speechvq.training.schedule import BatchSchedule, EpochDataset, LRSchedule, ScheduleBatchSampler
from speechvq.training.state import CheckpointDir, load_scaler_state, rng_state, set_rng_state

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, Mapping[str, Any]]]
"""loss_fn(wrapped_model, batch) -> (loss scalar, {name: scalar metric, a tensor or a number})."""


@dataclass
class TrainResult:
    """What `Trainer.fit` / `train` return: the trained (unwrapped) model and the run's counters."""

    model: nn.Module
    step: int
    skipped_updates: int
    valid: dict[str, float] = field(default_factory=dict)


def set_math_modes(precision: str, cudnn_benchmark: bool = False) -> None:
    """Set torch's process-wide float32 math modes from the config (CUDA; settable on any build).

    TF32 (10-bit mantissa) matmuls and cuDNN convolutions are allowed only with
    ``trainer.precision=tf32``; with every other choice the float32 operations (all of them
    with fp32, the output head and the quantizer's distances under bf16/fp16 autocast) run in
    IEEE float32, so codes match a CPU run. ``trainer.cudnn_benchmark`` lets cuDNN time its
    convolution algorithms (faster for fixed shapes; run-to-run nondeterministic).
    """
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Resumable single- or multi-process training of `model` on batches from `dataset_factory`.

    Rank 0 logs (console + TensorBoard), validates and writes checkpoints; every rank runs the
    same number of steps. ``Trainer(...).fit()`` returns a `TrainResult`.

    Args:
        model: the unwrapped nn.Module; the Trainer moves it to the device, and optionally
            compiles and DDP-wraps it.
        loss_fn: ``loss_fn(wrapped_model, batch) -> (loss scalar, {name: scalar metric})``; the
            metrics are averaged over ``log_every`` steps and logged under ``train/``.
        dataset_factory: ``epoch -> map-style Dataset`` of training items (may return the same one;
            its length must not change between epochs). Called for each new epoch by the process
            that reads the items (each DataLoader worker, or the main process), under one
            DataLoader for the whole run.
        collate_fn: list of items -> batch (tensors, or dicts/lists of tensors, moved to the device).
        trainer_cfg: the ``trainer`` config node (``configs/trainer/default.yaml``).
        run_dir: the run directory.
        kind: checkpoint kind ("vqvae" | "prior"); resuming refuses a checkpoint of another kind.
        config: the resolved plain config, stored in every checkpoint and as RUN/config.yaml; its
            ``model`` and ``prior`` sections must match the checkpoint's to resume.
        batch_size: items per process and step.
        num_workers: DataLoader worker processes.
        seed: base seed of the data order (`BatchSchedule`) and of the DataLoader workers.
        validate_fn: ``fn(unwrapped_model, step, logger) -> {name: float}``, run on rank 0 in eval
            mode under no_grad every ``valid_every`` steps and at the end (None: no validation).
        best_metric: key of validate_fn's result; lower is better; an improvement writes best.pt.
        checkpoint_extras: ``fn(unwrapped_model) -> dict`` merged into every checkpoint (speakers, ...).
        resume_must_match: checkpoint entries that must equal these values to resume.
        ctx: the `DistContext` (rank, world size, device); default: `setup_distributed` of
            ``trainer.device``.
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
        set_math_modes(str(self.cfg.get("precision", "auto")), bool(self.cfg.get("cudnn_benchmark", False)))
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=float(self.cfg.lr),
            betas=tuple(float(b) for b in self.cfg.betas),
            weight_decay=float(self.cfg.weight_decay),
        )
        self.lr_schedule = LRSchedule.from_config(self.cfg, self.max_steps)  # validates; clips the warm-up
        # a plain function, not the schedule object: LambdaLR would store the object's fields in
        # checkpoints and bring back an old schedule on resume
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: self.lr_schedule(step))
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
        if choice in ("fp32", "tf32"):
            return None
        if choice == "bf16":
            return torch.bfloat16
        if choice == "fp16":
            if not cuda:
                raise SpeechVQError("trainer.precision=fp16 needs CUDA (use bf16 or fp32 on CPU)")
            return torch.float16
        raise SpeechVQError(f"trainer.precision={choice!r}: choose auto, fp32, tf32, bf16 or fp16")

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
            "rng": rng_state(self.ctx.device),
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
        load_scaler_state(self.scaler, payload.get("scaler"))
        set_rng_state(payload["rng"], self.ctx.device)
        self.step = int(payload["step"])
        self.skipped_updates = int(payload.get("skipped_updates", 0))
        self.best_value = float(payload.get("best_value", math.inf))
        self.last_valid = dict(payload.get("valid", {}))
        return True

    def _batches(self, schedule: BatchSchedule) -> Iterator[Any]:
        """Batches from the current step on, forever: one DataLoader (one set of workers) for the run.

        `ScheduleBatchSampler` walks the schedule across epochs and `EpochDataset` asks the
        dataset factory for each new epoch's dataset, so the order is that of `BatchSchedule`.
        """
        loader = torch.utils.data.DataLoader(
            EpochDataset(self.dataset_factory),
            batch_sampler=ScheduleBatchSampler(schedule, self.step),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.step),
            pin_memory=self.ctx.device.type == "cuda",
        )
        return iter(loader)

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until trainer.max_steps (resuming first when trainer.resume), return the result."""
        ctx, cfg = self.ctx, self.cfg
        if bool(cfg.get("resume", True)) and self.resume():
            resumed_from = self.step
        else:
            resumed_from = None
        check_same_step(ctx, self.step, str(self.checkpoints.last))  # ranks without a shared run_dir: fail fast
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
            with warnings.catch_warnings():
                # a skipped first update makes torch warn that the scheduler stepped before the optimizer
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
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
        max_norm = float(grad_clip) if grad_clip is not None else math.inf
        skip_threshold = cfg.get("grad_skip_threshold")
        log_every, valid_every = max(1, int(cfg.log_every)), max(1, int(cfg.valid_every))
        checkpoint_every = max(1, int(cfg.checkpoint_every))
        window = _Window()
        batches = self._batches(schedule)
        self.model.train()  # validation puts it back in training mode

        while self.step < self.max_steps:
            batch = _to_device(next(batches), ctx.device)
            with torch.autocast(ctx.device.type, dtype=self.precision or torch.float32,
                                enabled=self.precision is not None):
                loss, metrics = self.loss_fn(model, batch)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))  # the one per-step host read
            skip = not math.isfinite(grad_norm) or (skip_threshold is not None and grad_norm > float(skip_threshold))
            if skip:
                self.skipped_updates += 1
            else:
                self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.step += 1

            window.add({"loss": loss, **metrics}, grad_norm, skip, _batch_items(batch))
            if progress is not None:
                progress.update(1)
            if self.step % log_every == 0 or self.step == self.max_steps:
                values = window.averages()
                values.update(
                    lr=lr,
                    skipped_updates=self.skipped_updates,
                    skipped_in_window=window.skipped,
                    items_per_second=window.items * ctx.world_size / window.elapsed(),
                )
                logger.scalars(values, self.step, prefix="train")
                logger.summary(self.step, values, "train")
                if progress is not None:
                    progress.set_postfix(loss=f"{values['loss']:.3f}", skipped=self.skipped_updates)
                window = _Window()

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


class _Window:
    """Sums of the metrics of the steps since the last log line, kept on their device until read."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.steps = self.skipped = self.items = 0
        self.start = time.perf_counter()

    def add(self, metrics: Mapping[str, Any], grad_norm: float, skipped: bool, items: int) -> None:
        for name, value in metrics.items():
            value = value.detach().double() if isinstance(value, torch.Tensor) else float(value)
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.sums["grad_norm"] = self.sums.get("grad_norm", 0.0) + (grad_norm if math.isfinite(grad_norm) else 0.0)
        self.steps += 1
        self.skipped += int(skipped)
        self.items += items

    def averages(self) -> dict[str, float]:
        """{name: mean over the window's steps} as host floats (the only device read of the metrics)."""
        return {name: float(total) / self.steps for name, total in self.sums.items()}

    def elapsed(self) -> float:
        return max(1e-9, time.perf_counter() - self.start)

