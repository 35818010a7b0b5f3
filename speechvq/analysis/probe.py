"""Phone and speaker probes of discrete speech units: what the VQ-VAE codes mean.

Every code frame (64 samples, 4 ms at 16 kHz) is labelled with the phone at its centre,
after phone-set normalisation (`speechvq.data.phones`; silence is the one class
``SILENCE``, optionally excluded). Fitting uses the corpus's train split and scoring its
test split (optionally speaker-disjoint: fit on some speakers, score on the others).

Measures (the pure functions below take integer arrays, so they are testable without a model):

* many-to-one accuracy (van den Oord et al. 2017): each code is mapped to the phone it
  co-occurs with most often in the training frames; accuracy on the test frames, against
  the majority baseline (always the most frequent training phone) on the same frames;
* PNMI, phone purity and code (cluster) purity (Hsu et al. 2021, HuBERT) from the
  joint distribution p(phone, code) of the test frames: PNMI = I(phone; code) / H(phone),
  phone purity = E_code[max_phone p(phone | code)], code purity = E_phone[max_code p(code | phone)].
  These are plug-in estimates on the scored frames, biased upwards when there are few frames
  per used code (phone purity then exceeds the held-out many-to-one accuracy);
* linear probes (multinomial logistic regression on standardised features) of the phone
  from the quantized vectors z_q and from the continuous encoder output z_e: accuracy and
  per-phone F1; the same probe of the speaker, against its majority-class chance level;
* code usage (distinct codes used, perplexity) and two plots: the code x phone
  co-occurrence heatmap and the linear probe's confusion matrix.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE, num_frames
from speechvq.data.alignments import Phone, frame_labels
from speechvq.data.phones import SILENCE, normalize_alignment
from speechvq.errors import DataError, SpeechVQError
from speechvq.fileio import atomic_path

DEFAULT_MAX_PROBE_FRAMES = 20000
DEFAULT_MAX_ITER = 200
DEFAULT_HELDOUT_SPEAKER_FRACTION = 1 / 3


# ----------------------------------------------------------------------------- counting measures

def contingency_table(codes: np.ndarray, labels: np.ndarray, num_codes: int, num_labels: int) -> np.ndarray:
    """Co-occurrence counts of (code, label) over frames.

    codes: (N,) ints in [0, num_codes); labels: (N,) ints in [0, num_labels).
    Returns (num_codes, num_labels) int64 counts.
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if codes.shape != labels.shape:
        raise ValueError(f"codes {codes.shape} and labels {labels.shape} differ in length")
    flat = np.bincount(codes * num_labels + labels, minlength=num_codes * num_labels)
    return flat.reshape(num_codes, num_labels)


def code_to_label_map(codes: np.ndarray, labels: np.ndarray, num_codes: int, num_labels: int) -> np.ndarray:
    """Many-to-one mapping: each code -> the label it co-occurs with most often.

    Codes never seen map to the overall most frequent label. Returns (num_codes,) int64.
    """
    table = contingency_table(codes, labels, num_codes, num_labels)
    mapping = table.argmax(axis=1)
    mapping[table.sum(axis=1) == 0] = int(table.sum(axis=0).argmax())
    return mapping


def many_to_one_accuracy(train_codes: np.ndarray, train_labels: np.ndarray,
                         test_codes: np.ndarray, test_labels: np.ndarray) -> float:
    """Frame accuracy on the test frames of the code -> most-frequent-train-label mapping.

    All arguments are (N,) non-negative int arrays (train and test lengths may differ).
    """
    num_codes = int(max(np.max(train_codes), np.max(test_codes))) + 1
    num_labels = int(max(np.max(train_labels), np.max(test_labels))) + 1
    mapping = code_to_label_map(train_codes, train_labels, num_codes, num_labels)
    return float(np.mean(mapping[np.asarray(test_codes)] == np.asarray(test_labels)))


def majority_baseline(test_labels: np.ndarray, train_labels: np.ndarray | None = None) -> float:
    """Accuracy on `test_labels` of always guessing the most frequent label.

    The guess is the most frequent label of `train_labels` (the test labels' own if None).
    """
    test_labels = np.asarray(test_labels, dtype=np.int64)
    reference = test_labels if train_labels is None else np.asarray(train_labels, dtype=np.int64)
    guess = int(np.bincount(reference).argmax())
    return float(np.mean(test_labels == guess))


