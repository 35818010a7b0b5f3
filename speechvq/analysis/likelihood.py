"""Held-out likelihood of the two-stage model: bits per audio sample, bits per code, bitrate.

The VQ-VAE factorises log p(x) >= log p(x | z) + log p(z) for the codes z = encode(x):

- decoder term: -log2 p(x | z, speaker), teacher-forced, in bits per audio sample;
- prior term: -log2 p(z [| speaker]) under the code prior, in bits per code (the uniform
  prior of stage one costs log2(K) = 9 bits per code);
- together, in bits per audio sample: decoder + prior / 64 (one code per 64 samples) — the
  audio analogue of the bits/dim table of the VQ-VAE paper.

The source-filter decoder has no likelihood: its decoder and total terms are None. It needs an
F0 track beside the codes; ``f0_bits_per_second`` is what that track costs (voicing flags and
10-cent log-F0 steps at the code rate, `speechvq.f0.f0_track_bits`), reported apart from the
units' bits (None where the corpus has no F0 cache).

The prior's bits per code times 250 codes per second is the bitrate an entropy coder would
reach on the codes; 9 x 250 = 2250 bits per second is the raw rate of uniform 512-way codes.
The unigram entropy of the training codes is the rate of a model with no context at all:
a useful prior must come in below it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from speechvq.audio import CODES_PER_SECOND, HOP_LENGTH
from speechvq.data.dataset import PreparedCorpus
from speechvq.f0 import f0_track_bits
from speechvq.models.prior import Prior, unigram_entropy_bits
from speechvq.models.vqvae import VQVAE


@dataclass
class LikelihoodReport:
    """Frame-weighted averages over the evaluated utterances (bits, seconds, hertz).

    `prior_bits_per_code` is log2(K) for the uniform prior; `unigram_bits_per_code` is None
    without a trained prior (it comes from the code counts stored in the prior checkpoint).
    """

    num_utterances: int
    num_samples: int
    num_codes: int
    decoder_bits_per_sample: float | None
    prior_bits_per_code: float
    unigram_bits_per_code: float | None
    bitrate_bits_per_second: float
    raw_bitrate_bits_per_second: float
    total_bits_per_sample: float | None
    codes_per_second: int
    prior: str
    f0_bits_per_second: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def combine(
    decoder_bits: float | None,
    num_samples: int,
    prior_bits: float,
    num_codes: int,
    codebook_size: int,
    num_utterances: int,
    unigram_bits_per_code: float | None,
    prior: str,
    hop_length: int = HOP_LENGTH,
    codes_per_second: float = CODES_PER_SECOND,
) -> LikelihoodReport:
    """Turn summed bits into the report's averages, bitrate and total.

    Args:
        decoder_bits: sum over all audio samples of -log2 p(x_t | x_<t, z, speaker) (None: no likelihood).
        num_samples: number of audio samples scored.
        prior_bits: sum over all codes of -log2 p(z_t | z_<t).
        num_codes: number of codes scored.
        codebook_size: K (the raw rate is log2(K) bits per code).
        hop_length, codes_per_second: the VQ-VAE's samples per code and codes per second.
    """
    decoder_bps = None if decoder_bits is None else decoder_bits / max(num_samples, 1)
    prior_bpc = prior_bits / max(num_codes, 1)
    return LikelihoodReport(
        num_utterances=num_utterances,
        num_samples=num_samples,
        num_codes=num_codes,
        decoder_bits_per_sample=decoder_bps,
        prior_bits_per_code=prior_bpc,
        unigram_bits_per_code=unigram_bits_per_code,
        bitrate_bits_per_second=prior_bpc * codes_per_second,
        raw_bitrate_bits_per_second=math.log2(codebook_size) * codes_per_second,
        total_bits_per_sample=None if decoder_bps is None else decoder_bps + prior_bpc / hop_length,
        codes_per_second=int(codes_per_second) if float(codes_per_second).is_integer() else codes_per_second,
        prior=prior,
    )


def prior_nll_bits(prior: Prior, codes: torch.Tensor, speaker: int) -> float:
    """Summed bits of one utterance's (F,) codes; sequences longer than `max_len` are scored in windows."""
    total = 0.0
    spk = torch.tensor([speaker], device=codes.device) if prior.num_speakers > 0 else None
    for start in range(0, codes.shape[0], prior.max_len):
        window = codes[start : start + prior.max_len].unsqueeze(0)
        total += float(prior.nll_bits(window, spk).double().sum())
    return total


