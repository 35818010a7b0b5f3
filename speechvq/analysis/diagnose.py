"""Codebook health and the posterior-collapse check of a trained VQ-VAE.

A WaveNet decoder is powerful enough to model speech from its own past alone and may learn
to ignore the codes ("posterior collapse"). The check: on held-out utterances, compare the
decoder's teacher-forced NLL of an utterance given its own codes with the NLL of the same
audio (same speaker embedding) given the codes of *another* utterance, both cropped to their
common length. A decoder that uses its codes is much worse with the wrong ones; one that
ignores them shows no gap::

    collapse_gap_bits_per_sample = nll_other_bits_per_sample - nll_true_bits_per_sample

The other utterance is the next one (by id) of the same speaker, or the next one overall if
the speaker has a single held-out utterance, so that the gap measures content, not speaker.
Codebook figures (perplexity, used and dead codes) are taken over every frame of the
evaluated (cropped) utterances.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from speechvq.data.dataset import PreparedCorpus, Utterance
from speechvq.errors import DataError
from speechvq.models.vqvae import VQVAE
from speechvq.quantization.usage import code_counts, codebook_usage

LN2 = math.log(2.0)


def pair_utterances(utterances: list[Utterance]) -> list[tuple[Utterance, Utterance]]:
    """(utterance, other) pairs: each utterance with the next one of its speaker (cyclic, by id).

    Utterances of a speaker with no other held-out utterance are paired with the next
    utterance overall. Needs at least two utterances.
    """
    ordered = sorted(utterances, key=lambda u: u.id)
    if len(ordered) < 2:
        raise DataError(f"the collapse check needs at least 2 held-out utterances, got {len(ordered)}")
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in ordered:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    pairs = []
    for i, utt in enumerate(ordered):
        same = by_speaker[utt.speaker]
        if len(same) > 1:
            other = same[(same.index(utt) + 1) % len(same)]
        else:
            other = ordered[(i + 1) % len(ordered)]
        pairs.append((utt, other))
    return pairs


@torch.no_grad()
def diagnose(
    model: VQVAE,
    speakers: list[str],
    corpus: PreparedCorpus,
    split: str = "test",
    max_utterances: int | None = None,
    max_seconds: float | None = 4.0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Codebook usage and the collapse check on `split` of `corpus` (see the module docstring).

    Args:
        model: a VQ-VAE (put in eval mode here).
        speakers: the model's speaker names (index = embedding row); utterances of speakers
            the model does not know are skipped.
        corpus: a prepared corpus.
        split: the held-out split to use ("test" or "valid").
        max_utterances: use at most this many utterances (the first by id).
        max_seconds: crop each utterance (and pair) to at most this many seconds (None: no crop).
    Returns:
        dict with perplexity, used_codes, dead_codes, nll_true_bits_per_sample,
        nll_other_bits_per_sample, collapse_gap_bits_per_sample, num_utterances,
        num_samples, num_codes, split. For the source-filter decoder, which has no likelihood,
        the nll keys are null and stft_loss_true, stft_loss_other and collapse_gap_stft_loss
        give the same check with its STFT loss (each utterance decoded at its own F0).
    """
    model = model.to(device).eval()
    index = {name: i for i, name in enumerate(speakers)}
    utterances = [u for u in sorted(corpus.utterances(split), key=lambda u: u.id) if u.speaker in index]
    if max_utterances is not None:
        utterances = utterances[: max(0, int(max_utterances))]
    if len(utterances) < 2:
        raise DataError(
            f"{corpus.root}: split {split!r} has {len(utterances)} utterance(s) of the model's speakers; "
            "the collapse check needs at least 2"
        )
    hop = model.hop_length
    limit = None if max_seconds is None else max(hop, int(max_seconds * model.sample_rate) // hop * hop)
    counts = torch.zeros(model.num_codes, dtype=torch.int64)
    nll_true = nll_other = 0.0
    total = 0

    def load(utt: Utterance, length: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(corpus.audio(utt, 0, length)))[None].to(device)

    for utt, other in tqdm(pair_utterances(utterances), desc="diagnose", unit="utt", disable=not progress):
        length = min(utt.num_samples, other.num_samples) // hop * hop
        if limit is not None:
            length = min(length, limit)
        if length < hop:
            continue
        wav, other_wav = load(utt, length), load(other, length)
        speaker = torch.tensor([index[utt.speaker]], device=device)
        codes = model.encode(wav)  # (1, length / hop)
        other_codes = model.encode(other_wav)
        if model.autoregressive:
            nll_true += float(model.decoder.nll(wav, model.quantized(codes), speaker).double().sum())
            nll_other += float(model.decoder.nll(wav, model.quantized(other_codes), speaker).double().sum())
        else:  # STFT loss (spectral convergence + log magnitude) with the utterance's own F0, per sample
            f0 = torch.from_numpy(corpus.f0(utt, 0, length // hop))[None].to(device)

            def stft_total(used: torch.Tensor) -> float:
                terms = model.decoder.loss(wav, model.quantized(used), speaker, f0)
                return float(terms["stft_convergence"] + terms["stft_log_magnitude"]) * length

            nll_true += stft_total(codes)
            nll_other += stft_total(other_codes)
        total += length
        counts += code_counts(codes.cpu(), model.num_codes)
    if total == 0:
        raise DataError(f"{corpus.root}: the held-out utterances of split {split!r} are too short to compare")
    if model.autoregressive:
        true_bits, other_bits = nll_true / total / LN2, nll_other / total / LN2
        figures = {"nll_true_bits_per_sample": true_bits, "nll_other_bits_per_sample": other_bits,
                   "collapse_gap_bits_per_sample": other_bits - true_bits}
    else:
        true_loss, other_loss = nll_true / total, nll_other / total
        figures = {"nll_true_bits_per_sample": None, "nll_other_bits_per_sample": None,
                   "collapse_gap_bits_per_sample": None, "stft_loss_true": true_loss, "stft_loss_other": other_loss,
                   "collapse_gap_stft_loss": other_loss - true_loss}
    return {
        **codebook_usage(counts).as_dict(),
        **figures,
        "num_utterances": len(utterances),
        "num_samples": total,
        "num_codes": model.num_codes,
        "split": split,
    }