def unit_phone_measures(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """PNMI, phone purity and code purity of codes against labels (Hsu et al. 2021).

    codes, labels: (N,) non-negative int arrays over the same frames. Returns
    {"pnmi", "phone_purity", "code_purity"}, each in [0, 1]; PNMI is NaN when the labels
    have zero entropy (a single label).
    """
    table = contingency_table(codes, labels, int(np.max(codes)) + 1, int(np.max(labels)) + 1)
    joint = table / table.sum()  # (K, P) p(code, label)
    p_code = joint.sum(axis=1)
    p_label = joint.sum(axis=0)
    nonzero = joint > 0
    outer = p_code[:, None] * p_label[None, :]
    mutual_information = float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))
    label_entropy = float(-np.sum(p_label[p_label > 0] * np.log(p_label[p_label > 0])))
    return {
        "pnmi": mutual_information / label_entropy if label_entropy > 0 else float("nan"),
        "phone_purity": float(joint.max(axis=1).sum()),  # sum_z p(z) max_y p(y|z)
        "code_purity": float(joint.max(axis=0).sum()),  # sum_y p(y) max_z p(z|y)
    }


def pnmi(codes: np.ndarray, labels: np.ndarray) -> float:
    """Phone-normalised mutual information I(label; code) / H(label) of (N,) int arrays."""
    return unit_phone_measures(codes, labels)["pnmi"]


def phone_purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """E over codes of max_label p(label | code): accuracy of the best code -> label map on these frames."""
    return unit_phone_measures(codes, labels)["phone_purity"]


def code_purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """E over labels of max_code p(code | label): how concentrated each label is on one code."""
    return unit_phone_measures(codes, labels)["code_purity"]


def code_usage(codes: np.ndarray, num_codes: int) -> dict[str, float | int]:
    """Codebook usage of (N,) codes: {"used_codes", "code_perplexity"} (perplexity = exp(entropy), in codes)."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64).reshape(-1), minlength=num_codes)
    p = counts[counts > 0] / counts.sum()
    return {"used_codes": int((counts > 0).sum()), "code_perplexity": float(np.exp(-np.sum(p * np.log(p))))}


# ----------------------------------------------------------------------------- linear probes

@dataclass
class LinearProbeResult:
    """A fitted-and-scored linear probe.

    accuracy: share of test frames predicted right; f1: (C,) per-class F1 on the test frames
    (classes 0..C-1, 0 for a class never predicted nor present); confusion: (C, C) int64
    counts, rows = true class, columns = predicted class; num_train: frames the probe saw.
    """

    accuracy: float
    f1: np.ndarray
    confusion: np.ndarray
    num_train: int
    predictions: np.ndarray = field(repr=False)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, max_train_frames: int = DEFAULT_MAX_PROBE_FRAMES,
                 max_iter: int = DEFAULT_MAX_ITER, seed: int = 0) -> LinearProbeResult:
    """Multinomial logistic regression from (N, D) features to (N,) int class ids in [0, num_classes).

    Features are standardised with the training statistics; at most `max_train_frames`
    training frames (drawn at random with `seed`) are used and lbfgs stops after `max_iter`
    iterations (a probe, not a converged classifier). Scored on all test frames.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix, f1_score
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_x, test_x = np.asarray(train_x, dtype=np.float32), np.asarray(test_x, dtype=np.float32)
    train_y, test_y = np.asarray(train_y, dtype=np.int64), np.asarray(test_y, dtype=np.int64)
    if len(train_y) == 0 or len(test_y) == 0:
        raise DataError("a linear probe needs training and test frames; none were left")
    if len(train_y) > max_train_frames:
        pick = np.random.default_rng(seed).choice(len(train_y), size=max_train_frames, replace=False)
        train_x, train_y = train_x[pick], train_y[pick]
    if len(np.unique(train_y)) < 2:
        predictions = np.full(len(test_y), int(train_y[0]), dtype=np.int64)
    else:
        scaler = StandardScaler().fit(train_x)
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        # One BLAS/OpenMP thread: on a shared or small CPU, sklearn's threaded loss is several times slower.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(scaler.transform(train_x), train_y)
        predictions = model.predict(scaler.transform(test_x)).astype(np.int64)
    classes = np.arange(num_classes)
    return LinearProbeResult(
        accuracy=float(np.mean(predictions == test_y)),
        f1=f1_score(test_y, predictions, labels=classes, average=None, zero_division=0.0),
        confusion=confusion_matrix(test_y, predictions, labels=classes),
        num_train=int(len(train_y)),
        predictions=predictions,
    )


