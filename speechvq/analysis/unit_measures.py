"""Counting measures of discrete units against frame labels: pure functions of integer arrays.

Units are any per-frame integer ids (VQ-VAE codes, k-means clusters); labels are per-frame
class ids (phones, speakers). All arrays are (N,) over the same N frames unless said otherwise.

* many-to-one accuracy (van den Oord et al. 2017): each unit is mapped to the label it
  co-occurs with most often in the training frames; accuracy on the test frames, against
  the majority baseline (always the most frequent training label) on the same frames;
* PNMI, phone purity and code (cluster) purity (Hsu et al. 2021, HuBERT) from the joint
  distribution p(label, unit): PNMI = I(label; unit) / H(label), phone purity =
  E_unit[max_label p(label | unit)], code purity = E_label[max_unit p(unit | label)]. These
  are plug-in estimates, biased upwards when there are few frames per used unit.

Code usage (used codes, perplexity) is `speechvq.quantization.usage.codebook_usage`.
"""

from __future__ import annotations

import numpy as np


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
