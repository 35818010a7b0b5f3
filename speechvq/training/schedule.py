"""The learning-rate schedule and the data order of a training run.

Learning rate: linear warm-up, then cosine/exponential decay or constant (`lr_factor`,
`LRSchedule`). A warm-up longer than the run is clipped to the run, with a warning.

Data order (`BatchSchedule`) is a pure function of (seed, step): epoch e is a permutation of
the dataset drawn from a generator seeded with (seed, e), cut into global batches of
``batch_size * world_size`` items of which each rank takes its slice. With the checkpointed
states (`speechvq.training.state`) this makes a resumed run read exactly the batches of an
uninterrupted one. `ScheduleBatchSampler` walks that order across epochs for a single
DataLoader of the whole run (its items are ``(epoch, index)`` pairs; `EpochDataset` reads them).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from speechvq.errors import SpeechVQError

DECAYS = ("cosine", "exponential", "constant")


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


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate multiplier of a run (`lr_factor` with fixed arguments; a LambdaLR lambda).

    Build it with `from_config`, which validates ``trainer.decay`` and clips the warm-up.
    """

    max_steps: int
    warmup_steps: int
    decay: str
    min_lr_ratio: float

    @classmethod
    def from_config(cls, trainer_cfg: Mapping, max_steps: int) -> "LRSchedule":
        """From the ``trainer`` node (warmup_steps, decay, min_lr_ratio) for a run of `max_steps` steps.

        A ``trainer.warmup_steps`` above `max_steps` is clipped to `max_steps` (warning).
        """
        decay = str(trainer_cfg["decay"])
        if decay not in DECAYS:
            raise SpeechVQError(f"trainer.decay={decay!r}: choose cosine, exponential or constant")
        warmup = int(trainer_cfg["warmup_steps"])
        if warmup > max_steps:
            warnings.warn(f"trainer.warmup_steps={warmup} is longer than the run (trainer.max_steps={max_steps}): "
                          f"warming up over {max_steps} steps instead", UserWarning, stacklevel=2)
            warmup = max_steps
        return cls(max_steps, warmup, decay, float(trainer_cfg["min_lr_ratio"]))

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.max_steps, self.warmup_steps, self.decay, self.min_lr_ratio)


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


class ScheduleBatchSampler:
    """A DataLoader batch sampler of the whole run: this rank's batches from global step `start_step`
    on, epoch after epoch, without end (the trainer stops at max_steps). A batch is a list of
    ``(epoch, index)`` pairs, so that one DataLoader (and one set of worker processes) serves
    every epoch while each item still knows its epoch (see `EpochDataset`)."""

    def __init__(self, schedule: BatchSchedule, start_step: int = 0) -> None:
        self.schedule = schedule
        self.start_step = int(start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, position = self.schedule.locate(self.start_step)
        while True:
            for batch in self.schedule.epoch_batches(epoch)[position:]:
                yield [(epoch, index) for index in batch]
            epoch, position = epoch + 1, 0


class EpochDataset:
    """Items ``(epoch, index)`` of ``dataset_factory(epoch)[index]``: the factory is called again
    when the epoch changes (in the process that reads, a DataLoader worker or the main process),
    so per-epoch datasets (``set_epoch``) work with one DataLoader for the whole run."""

    def __init__(self, dataset_factory: Callable[[int], "torch.utils.data.Dataset"]) -> None:
        self.dataset_factory = dataset_factory
        self.epoch: int | None = None
        self.dataset = None

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if epoch != self.epoch:
            self.dataset, self.epoch = self.dataset_factory(epoch), epoch
        return self.dataset[index]