@torch.no_grad()
def evaluate_likelihood(
    vqvae: VQVAE,
    vqvae_speakers: list[str],
    corpus: PreparedCorpus,
    prior: Prior | None = None,
    prior_speakers: list[str] | None = None,
    code_counts: np.ndarray | None = None,
    prior_name: str = "uniform",
    split: str = "test",
    max_utterances: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> LikelihoodReport:
    """Score the utterances of `split`, one at a time, teacher-forced.

    Utterances of speakers the VQ-VAE does not know cannot be decoded and are skipped (with a
    warning); speakers the prior does not know are scored unconditioned (index -1).

    Args:
        vqvae: the trained model (put in eval mode here).
        vqvae_speakers: its speaker names (index = embedding row).
        corpus: the prepared corpus; its `split` utterances are scored.
        prior: a trained prior, or None for the uniform log2(K) bits per code.
        prior_speakers: the prior's speaker names.
        code_counts: (K,) training-code counts stored with the prior (for the unigram entropy).
        prior_name: how the report names the prior (a path, or "uniform").
        max_utterances: score only the first N utterances of the split.
    """
    vqvae.eval()
    if prior is not None:
        prior.eval()
    vq_index = {name: i for i, name in enumerate(vqvae_speakers)}
    prior_index = {name: i for i, name in enumerate(prior_speakers or [])}
    utterances = corpus.utterances(split)
    skipped = sorted({u.speaker for u in utterances if u.speaker not in vq_index})
    if skipped:
        warnings.warn(f"skipping {split} utterances of speakers the VQ-VAE does not know: {', '.join(skipped)}",
                      stacklevel=2)
    utterances = [u for u in utterances if u.speaker in vq_index][:max_utterances]
    codebook_size = vqvae.num_codes
    decoder_bits = prior_bits = 0.0
    num_samples = num_codes = 0
    for utt in tqdm(utterances, desc=f"evaluate {split}", unit="utt", disable=not progress):
        wav = torch.from_numpy(corpus.audio(utt)).to(device).unsqueeze(0)
        speaker = torch.tensor([vq_index[utt.speaker]], device=device)
        if vqvae.autoregressive:
            out = vqvae(wav, speaker)
            decoder_bits += float(out.nll.double().sum()) / math.log(2.0)
            all_codes = out.vq.codes
        else:
            all_codes = vqvae.encode(wav)
        num_samples += wav.shape[1]
        codes = all_codes[0, : -(-wav.shape[1] // vqvae.hop_length)]
        num_codes += codes.shape[0]
        if prior is None:
            prior_bits += codes.shape[0] * math.log2(codebook_size)
        else:
            prior_bits += prior_nll_bits(prior, codes, prior_index.get(utt.speaker, -1))
    unigram = unigram_entropy_bits(code_counts) if code_counts is not None else None
    report = combine(decoder_bits if vqvae.autoregressive else None, num_samples, prior_bits, num_codes,
                     codebook_size, len(utterances), unigram, prior_name, hop_length=vqvae.hop_length,
                     codes_per_second=vqvae.codes_per_second)
    if utterances and corpus.has_f0:
        bits = f0_track_bits(corpus.f0(u) for u in utterances)
        report.f0_bits_per_second = bits["f0_bits_per_frame"] * vqvae.codes_per_second  # F0 frames are code frames
    return report