# ----------------------------------------------------------------------------- plots

def plot_cooccurrence(table: np.ndarray, label_names: Sequence[str], path: str | os.PathLike,
                      title: str = "code x phone co-occurrence") -> Path:
    """Heatmap of p(phone | code) for the used codes, written as PNG to `path` (atomically).

    table: (K, P) co-occurrence counts (codes x phones). Rows of the figure are the phones in
    the given order; columns are the used codes sorted by their dominant phone (then by how
    pure they are), so phone-like codes form a diagonal.
    """
    from matplotlib.figure import Figure

    table = np.asarray(table, dtype=np.float64)
    used = np.flatnonzero(table.sum(axis=1) > 0)
    conditional = table[used] / table[used].sum(axis=1, keepdims=True)  # (U, P) p(phone | code)
    dominant = conditional.argmax(axis=1)
    order = np.lexsort((-conditional.max(axis=1), dominant))
    image = conditional[order].T  # (P, U)
    fig = Figure(figsize=(max(6.0, min(24.0, 0.03 * len(used) + 3)), max(4.0, 0.22 * len(label_names) + 1.5)))
    ax = fig.add_subplot()
    mesh = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(np.arange(len(label_names)), labels=list(label_names), fontsize=7)
    ax.set_xlabel(f"code ({len(used)} used; sorted by dominant phone)")
    ax.set_ylabel("phone")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="p(phone | code)")
    return _save_figure(fig, path)


