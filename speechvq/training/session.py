"""What every training entry point does around its `Trainer`: config checks, threads, processes, seeds.

`train` (the VQ-VAE and the unit vocoder) and `train_prior` differ in their data, model,
loss and validation only; this module holds the rest::

    require(cfg, "run_dir", "data.prepared")           # one-line errors for missing values
    with training_session(cfg) as session:             # resolved config, threads, DDP, seeds
        model = ...
        return session.fit(model, loss_fn, dataset_factory, collate_fn, kind="vqvae",
                           validation=validation, best_metric="...", ...)

A process group set up by the session is torn down when it ends (one that the caller
initialised is left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import nn

from speechvq.errors import SpeechVQError
from speechvq.training.distributed import DistContext, setup_distributed, teardown_distributed
from speechvq.training.state import seed_everything
from speechvq.training.trainer import LossFn, Trainer, TrainResult

log = logging.getLogger(__name__)


def is_missing(cfg: DictConfig, key: str) -> bool:
    """True if dotted `key` is absent or ``???`` in `cfg`."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return not isinstance(node, DictConfig) or leaf not in node or OmegaConf.is_missing(node, leaf)


def require(cfg: DictConfig, *keys: str) -> None:
    """SpeechVQError naming the first of the dotted `keys` that `cfg` lacks (absent or ``???``)."""
    for key in keys:
        if is_missing(cfg, key):
            raise SpeechVQError(f"config value {key} is missing: add {key}=... to the command line")


def resolve(cfg: DictConfig) -> dict:
    """The config as a resolved plain dict; an interpolation or missing-value error is a SpeechVQError."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:  # omegaconf interpolation / missing-value errors are config mistakes
        raise SpeechVQError(f"invalid config: {str(exc).splitlines()[0]}") from None


@dataclass
class TrainingSession:
    """One process's part of a training run: the config (node and resolved dict), its place and seed."""

    cfg: DictConfig
    config: dict
    ctx: DistContext
    seed: int

    def fit(self, model: nn.Module, loss_fn: LossFn, dataset_factory: Callable[[int], torch.utils.data.Dataset],
            collate_fn: Callable, *, kind: str, validation, best_metric: str, batch_size: int,
            num_workers: int = 0, checkpoint_extras: Callable[[nn.Module], dict] | None = None,
            resume_must_match: Mapping[str, Any] | None = None, no_validation: str = "") -> TrainResult:
        """Train `model` with a `Trainer` on ``cfg.trainer`` in ``cfg.run_dir`` and return the result.

        validation: a sized ``validate_fn`` (see `Trainer`); when it is empty the run has no
        validation and no best.pt, and rank 0 logs a warning starting with `no_validation`.
        """
        has_validation = len(validation) > 0
        if not has_validation and self.ctx.is_main:
            log.warning("%s: no validation, no best.pt", no_validation or "no held-out data")
        trainer = Trainer(
            model, loss_fn, dataset_factory, collate_fn, self.cfg.trainer, self.cfg.run_dir,
            kind=kind, config=self.config, batch_size=batch_size, num_workers=num_workers, seed=self.seed,
            validate_fn=validation if has_validation else None, best_metric=best_metric,
            checkpoint_extras=checkpoint_extras, resume_must_match=resume_must_match, ctx=self.ctx,
        )
        return trainer.fit()


@contextmanager
def training_session(cfg: DictConfig) -> Iterator[TrainingSession]:
    """Resolve `cfg`, apply ``trainer.threads``, join the process group (torchrun) and seed everything
    with ``cfg.seed``; on exit, tear down a process group set up here."""
    config = resolve(cfg)
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    owns_group = not (dist.is_available() and dist.is_initialized())
    ctx = setup_distributed(str(cfg.trainer.device))
    try:
        seed = int(cfg.seed)
        seed_everything(seed)
        yield TrainingSession(cfg, config, ctx, seed)
    finally:
        if owns_group:
            teardown_distributed()
