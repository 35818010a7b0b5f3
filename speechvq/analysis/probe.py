"""Phone and speaker probes of discrete speech units: what the VQ-VAE codes mean.

Every code frame (64 samples, 4 ms at 16 kHz) is labelled with the phone at its centre,
after phone-set normalisation (`speechvq.data.phones`; silence is the one class
``SILENCE``, optionally excluded). Fitting uses the corpus's train split and scoring its
test split (optionally speaker-disjoint: fit on some speakers, score on the others).

Measures:

* many-to-one accuracy against the majority baseline, PNMI, phone and code purity, code
  usage (`speechvq.analysis.unit_measures`);
* the same many-to-one accuracy and PNMI for the field's yardstick, k-means units of log-mel
  and of MFCC+Δ+ΔΔ frames (`speechvq.analysis.baselines`), with K = 512 and the model's K,
  fitted on the same frames, and the codes' figures over the best baseline's;
* triphone ABX error rates, within and across speakers, of z_e, z_q, the codes (one-hot) and
  log-mel frames on the test split (`speechvq.analysis.abx`, the ZeroSpeech scoring);
* linear probes (`speechvq.analysis.linear_probe`) of the phone
  from the quantized vectors z_q and from the continuous encoder output z_e: accuracy and
  per-phone F1; the same probe of the speaker, against the majority-class rate and 1 / the
  number of speakers;
* utterance speaker identification from histograms of codes (and of k-means units), leaving
  one utterance out (`speechvq.analysis.speaker_info`);
* two plots: the code x phone co-occurrence heatmap and the linear probe's confusion matrix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from speechvq.analysis.abx import DEFAULT_MAX_ITEMS, abx_table, one_hot, select_items, triphone_items
from speechvq.analysis.baselines import (
    DEFAULT_MAX_KMEANS_FRAMES,
    DEFAULT_NUM_CLUSTERS,
    FEATURE_KINDS,
    fit_kmeans,
    frame_features,
)
from speechvq.analysis.linear_probe import DEFAULT_MAX_ITER, DEFAULT_MAX_PROBE_FRAMES, linear_probe
from speechvq.analysis.probe_plots import plot_confusion, plot_cooccurrence
from speechvq.analysis.speaker_info import leave_one_out_speaker_accuracy
from speechvq.analysis.unit_measures import (
    code_to_label_map,
    contingency_table,
    majority_baseline,
    many_to_one_accuracy,
    pnmi,
    unit_phone_measures,
)
from speechvq.audio import HOP_LENGTH, SAMPLE_RATE
from speechvq.data.alignments import Phone, frame_labels
from speechvq.data.phones import SILENCE, normalize_alignment
from speechvq.errors import DataError, SpeechVQError
from speechvq.quantization.usage import usage_of_codes

DEFAULT_HELDOUT_SPEAKER_FRACTION = 1 / 3


# ----------------------------------------------------------------------------- frames of a corpus

def phone_frame_labels(phones: list[Phone], num_samples: int, mapping: dict[str, str] | None = None,
                       hop_length: int = HOP_LENGTH, sample_rate: int = SAMPLE_RATE) -> list[str | None]:
    """Normalised phone at the centre of each `hop_length`-sample frame of an utterance of `num_samples` samples.

    The alignment is normalised as a whole first (`normalize_alignment`: its phone set is
    detected, `mapping` overrides, deleted phones leave their time uncovered). Returns
    ceil(num_samples / hop_length) labels: the normalised name (silence is ``SILENCE``), or None
    where no phone covers the frame centre. Pass a model's ``hop_length`` and ``sample_rate``
    to label its code frames.
    """
    frames = -(-int(num_samples) // int(hop_length))
    return frame_labels(normalize_alignment(phones, mapping), frames, hop_s=hop_length / sample_rate)


@dataclass
class _Utterance:
    """One whole encoded utterance, for ABX: its normalised alignment and per-frame (F, ...) arrays."""

    id: str
    speaker: str
    phones: list[Phone]
    codes: np.ndarray  # (F,) int64
    continuous: np.ndarray  # (F, D) float32, z_e
    logmel: np.ndarray  # (F, 80) float32


@dataclass
class _Frames:
    """Labelled frames of a set of utterances (all arrays share their first dimension N)."""

    codes: np.ndarray  # (N,) int64
    continuous: np.ndarray  # (N, D) float32, encoder output z_e
    features: dict[str, np.ndarray]  # baseline feature kind -> (N, D_kind) float32 (`baselines.frame_features`)
    phones: list[str]  # (N,) normalised phone names
    speakers: list[str]  # (N,) speaker names
    utterance: np.ndarray  # (N,) int64 index of the frame's utterance in `utterance_speakers`
    utterance_speakers: list[str]  # speaker of each utterance encoded (with an alignment)
    utterances: list[_Utterance] = field(default_factory=list)  # whole utterances, when kept


@torch.no_grad()
def _encode_frames(vqvae: torch.nn.Module, corpus, utterances: list, device: torch.device,
                   mapping: dict[str, str] | None, exclude_silence: bool, progress: bool, desc: str,
                   keep_utterances: bool = False) -> _Frames:
    """Encode `utterances` and keep their phone-labelled frames (silence dropped if asked), and the
    whole utterances too if `keep_utterances`."""
    from threadpoolctl import threadpool_limits

    codes, continuous, features, phones, speakers, index, utterance_speakers, whole = [], [], [], [], [], [], [], []
    # One BLAS thread for the features: idle OpenBLAS threads spinning between utterances slowed
    # the torch encoder 3x on 2 cores.
    with threadpool_limits(1, user_api="blas"):
        for utt in tqdm(utterances, desc=desc, unit="utt", disable=not progress):
            alignment = corpus.phones(utt)
            if not alignment:
                continue
            audio = corpus.audio(utt)
            wav = torch.from_numpy(np.ascontiguousarray(audio))[None].to(device)
            z_e = vqvae.encode_continuous(wav)  # (1, D, F): the encoder runs once per utterance
            utt_codes = vqvae.quantizer.encode(z_e)[0].cpu().numpy()  # (F,)
            utt_z = z_e[0].T.float().cpu().numpy()  # (F, D)
            utt_features = frame_features(audio)  # kind -> (F, D_kind)
            labels = phone_frame_labels(alignment, utt.num_samples, mapping, vqvae.hop_length, vqvae.sample_rate)
            keep = [i for i, label in enumerate(labels)
                    if label is not None and not (exclude_silence and label == SILENCE) and i < len(utt_codes)]
            codes.append(utt_codes[keep])
            continuous.append(utt_z[keep])
            features.append({kind: x[keep] for kind, x in utt_features.items()})
            phones.extend(labels[i] for i in keep)
            speakers.extend([utt.speaker] * len(keep))
            index.append(np.full(len(keep), len(utterance_speakers), dtype=np.int64))
            utterance_speakers.append(utt.speaker)
            if keep_utterances:
                whole.append(_Utterance(utt.id, utt.speaker, normalize_alignment(alignment, mapping), utt_codes, utt_z,
                                        utt_features["logmel"]))
    if not codes:
        return _Frames(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), {k: np.zeros((0, 0), np.float32)
                       for k in FEATURE_KINDS}, [], [], np.zeros(0, np.int64), [])
    return _Frames(np.concatenate(codes), np.concatenate(continuous),
                   {k: np.concatenate([f[k] for f in features]) for k in FEATURE_KINDS}, phones, speakers,
                   np.concatenate(index), utterance_speakers, whole)


def _select(frames: _Frames, speakers: set[str]) -> _Frames:
    """The frames of `frames` spoken by one of `speakers` (utterance indices keep their meaning)."""
    keep = np.array([s in speakers for s in frames.speakers], dtype=bool)
    return _Frames(frames.codes[keep], frames.continuous[keep], {k: x[keep] for k, x in frames.features.items()},
                   [p for p, k in zip(frames.phones, keep) if k], [s for s, k in zip(frames.speakers, keep) if k],
                   frames.utterance[keep], frames.utterance_speakers, frames.utterances)


def _limit(utterances: list, max_utterances: int | None, seed: int) -> list:
    """At most `max_utterances` of `utterances`, a seeded random subset kept in manifest order."""
    if max_utterances is None or len(utterances) <= max_utterances:
        return utterances
    pick = np.sort(np.random.default_rng(seed).choice(len(utterances), size=max_utterances, replace=False))
    return [utterances[i] for i in pick]


def split_speakers(speakers: Sequence[str], fraction: float = DEFAULT_HELDOUT_SPEAKER_FRACTION,
                   seed: int = 0) -> tuple[list[str], list[str]]:
    """Split speakers into (fit, held-out) lists for speaker-disjoint probing.

    `fraction` of them (at least one, leaving at least one) are held out, drawn with `seed`.
    """
    speakers = sorted(set(speakers))
    if len(speakers) < 2:
        raise SpeechVQError(f"speaker-disjoint probing needs at least 2 speakers, the corpus has {len(speakers)}")
    count = min(len(speakers) - 1, max(1, round(fraction * len(speakers))))
    order = np.random.default_rng(seed).permutation(len(speakers))
    held_out = sorted(speakers[i] for i in order[:count])
    return [s for s in speakers if s not in held_out], held_out


def _index(names: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(vocabulary)}
    return np.array([lookup[n] for n in names], dtype=np.int64)


def _phone_order(phones: set[str]) -> list[str]:
    """Phones sorted by name, silence last."""
    return sorted(phones - {SILENCE}) + ([SILENCE] if SILENCE in phones else [])


def _utterance_speaker_id(parts: Sequence[tuple[_Frames, np.ndarray]], num_units: int) -> dict:
    """Leave-one-utterance-out speaker identification from unit histograms of the utterances of
    `parts` ((frames, (N,) unit ids of those frames) pairs)."""
    histograms, speakers = [], []
    for frames, units in parts:
        counts = np.zeros((len(frames.utterance_speakers), num_units))
        np.add.at(counts, (frames.utterance, units), 1)
        histograms.append(counts)
        speakers.extend(frames.utterance_speakers)
    return leave_one_out_speaker_accuracy(np.concatenate(histograms), _index(speakers, sorted(set(speakers))))


def _kmeans_baselines(train: _Frames, test: _Frames, fit: _Frames, score: _Frames, fit_y: np.ndarray,
                      score_y: np.ndarray, cluster_counts: Sequence[int], seed: int, max_frames: int) -> dict:
    """Many-to-one accuracy, PNMI and utterance speaker ID of k-means units of each feature kind,
    fitted on the `fit` frames (named ``<kind>_kmeans``, with ``_k<K>`` unless K is 512)."""
    baselines = {}
    for k in cluster_counts:
        for kind in FEATURE_KINDS:
            model = fit_kmeans(fit.features[kind], k, seed=seed, max_train_frames=max_frames)
            units = {id(f): model.predict(f.features[kind]) for f in (train, test)}
            fit_units = units[id(fit)] if id(fit) in units else model.predict(fit.features[kind])
            score_units = units[id(score)] if id(score) in units else model.predict(score.features[kind])
            name = f"{kind}_kmeans" + ("" if k == DEFAULT_NUM_CLUSTERS else f"_k{k}")
            baselines[name] = {
                "num_clusters": int(model.n_clusters),
                "many_to_one_accuracy": many_to_one_accuracy(fit_units, fit_y, score_units, score_y),
                "pnmi": pnmi(score_units, score_y),
                "utterance_speaker_accuracy": _utterance_speaker_id(
                    [(train, units[id(train)]), (test, units[id(test)])], int(model.n_clusters))["accuracy"],
            }
    return baselines


def _codes_over_best(codes: dict, baselines: dict) -> dict:
    """The codes' many-to-one accuracy and PNMI over the best baseline's (None where undefined)."""
    ratios = {}
    for key in ("many_to_one_accuracy", "pnmi"):
        best = max((b[key] for b in baselines.values() if b[key] is not None and math.isfinite(b[key])), default=None)
        ratios[key] = codes[key] / best if best and codes[key] is not None else None
    return ratios


def _abx(utterances: Sequence[_Utterance], codebook: np.ndarray, max_items: int | None, seed: int) -> dict:
    """Triphone ABX of z_e, z_q, the codes (one-hot) and log-mel frames of whole `utterances`."""
    items = select_items([item for u in utterances for item in triphone_items(u.id, u.speaker, u.phones)],
                         max_items, seed)
    return abx_table({"z_e": {u.id: u.continuous for u in utterances},
                      "z_q": {u.id: codebook[u.codes] for u in utterances},
                      "codes": one_hot({u.id: u.codes for u in utterances}),
                      "logmel": {u.id: u.logmel for u in utterances}}, items)


def _finite(value):
    """`value` with every non-finite float, also inside dicts, replaced by None (JSON-ready)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ----------------------------------------------------------------------------- the probe