def plot_confusion(confusion: np.ndarray, label_names: Sequence[str], path: str | os.PathLike,
                   title: str = "linear probe confusion") -> Path:
    """Row-normalised (C, C) confusion matrix (rows true, columns predicted) as PNG at `path`."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, dtype=np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = max(5.0, 0.22 * len(label_names) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    mesh = ax.imshow(normalised, interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, labels=list(label_names), rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels=list(label_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="share of the true phone's frames")
    return _save_figure(fig, path)


def _save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path


# ----------------------------------------------------------------------------- frames of a corpus

def phone_frame_labels(phones: list[Phone], num_samples: int,
                       mapping: dict[str, str] | None = None) -> list[str | None]:
    """Normalised phone at the centre of each 64-sample frame of an utterance of `num_samples` samples.

    The alignment is normalised as a whole first (`normalize_alignment`: its phone set is
    detected, `mapping` overrides, deleted phones leave their time uncovered). Returns
    ceil(num_samples / 64) labels: the normalised name (silence is ``SILENCE``), or None
    where no phone covers the frame centre.
    """
    return frame_labels(normalize_alignment(phones, mapping), num_frames(num_samples), hop_s=HOP_LENGTH / SAMPLE_RATE)


@dataclass
class _Frames:
    """Labelled frames of a set of utterances (all arrays share their first dimension N)."""

    codes: np.ndarray  # (N,) int64
    continuous: np.ndarray  # (N, D) float32, encoder output z_e
    phones: list[str]  # (N,) normalised phone names
    speakers: list[str]  # (N,) speaker names
    num_utterances: int  # utterances encoded (with an alignment), before any selection of speakers


@torch.no_grad()
def _encode_frames(vqvae: torch.nn.Module, corpus, utterances: list, device: torch.device,
                   mapping: dict[str, str] | None, exclude_silence: bool, progress: bool, desc: str) -> _Frames:
    """Encode `utterances` and keep their phone-labelled frames (silence dropped if asked)."""
    codes, continuous, phones, speakers = [], [], [], []
    for utt in tqdm(utterances, desc=desc, unit="utt", disable=not progress):
        alignment = corpus.phones(utt)
        if not alignment:
            continue
        wav = torch.from_numpy(np.ascontiguousarray(corpus.audio(utt)))[None].to(device)
        utt_codes = vqvae.encode(wav)[0].cpu().numpy()  # (F,)
        utt_z = vqvae.encode_continuous(wav)[0].T.float().cpu().numpy()  # (F, D)
        labels = phone_frame_labels(alignment, utt.num_samples, mapping)
        keep = [i for i, label in enumerate(labels)
                if label is not None and not (exclude_silence and label == SILENCE) and i < len(utt_codes)]
        codes.append(utt_codes[keep])
        continuous.append(utt_z[keep])
        phones.extend(labels[i] for i in keep)
        speakers.extend([utt.speaker] * len(keep))
    dim = continuous[0].shape[1] if continuous else 0
    return _Frames(
        codes=np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64),
        continuous=np.concatenate(continuous) if continuous else np.zeros((0, dim), dtype=np.float32),
        phones=phones, speakers=speakers, num_utterances=len(codes),
    )


def _select(frames: _Frames, speakers: set[str]) -> _Frames:
    """The frames of `frames` spoken by one of `speakers`."""
    keep = np.array([s in speakers for s in frames.speakers], dtype=bool)
    return _Frames(frames.codes[keep], frames.continuous[keep],
                   [p for p, k in zip(frames.phones, keep) if k], [s for s, k in zip(frames.speakers, keep) if k],
                   frames.num_utterances)


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
    seed: int = 0,
    plots_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Probe the codes (and encoder outputs) of `vqvae` with the phone alignments of `corpus`.

    vqvae: a VQVAE in eval mode (``encode``, ``encode_continuous``, ``quantized``,
    ``num_codes``). corpus: a `PreparedCorpus` with alignments. The train split's labelled
    frames fit the mappings and probes; the test split's are scored. With
    `speaker_disjoint`, phone measures are fitted on the train frames of some speakers and
    scored on the test frames of the others: the speakers that have no train utterances
    (``prepare --holdout-speakers``) if there are any, else a seeded random
    `heldout_speaker_fraction` of them. The speaker probe always uses every speaker with
    train utterances, train -> test.
    `max_utterances` caps the utterances encoded per split (seeded random subset);
    `max_probe_frames` caps the training frames of each linear probe.

    Returns a JSON-ready dict: many_to_one_accuracy, majority_baseline, majority_phone,
    linear_probe_accuracy, linear_probe_accuracy_continuous, per_phone_f1 (phone -> F1 of
    the probe on z_q), per_phone_f1_continuous, pnmi, phone_purity, code_purity,
    speaker_probe_accuracy, speaker_probe_accuracy_continuous, speaker_chance, num_frames
    (scored test frames), num_frames_train, num_utterances_train, num_utterances_test,
    num_phones, phones, num_speakers, num_codes, used_codes, code_perplexity,
    exclude_silence, speaker_disjoint (+ fit_speakers, heldout_speakers), code_to_phone (the
    many-to-one mapping: a phone per code, K entries), phone_map (`phone_map` as given), plots.
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
    test = _encode_frames(vqvae, corpus, test_utts, device, phone_map, exclude_silence, progress, "probe: test")
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
                      "speaker_chance": None}
    if len(speaker_names) >= 2 and len(known.codes):
        train_s, test_s = _index(train.speakers, speaker_names), _index(known.speakers, speaker_names)
        speaker_result = {
            "speaker_probe_accuracy": linear_probe(codebook[train.codes], train_s, codebook[known.codes], test_s,
                                                   len(speaker_names), **probe_args).accuracy,
            "speaker_probe_accuracy_continuous": linear_probe(train.continuous, train_s, known.continuous, test_s,
                                                              len(speaker_names), **probe_args).accuracy,
            "speaker_chance": majority_baseline(test_s, train_s),
        }

    result.update(
        many_to_one_accuracy=many_to_one_accuracy(fit.codes, fit_y, score.codes, score_y),
        majority_baseline=majority_baseline(score_y, fit_y),
        majority_phone=vocabulary[majority],
        linear_probe_accuracy=code_probe.accuracy,
        linear_probe_accuracy_continuous=cont_probe.accuracy,
        per_phone_f1={p: float(f) for p, f in zip(vocabulary, code_probe.f1)},
        per_phone_f1_continuous={p: float(f) for p, f in zip(vocabulary, cont_probe.f1)},
        **unit_phone_measures(score.codes, score_y),
        **speaker_result,
        num_frames=int(len(score_y)),
        num_frames_train=int(len(fit_y)),
        num_probe_frames_train=code_probe.num_train,
        num_utterances_train=train.num_utterances,
        num_utterances_test=test.num_utterances,
        num_phones=len(vocabulary),
        phones=vocabulary,
        num_speakers=len(speaker_names),
        num_codes=num_codes,
        **code_usage(np.concatenate([train.codes, test.codes]), num_codes),
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
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
