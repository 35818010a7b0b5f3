"""Training the VQ-VAE (stage 1) and the unit vocoder: `train(cfg)`, its loss and its validation.

`train(cfg)` takes the composed ``configs/train.yaml`` (see `speechvq.config.compose`) and
trains encoder + quantizer + decoder on random segments of a prepared corpus, validating on
its held-out utterances, with the generic `speechvq.training.trainer.Trainer`. With
``units_from=CKPT`` it trains a unit vocoder: only the decoder, on the frozen encoder and
quantizer of that VQ-VAE. Run directory layout (docs/architecture.md)::

    RUN/config.yaml                      the resolved config
    RUN/checkpoints/step_NNNNNNN.pt      every trainer.checkpoint_every steps (the last keep_last kept)
    RUN/checkpoints/last.pt              the latest checkpoint (resumed from by default)
    RUN/checkpoints/best.pt              lowest validation NLL (or STFT loss) so far
    RUN/tb/                              TensorBoard events

A checkpoint is of kind ``"vqvae"`` and carries ``speakers`` (embedding row order) and
``f0_stats`` (per-speaker log-F0 statistics of the train split) besides the trainer's state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from speechvq.audio import HOP_LENGTH
from speechvq.data.dataset import PreparedCorpus, SegmentDataset, collate_segments
from speechvq.errors import SpeechVQError
from speechvq.f0 import f0_stats
from speechvq.models.builders import build_vqvae
from speechvq.models.loading import load_vqvae
from speechvq.quantization.usage import code_counts, codebook_usage
from speechvq.training.logging import RunLogger
from speechvq.training.session import require, training_session
from speechvq.training.trainer import TrainResult

LN2 = math.log(2.0)


def vqvae_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`Trainer` loss function of the VQ-VAE: batch audio (B, T), speaker (B,), f0 (B, T/hop) -> (loss, metrics).

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
    `max_samples` samples (rounded down to a multiple of `hop_length`, at least one frame); batches are
    zero-padded and the padding masked out. Returns the reconstruction figure —
    ``nll_bits_per_sample`` (teacher-forced NLL with the utterance's own codes) for the
    autoregressive decoder, ``stft_loss`` (one utterance at a time, unpadded) for the
    source-filter decoder — and ``perplexity``, ``used_codes`` of the code histogram; logs the
    histogram and, for the first `audio_clips` utterances, the input and a resynthesis
    (autoregressive: each sample drawn given the true past, seeded; source-filter: generated
    from the codes and the utterance's F0) to TensorBoard. `hop_length` and `sample_rate` are the
    model's (samples per code frame, hertz).
    """

    def __init__(self, corpus: PreparedCorpus, speakers: list[str], max_utterances: int, max_samples: int,
                 batch_size: int, audio_clips: int, device: torch.device, hop_length: int, sample_rate: int,
                 seed: int = 0, with_f0: bool = False) -> None:
        utterances = corpus.utterances("valid") or corpus.utterances("test")
        utterances = sorted(utterances, key=lambda u: u.id)[: max(0, int(max_utterances))]
        index = {name: i for i, name in enumerate(speakers)}
        self.items = []
        for utt in utterances:
            length = max(hop_length, min(utt.num_samples, int(max_samples)) // hop_length * hop_length)
            audio = np.zeros(length, dtype=np.float32)
            available = min(length, utt.num_samples)
            audio[:available] = corpus.audio(utt, 0, available)
            f0 = np.zeros(length // hop_length, dtype=np.float32)
            if with_f0:
                part = corpus.f0(utt, 0, min(f0.shape[0], -(-utt.num_samples // hop_length)))
                f0[: part.shape[0]] = part
            self.items.append((utt.id, torch.from_numpy(audio), index[utt.speaker], torch.from_numpy(f0)))
        self.batch_size = max(1, int(batch_size))
        self.audio_clips = int(audio_clips)
        self.device = device
        self.sample_rate = int(sample_rate)
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
            counts += code_counts(out.vq.codes.cpu()[frame_mask], model.num_codes)
        self._log_clips(model, step, logger)
        return {"nll_bits_per_sample": total_nll / max(1, total_samples) / LN2, **self._usage(counts, step, logger)}

    def _source_filter(self, model: nn.Module, step: int, logger: RunLogger) -> dict[str, float]:
        total, counts = 0.0, torch.zeros(model.num_codes, dtype=torch.int64)
        for _, audio, speaker, f0 in self.items:
            wav = audio[None].to(self.device)
            out = model(wav, torch.tensor([speaker], device=self.device), f0[None].to(self.device))
            total += float(out.terms["stft_convergence"] + out.terms["stft_log_magnitude"])
            counts += code_counts(out.vq.codes.cpu(), model.num_codes)
        if logger.enabled:
            generator = torch.Generator(device=self.device).manual_seed(self.seed)
            for utt_id, audio, speaker, f0 in self.items[: self.audio_clips]:
                z_q = model.quantized(model.encode(audio[None].to(self.device)))
                out = model.decoder(z_q, torch.tensor([speaker], device=self.device), f0[None].to(self.device),
                                    generator=generator)
                logger.audio(f"clips/{utt_id}/input", audio, step, self.sample_rate)
                logger.audio(f"clips/{utt_id}/resynthesis", out[0].clamp(-1, 1).cpu(), step, self.sample_rate)
        return {"stft_loss": total / max(1, len(self.items)), **self._usage(counts, step, logger)}

    @staticmethod
    def _usage(counts: torch.Tensor, step: int, logger: RunLogger) -> dict[str, float]:
        logger.histogram("valid/code_usage", counts, step)
        usage = codebook_usage(counts)
        return {"perplexity": float(usage.perplexity), "used_codes": int(usage.used_codes)}

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
            logger.audio(f"clips/{utt_id}/input", audio, step, self.sample_rate)
            logger.audio(f"clips/{utt_id}/teacher_forced", resynthesis, step, self.sample_rate)


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
    Under torchrun every process calls this (see `speechvq.training.session`).
    """
    require(cfg, "run_dir", "data.prepared")
    corpus = PreparedCorpus(cfg.data.prepared)
    speakers = corpus.speakers
    unit_weights = None
    if cfg.get("units_from"):
        unit_weights, entries = _units_from(cfg, speakers)
        cfg = cfg.copy()
        with open_dict(cfg):
            for key, value in entries.items():
                cfg.model[key] = value
    with training_session(cfg) as session:
        seed = session.seed
        model = build_vqvae(cfg.model, num_speakers=len(speakers), frozen_units=unit_weights is not None)
        if unit_weights is not None:
            model.load_state_dict(unit_weights, strict=False)
        hop = model.hop_length
        segment_samples = int(cfg.data.segment_samples)
        if segment_samples < hop or segment_samples % hop:
            raise SpeechVQError(f"data.segment_samples={segment_samples}: must be a positive multiple of the "
                                f"model's hop of {hop} samples")
        with_f0 = not model.autoregressive
        if with_f0 and hop != HOP_LENGTH:
            raise SpeechVQError(f"the source-filter decoder reads the corpus's F0, one value per {HOP_LENGTH} "
                                f"samples; its encoder has a hop of {hop} samples")
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
            device=session.ctx.device,
            hop_length=hop,
            sample_rate=model.sample_rate,
            seed=seed,
            with_f0=with_f0,
        )
        return session.fit(
            model,
            vqvae_loss,
            dataset_factory,
            collate_segments,
            kind="vqvae",
            validation=validation,
            best_metric="nll_bits_per_sample" if model.autoregressive else "stft_loss",
            batch_size=int(cfg.data.batch_size),
            num_workers=int(cfg.data.num_workers),
            checkpoint_extras=lambda _model: {"speakers": list(speakers), "f0_stats": f0_statistics},
            resume_must_match={"speakers": list(speakers)},
            no_validation=f"speechvq train: {corpus.root} has no valid or test utterances",
        )
