"""Stage two: fit the code prior on the codes of a corpus (`train_prior(cfg)`).

Takes the composed ``configs/train_prior.yaml``: ``codes`` (a directory written by
``speechvq encode CKPT --data PREPARED --out CODES``), ``prior`` (the Transformer preset),
``trainer`` (shared with the VQ-VAE: the same `Trainer`, run directory, checkpoints and logs)
and ``data`` (crop length, batch size, speaker dropout, validation size).

Training items are random crops of the train split's code sequences; validation scores the
valid split (else the test split) in bits per code and keeps the best checkpoint. A
checkpoint is of kind ``"prior"`` and carries, besides the trainer's state, ``speakers``
(embedding row order), ``num_codes`` (K) and ``code_counts`` — the (K,) int64 frequencies of
the training codes, from which `speechvq evaluate` computes the unigram entropy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from speechvq.data.codes import CodeEntry, CodesCorpus
from speechvq.errors import DataError, SpeechVQError
from speechvq.models.builders import build_prior
from speechvq.models.prior import unigram_entropy_bits
from speechvq.quantization.usage import code_counts as histogram
from speechvq.training.logging import RunLogger
from speechvq.training.session import require, training_session
from speechvq.training.trainer import TrainResult

LN2 = math.log(2.0)
NO_SPEAKER = -1


def code_counts(corpus: CodesCorpus, split: str = "train") -> np.ndarray:
    """(K,) int64 number of occurrences of each code in `split`; DataError for codes outside [0, K)."""
    counts = np.zeros(corpus.num_codes, dtype=np.int64)
    for entry in corpus.entries(split):
        codes = corpus.codes(entry)
        if codes.size and (codes.min() < 0 or codes.max() >= corpus.num_codes):
            raise DataError(f"{corpus.root}: codes of {entry.id} lie outside [0, {corpus.num_codes})")
        counts += histogram(codes, corpus.num_codes).numpy()
    return counts


class CodeCropDataset(torch.utils.data.Dataset):
    """Random crops of the code sequences of one split; one item per utterance.

    Item i is a crop of at most `crop_codes` consecutive codes of utterance i at a random
    start (the whole utterance when shorter). Items:

    - "codes": (L,) int64 codes in [0, K), L = min(crop_codes, utterance length)
    - "speaker": () int64 index into `speakers`, or -1 (no speaker) for a share
      `speaker_dropout` of the items

    The crop start and the speaker dropout are drawn from a generator seeded by
    (seed, epoch, index): `set_epoch` changes them from epoch to epoch, reproducibly.
    """

    def __init__(self, corpus: CodesCorpus, split: str, crop_codes: int, speakers: list[str],
                 speaker_dropout: float = 0.0, seed: int = 0):
        if crop_codes < 1:
            raise SpeechVQError(f"data.crop_codes={crop_codes}: must be at least 1")
        if not 0.0 <= speaker_dropout <= 1.0:
            raise SpeechVQError(f"data.speaker_dropout={speaker_dropout}: must lie in [0, 1]")
        self.corpus = corpus
        self.entries = [e for e in corpus.entries(split) if e.num_codes > 0]
        if not self.entries:
            raise DataError(f"{corpus.root}: no code sequences in split {split!r}")
        self.crop_codes = int(crop_codes)
        self.speaker_index = {name: i for i, name in enumerate(speakers)}
        self.speaker_dropout = float(speaker_dropout)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Mix `epoch` into the crop and dropout draws."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, max(0, entry.num_codes - self.crop_codes) + 1))
        codes = self.corpus.codes(entry)[start : start + self.crop_codes]
        speaker = self.speaker_index.get(entry.speaker, NO_SPEAKER)
        if rng.random() < self.speaker_dropout:
            speaker = NO_SPEAKER
        return {"codes": torch.from_numpy(codes), "speaker": torch.tensor(speaker, dtype=torch.int64)}


def collate_codes(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad crops to the longest: codes (B, L) int64 (0 in padding), mask (B, L) bool, speaker (B,) int64."""
    length = max(item["codes"].shape[0] for item in items)
    codes = torch.zeros(len(items), length, dtype=torch.int64)
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for row, item in enumerate(items):
        n = item["codes"].shape[0]
        codes[row, :n] = item["codes"]
        mask[row, :n] = True
    return {"codes": codes, "mask": mask, "speaker": torch.stack([item["speaker"] for item in items])}