def run_probe(
    vqvae: torch.nn.Module,
    corpus,
    device: torch.device | str = "cpu",
    exclude_silence: bool = False,
    phone_map: dict[str, str] | None = None,
    speaker_disjoint: bool = False,
    heldout_speaker_fraction: float = DEFAULT_HELDOUT_SPEAKER_FRACTION,
    max_utterances: int | None = None,
    max_probe_frames: int = DEFAULT_MAX_PROBE_FRAMES,
    max_iter: int = DEFAULT_MAX_ITER,
    max_kmeans_frames: int = DEFAULT_MAX_KMEANS_FRAMES,
    max_abx_items: int | None = DEFAULT_MAX_ITEMS,
    seed: int = 0,
    plots_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Probe the codes (and encoder outputs) of `vqvae` with the phone alignments of `corpus`.

    vqvae: a VQVAE in eval mode (``encode_continuous``, ``quantizer.encode``, ``quantized``,
    ``num_codes``, ``hop_length``, ``sample_rate``). corpus: a `PreparedCorpus` with alignments.
    The train split's labelled
    frames fit the mappings and probes; the test split's are scored. With
    `speaker_disjoint`, phone measures are fitted on the train frames of some speakers and
    scored on the test frames of the others: the speakers that have no train utterances
    (``prepare --holdout-speakers``) if there are any, else a seeded random
    `heldout_speaker_fraction` of them. The speaker probe always uses every speaker with
    train utterances, train -> test.
    K-means baselines are fitted on the same frames as the many-to-one mapping. ABX scores the
    whole test utterances (all speakers). Utterance speaker identification pools the encoded
    utterances of both splits (leave one out).
    `max_utterances` caps the utterances encoded per split (seeded random subset);
    `max_probe_frames` caps the training frames of each linear probe, `max_kmeans_frames`
    those of each k-means fit, and `max_abx_items` the ABX items (`abx.select_items`, seeded).

    Returns a JSON-ready dict: many_to_one_accuracy, majority_baseline, majority_phone,
    linear_probe_accuracy, linear_probe_accuracy_continuous, per_phone_f1 (phone -> F1 of
    the probe on z_q), per_phone_f1_continuous, pnmi, phone_purity, code_purity,
    speaker_probe_accuracy, speaker_probe_accuracy_continuous, speaker_chance (the train
    majority speaker's share of the test frames), speaker_chance_uniform (1 / speakers),
    utterance_speaker_accuracy, utterance_speaker_chance, baselines ({logmel,mfcc}_kmeans[_k<K>]:
    num_clusters, many_to_one_accuracy, pnmi, utterance_speaker_accuracy; codes_over_best:
    the codes' many_to_one_accuracy and pnmi over the best baseline's), abx ({within,across}_speaker:
    {z_e, z_q, codes, logmel} error rates; num_items, num_contexts), num_frames (scored test
    frames), num_frames_train, num_utterances_train, num_utterances_test, num_phones, phones,
    num_speakers, num_codes, used_codes, perplexity, dead_codes, exclude_silence, speaker_disjoint
    (+ fit_speakers, heldout_speakers), code_to_phone (the many-to-one mapping: a phone per
    code, K entries), phone_map (`phone_map` as given), plots.
    """
    device = torch.device(device)
    if not corpus.has_alignments:
        raise DataError(f"{corpus.root}: the corpus has no phone alignments; run `speechvq align` "
                        "and prepare it again with the alignments")
    train_utts = _limit(corpus.utterances("train"), max_utterances, seed)
    test_utts = _limit(corpus.utterances("test"), max_utterances, seed)
    if not test_utts:
        raise DataError(f"{corpus.root}: the corpus has no test split to score the probe on")
    train = _encode_frames(vqvae, corpus, train_utts, device, phone_map, exclude_silence, progress, "probe: train")
    test = _encode_frames(vqvae, corpus, test_utts, device, phone_map, exclude_silence, progress, "probe: test",
                          keep_utterances=True)
    if len(train.codes) == 0 or len(test.codes) == 0:
        raise DataError(f"{corpus.root}: no phone-labelled frames in the "
                        f"{'train' if len(train.codes) == 0 else 'test'} split")

    result: dict = {"speaker_disjoint": bool(speaker_disjoint), "exclude_silence": bool(exclude_silence)}
    fit, score = train, test
    if speaker_disjoint:
        unseen = sorted(set(test.speakers) - set(train.speakers))  # e.g. prepare's held-out speakers
        if unseen:
            fit_speakers, heldout = sorted(set(train.speakers)), unseen
        else:
            fit_speakers, heldout = split_speakers(train.speakers, heldout_speaker_fraction, seed)
        fit, score = _select(train, set(fit_speakers)), _select(test, set(heldout))
        result.update(fit_speakers=fit_speakers, heldout_speakers=heldout)
        if len(fit.codes) == 0 or len(score.codes) == 0:
            raise DataError(f"{corpus.root}: speaker-disjoint split left no "
                            f"{'training' if len(fit.codes) == 0 else 'test'} frames "
                            f"(held-out speakers: {', '.join(heldout)})")

    vocabulary = _phone_order(set(fit.phones) | set(score.phones))
    fit_y, score_y = _index(fit.phones, vocabulary), _index(score.phones, vocabulary)
    num_codes = int(vqvae.num_codes)
    with torch.no_grad():
        codebook = vqvae.quantized(torch.arange(num_codes, device=device)[None])[0].T.float().cpu().numpy()  # (K, D)
    majority = int(np.bincount(fit_y, minlength=len(vocabulary)).argmax())

    probe_args = dict(max_train_frames=max_probe_frames, max_iter=max_iter, seed=seed)
    code_probe = linear_probe(codebook[fit.codes], fit_y, codebook[score.codes], score_y, len(vocabulary), **probe_args)
    cont_probe = linear_probe(fit.continuous, fit_y, score.continuous, score_y, len(vocabulary), **probe_args)

    speaker_names = sorted(set(train.speakers))
    known = _select(test, set(speaker_names))
    speaker_result = {"speaker_probe_accuracy": None, "speaker_probe_accuracy_continuous": None,
                      "speaker_chance": None, "speaker_chance_uniform": None}
    if len(speaker_names) >= 2 and len(known.codes):
        train_s, test_s = _index(train.speakers, speaker_names), _index(known.speakers, speaker_names)
        speaker_result = {
            "speaker_probe_accuracy": linear_probe(codebook[train.codes], train_s, codebook[known.codes], test_s,
                                                   len(speaker_names), **probe_args).accuracy,
            "speaker_probe_accuracy_continuous": linear_probe(train.continuous, train_s, known.continuous, test_s,
                                                              len(speaker_names), **probe_args).accuracy,
            "speaker_chance": majority_baseline(test_s, train_s),
            "speaker_chance_uniform": 1.0 / len(speaker_names),
        }
    utterance_id = _utterance_speaker_id([(train, train.codes), (test, test.codes)], num_codes)
    baselines = _kmeans_baselines(train, test, fit, score, fit_y, score_y, sorted({DEFAULT_NUM_CLUSTERS, num_codes}),
                                  seed, max_kmeans_frames)

    codes_m2o, codes_measures = many_to_one_accuracy(fit.codes, fit_y, score.codes, score_y), \
        unit_phone_measures(score.codes, score_y)
    result.update(
        many_to_one_accuracy=codes_m2o,
        majority_baseline=majority_baseline(score_y, fit_y),
        majority_phone=vocabulary[majority],
        linear_probe_accuracy=code_probe.accuracy,
        linear_probe_accuracy_continuous=cont_probe.accuracy,
        per_phone_f1={p: float(f) for p, f in zip(vocabulary, code_probe.f1)},
        per_phone_f1_continuous={p: float(f) for p, f in zip(vocabulary, cont_probe.f1)},
        **codes_measures,
        **speaker_result,
        utterance_speaker_accuracy=utterance_id["accuracy"],
        utterance_speaker_chance=utterance_id["chance"],
        baselines={**baselines, "codes_over_best": _codes_over_best(
            {"many_to_one_accuracy": codes_m2o, "pnmi": codes_measures["pnmi"]}, baselines)},
        abx=_abx(test.utterances, codebook, max_abx_items, seed),
        num_frames=int(len(score_y)),
        num_frames_train=int(len(fit_y)),
        num_probe_frames_train=code_probe.num_train,
        num_utterances_train=len(train.utterance_speakers),
        num_utterances_test=len(test.utterance_speakers),
        num_phones=len(vocabulary),
        phones=vocabulary,
        num_speakers=len(speaker_names),
        num_codes=num_codes,
        **usage_of_codes(np.concatenate([train.codes, test.codes]), num_codes).as_dict(),
        code_to_phone=[vocabulary[i] for i in code_to_label_map(fit.codes, fit_y, num_codes, len(vocabulary))],
        phone_map=phone_map,
    )
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        table = contingency_table(score.codes, score_y, num_codes, len(vocabulary))
        result["plots"] = {
            "cooccurrence": str(plot_cooccurrence(table, vocabulary, plots_dir / "code_phone_cooccurrence.png")),
            "confusion": str(plot_confusion(code_probe.confusion, vocabulary, plots_dir / "linear_probe_confusion.png",
                                            title="linear probe on z_q: confusion")),
        }
    return _finite(result)