def masked_nll_nats(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy in nats of (B, L, K) logits against (B, L) codes where (B, L) mask is True."""
    nats = nn.functional.cross_entropy(logits.float().transpose(1, 2), codes, reduction="none")
    return (nats * mask).sum()


def prior_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`Trainer` loss of the prior: mean cross-entropy in nats per code; metric bits_per_code."""
    mask = batch["mask"]
    loss = masked_nll_nats(model(batch["codes"], batch["speaker"]), batch["codes"], mask) / mask.sum()
    return loss, {"bits_per_code": loss.detach() / LN2}


class PriorValidation:
    """Bits per code of held-out code sequences (the valid split, else the test split).

    At most `max_utterances` utterances (manifest order), each cropped to its first
    `max_codes` codes, conditioned on their speaker (-1 if the prior does not know it).
    Also reports the unigram entropy of the training codes, the rate to beat.
    """

    def __init__(self, corpus: CodesCorpus, speakers: list[str], max_utterances: int, max_codes: int,
                 batch_size: int, unigram_bits_per_code: float, device: torch.device):
        entries: list[CodeEntry] = corpus.entries("valid") or corpus.entries("test")
        entries = [e for e in entries if e.num_codes > 0][: max(0, int(max_utterances))]
        index = {name: i for i, name in enumerate(speakers)}
        self.items = [
            {"codes": torch.from_numpy(corpus.codes(e)[: int(max_codes)]),
             "speaker": torch.tensor(index.get(e.speaker, NO_SPEAKER), dtype=torch.int64)}
            for e in entries
        ]
        self.batch_size = max(1, int(batch_size))
        self.unigram_bits_per_code = unigram_bits_per_code
        self.device = device

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, model: nn.Module, step: int, logger: RunLogger) -> dict[str, float]:
        total_nats, total_codes = 0.0, 0
        for start in range(0, len(self.items), self.batch_size):
            batch = collate_codes(self.items[start : start + self.batch_size])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = model(batch["codes"], batch["speaker"])
            total_nats += float(masked_nll_nats(logits, batch["codes"], batch["mask"]))
            total_codes += int(batch["mask"].sum())
        return {
            "bits_per_code": total_nats / max(1, total_codes) / LN2,
            "unigram_bits_per_code": self.unigram_bits_per_code,
        }


def train_prior(cfg: DictConfig) -> TrainResult:
    """Train the prior described by the composed ``train_prior`` config; return the trained model."""
    require(cfg, "run_dir", "codes")
    with training_session(cfg) as session:
        corpus = CodesCorpus(cfg.codes)
        speakers = corpus.speakers
        counts = code_counts(corpus, "train")
        if counts.sum() == 0:
            raise DataError(f"{corpus.root}: no codes in the train split")
        model = build_prior(cfg.prior, num_codes=corpus.num_codes, num_speakers=len(speakers))
        crop_codes = int(cfg.data.crop_codes)
        if crop_codes > model.max_len:
            raise SpeechVQError(f"data.crop_codes={crop_codes} exceeds prior.max_len={model.max_len}")

        def dataset_factory(epoch: int) -> CodeCropDataset:
            dataset = CodeCropDataset(corpus, "train", crop_codes, speakers,
                                      speaker_dropout=float(cfg.data.speaker_dropout), seed=session.seed)
            dataset.set_epoch(epoch)
            return dataset

        validation = PriorValidation(
            corpus,
            speakers,
            max_utterances=int(cfg.data.max_valid_utterances),
            max_codes=min(int(cfg.data.valid_codes), model.max_len),
            batch_size=int(cfg.data.batch_size),
            unigram_bits_per_code=unigram_entropy_bits(counts),
            device=session.ctx.device,
        )
        extras = {"speakers": list(speakers), "num_codes": int(corpus.num_codes),
                  "code_counts": torch.from_numpy(counts)}
        return session.fit(
            model,
            prior_loss,
            dataset_factory,
            collate_codes,
            kind="prior",
            validation=validation,
            best_metric="bits_per_code",
            batch_size=int(cfg.data.batch_size),
            checkpoint_extras=lambda _model: dict(extras),
            no_validation=f"speechvq train-prior: {corpus.root} has no valid or test codes",
        )
