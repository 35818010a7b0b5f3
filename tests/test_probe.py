"""Phone probes: counting measures with known answers, frame labels, linear probes, plots, run_probe end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_raw_textgrid

from speechvq.analysis.linear_probe import linear_probe
from speechvq.analysis.probe import phone_frame_labels, run_probe, split_speakers
from speechvq.analysis.probe_plots import plot_confusion, plot_cooccurrence
from speechvq.analysis.unit_measures import (
    code_to_label_map,
    contingency_table,
    majority_baseline,
    many_to_one_accuracy,
    pnmi,
    unit_phone_measures,
)
from speechvq.cli import main
from speechvq.cli.probe import format_result
from speechvq.data.alignments import Phone
from speechvq.data.dataset import PreparedCorpus
from speechvq.data.phones import SILENCE
from speechvq.data.prepare import prepare_corpus
from speechvq.quantization.usage import usage_of_codes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def skewed_labels(n: int, num_labels: int, seed: int) -> np.ndarray:
    """(n,) labels with a Zipf-like distribution (label 0 most frequent)."""
    p = 1.0 / np.arange(1, num_labels + 1)
    return np.random.default_rng(seed).choice(num_labels, size=n, p=p / p.sum())


# ----------------------------------------------------------------------------- counting measures

def test_codes_equal_to_phone_ids_are_perfect():
    train, test = skewed_labels(3000, 12, seed=0), skewed_labels(2000, 12, seed=1)
    measures = unit_phone_measures(test, test)
    assert measures["pnmi"] == pytest.approx(1.0)
    assert measures["phone_purity"] == pytest.approx(1.0)
    assert measures["code_purity"] == pytest.approx(1.0)
    assert many_to_one_accuracy(train, train, test, test) == 1.0
    assert majority_baseline(test, train) < 0.5


def test_a_relabelling_of_the_phones_is_still_perfect():
    phones = skewed_labels(2000, 8, seed=2)
    codes = (phones * 37 + 5) % 101  # a one-to-one code per phone, different ids
    assert pnmi(codes, phones) == pytest.approx(1.0)
    assert many_to_one_accuracy(codes, phones, codes, phones) == 1.0


def test_random_codes_carry_no_phone_information():
    train_phones, test_phones = skewed_labels(40000, 10, seed=3), skewed_labels(20000, 10, seed=4)
    rng = np.random.default_rng(5)
    train_codes, test_codes = rng.integers(0, 64, 40000), rng.integers(0, 64, 20000)
    assert pnmi(test_codes, test_phones) < 0.03
    accuracy = many_to_one_accuracy(train_codes, train_phones, test_codes, test_phones)
    assert accuracy == pytest.approx(majority_baseline(test_phones, train_phones), abs=0.02)


def test_majority_baseline_uses_the_training_majority_on_the_test_frames():
    train = np.array([2, 2, 2, 1, 0])
    test = np.array([1, 1, 1, 2, 0, 0])
    assert majority_baseline(test, train) == pytest.approx(1 / 6)  # guess 2, right once
    assert majority_baseline(test) == pytest.approx(3 / 6)  # the test frames' own majority


def test_split_phones_keep_phone_purity_but_lose_code_purity():
    phones = np.repeat([0, 1], 1000)
    codes = np.tile([0, 1], 1000) + 2 * phones  # each phone spread evenly over two codes
    measures = unit_phone_measures(codes, phones)
    assert measures["phone_purity"] == pytest.approx(1.0)
    assert measures["code_purity"] == pytest.approx(0.5)
    assert measures["pnmi"] == pytest.approx(1.0)  # the codes still determine the phone
    merged = unit_phone_measures(np.zeros_like(phones), phones)  # one code for both phones
    assert merged["code_purity"] == pytest.approx(1.0)
    assert merged["phone_purity"] == pytest.approx(0.5)
    assert merged["pnmi"] == pytest.approx(0.0)


def test_contingency_and_mapping_and_usage():
    codes = np.array([0, 0, 0, 3, 3])
    labels = np.array([1, 1, 0, 2, 2])
    table = contingency_table(codes, labels, num_codes=5, num_labels=3)
    assert table.shape == (5, 3) and table.sum() == 5 and table[0, 1] == 2
    mapping = code_to_label_map(codes, labels, num_codes=5, num_labels=3)
    assert mapping[0] == 1 and mapping[3] == 2
    assert mapping[1] == mapping[2] == mapping[4] == 1  # unseen codes -> the overall majority label
    usage = usage_of_codes(codes, num_codes=5).as_dict()
    assert usage["used_codes"] == 2 and usage["dead_codes"] == 3
    assert 1.0 < usage["perplexity"] < 2.0


# ----------------------------------------------------------------------------- frame labels

def test_frame_label_is_the_normalised_phone_at_the_frame_centre():
    # 4 ms frames, centres at 2, 6, 10, 14 ms. The boundary at 6 ms is the second frame's centre.
    phones = [Phone("", 0.0, 0.003), Phone("AH0", 0.003, 0.006), Phone("B", 0.006, 0.0125)]
    labels = phone_frame_labels(phones, num_samples=4 * 64)
    assert labels == [SILENCE, "b", "b", None]
    mapped = phone_frame_labels(phones, num_samples=64, mapping={"": "pau"})
    assert mapped == ["pau"]


# ----------------------------------------------------------------------------- linear probes and plots

def test_linear_probe_beats_chance_on_separable_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(6, 8))

    def draw(n):
        y = rng.integers(0, 6, n)
        return centres[y] + rng.normal(0, 1, (n, 8)), y

    (train_x, train_y), (test_x, test_y) = draw(1500), draw(600)
    result = linear_probe(train_x, train_y, test_x, test_y, num_classes=7, max_train_frames=1000)
    assert result.num_train == 1000
    assert result.accuracy > 0.9 > majority_baseline(test_y, train_y) + 0.5
    assert result.f1.shape == (7,) and result.f1[6] == 0.0  # class 6 never occurs
    assert np.all(result.f1[:6] > 0.8)
    assert result.confusion.shape == (7, 7) and result.confusion.sum() == 600
    assert np.trace(result.confusion) == pytest.approx(result.accuracy * 600)
    noise = linear_probe(rng.normal(size=(1500, 8)), train_y, rng.normal(size=(600, 8)), test_y, num_classes=7)
    assert noise.accuracy < result.accuracy - 0.5


def test_plots_are_written_as_png(tmp_path):
    phones = skewed_labels(500, 5, seed=6)
    codes = phones * 3 + np.random.default_rng(7).integers(0, 3, 500)
    table = contingency_table(codes, phones, 20, 5)
    names = ["aa", "b", "k", "s", SILENCE]
    heatmap = plot_cooccurrence(table, names, tmp_path / "plots" / "cooc.png")
    confusion = plot_confusion(np.eye(5, dtype=int) * 10 + 1, names, tmp_path / "plots" / "confusion.png")
    for path in (heatmap, confusion):
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["confusion.png", "cooc.png"]


def test_split_speakers_holds_out_a_third():
    fit, held_out = split_speakers(["a", "b", "c", "d", "e", "f"], seed=1)
    assert len(held_out) == 2 and not set(fit) & set(held_out)
    assert sorted(fit + held_out) == ["a", "b", "c", "d", "e", "f"]
    assert split_speakers(["a", "b"])[1] and split_speakers(["a", "b"])[0]


# ----------------------------------------------------------------------------- run_probe on a prepared corpus

PHONE_LEVELS = {"sil": 0.0, "AH0": 0.1, "B": 0.2, "K": 0.3, "IY1": 0.4}  # waveform level of each phone
FRAMES_PER_PHONE = 10
SPEAKER_NOISE = {"s1": 0.004, "s2": 0.012, "s3": 0.024}


class LevelQuantizer(torch.nn.Module):
    """Stand-in quantizer of `LevelVQVAE`: a frame's code is its mean level (z_e[:, 0]) x 20."""

    def __init__(self, num_codes: int):
        super().__init__()
        self.num_codes = num_codes

    def encode(self, z_e):
        return (z_e[:, 0] * 20).round().long().clamp(0, self.num_codes - 1)


class LevelVQVAE(torch.nn.Module):
    """Stand-in VQ-VAE: a frame's code is its mean level x 20; z_e = (mean, std) of the frame."""

    num_codes = 16
    hop_length = 64
    sample_rate = 16000

    def __init__(self):
        super().__init__()
        # A trainable codebook, as in the paper's quantizer: the probe must not need gradients.
        self.codebook = torch.nn.Parameter(torch.randn(self.num_codes, 4, generator=torch.Generator().manual_seed(0)))
        self.quantizer = LevelQuantizer(self.num_codes)
        self.encoder_runs = 0

    def _frames(self, wav: torch.Tensor) -> torch.Tensor:
        frames = -(-wav.shape[1] // 64)
        return torch.nn.functional.pad(wav, (0, frames * 64 - wav.shape[1])).reshape(wav.shape[0], frames, 64)

    def encode(self, wav):
        return self.quantizer.encode(self.encode_continuous(wav))

    def encode_continuous(self, wav):
        self.encoder_runs += 1
        frames = self._frames(wav)
        return torch.stack([frames.mean(-1), frames.std(-1)], dim=1)  # (B, 2, F)

    def quantized(self, codes):
        return self.codebook[codes].permute(0, 2, 1)  # (B, 4, F)


# Five phones per sentence. The test sentences u4 and u5 make one ABX minimal pair, b-AH0-K / b-IY1-K.
SENTENCES = {"u0": "AH0 B K IY1 B", "u1": "K IY1 AH0 B K", "u2": "IY1 K B AH0 IY1", "u3": "B AH0 K IY1 AH0",
             "u4": "B AH0 K B IY1", "u5": "K B IY1 K AH0", "u6": "AH0 K IY1 B B", "u7": "IY1 B K AH0 K"}


def write_aligned_corpus(root, utterances: dict[str, list[str]]) -> PreparedCorpus:
    """Prepare speaker -> sentence keys (`SENTENCES`; u4, u5 are test) under `root`; each sentence
    is silence, 5 phones, silence, each phone lasting 10 frames at its own level."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for speaker, keys in utterances.items():
        for key in keys:
            phones = ["sil", *SENTENCES[key].split(), "sil"]
            samples = FRAMES_PER_PHONE * 64
            wav = np.concatenate([np.full(samples, PHONE_LEVELS[p]) for p in phones])
            wav = (wav + rng.normal(0, SPEAKER_NOISE[speaker], wav.shape)).astype(np.float32)
            (root / "src" / speaker).mkdir(parents=True, exist_ok=True)
            sf.write(root / "src" / speaker / f"{key}.wav", wav, 16000, subtype="FLOAT")
            step = samples / 16000
            intervals = [(i * step, (i + 1) * step, "" if p == "sil" else p) for i, p in enumerate(phones)]
            write_raw_textgrid(root / "src" / speaker / f"{key}.TextGrid", {"phones": intervals}, len(phones) * step)
    prepare_corpus(root / "src", root / "prepared", workers=1, valid_fraction=0.0, test_ids=["u4", "u5"],
                   progress=False)
    return PreparedCorpus(root / "prepared")


@pytest.fixture(scope="module")
def aligned_corpus(tmp_path_factory):
    """3 speakers x 6 sentences (u4, u5 are test)."""
    keys = [f"u{i}" for i in range(6)]
    return write_aligned_corpus(tmp_path_factory.mktemp("probe"), {speaker: keys for speaker in SPEAKER_NOISE})


REQUIRED_KEYS = {
    "many_to_one_accuracy", "majority_baseline", "linear_probe_accuracy", "linear_probe_accuracy_continuous",
    "per_phone_f1", "pnmi", "phone_purity", "code_purity", "speaker_probe_accuracy",
    "speaker_probe_accuracy_continuous", "speaker_chance", "speaker_chance_uniform", "num_frames", "num_phones",
    "used_codes", "utterance_speaker_accuracy", "utterance_speaker_chance", "baselines", "abx",
}


def test_run_probe_recovers_phone_determined_codes(aligned_corpus, tmp_path):
    vqvae = LevelVQVAE()
    result = run_probe(vqvae, aligned_corpus, plots_dir=tmp_path / "plots", progress=False)
    # the encoder runs once per encoded utterance (codes and z_e from the same pass)
    assert vqvae.encoder_runs == result["num_utterances_train"] + result["num_utterances_test"]
    assert REQUIRED_KEYS <= set(result)
    json.dumps(result, allow_nan=False)
    assert result["num_phones"] == 5 and SILENCE in result["phones"]
    assert set(result["per_phone_f1"]) == {"ah", "b", "k", "iy", SILENCE}
    assert result["num_frames"] == 3 * 2 * 7 * FRAMES_PER_PHONE  # speakers x test sentences x phones x frames
    assert result["num_utterances_train"] == 12 and result["num_utterances_test"] == 6
    assert result["many_to_one_accuracy"] == 1.0
    assert result["pnmi"] == pytest.approx(1.0)
    assert result["phone_purity"] == pytest.approx(1.0) and result["code_purity"] == pytest.approx(1.0)
    assert result["majority_baseline"] < 0.6
    assert result["linear_probe_accuracy"] > 0.95
    assert result["used_codes"] == 5
    assert len(result["code_to_phone"]) == LevelVQVAE.num_codes
    assert [result["code_to_phone"][round(level * 20)] for level in PHONE_LEVELS.values()] == \
        [SILENCE, "ah", "b", "k", "iy"]
    # The codes hold no speaker information, the encoder output's frame std does.
    assert result["speaker_chance"] == pytest.approx(1 / 3)
    assert result["speaker_probe_accuracy_continuous"] > 0.9
    assert result["speaker_probe_accuracy"] < 0.6
    for path in result["plots"].values():
        assert open(path, "rb").read(8) == PNG_MAGIC


def test_run_probe_scores_kmeans_baselines_abx_and_utterance_speakers(aligned_corpus):
    result = run_probe(LevelVQVAE(), aligned_corpus, progress=False)
    baselines = result["baselines"]
    # K = 512 and the model's K = 16, for both feature kinds.
    assert set(baselines) == {"logmel_kmeans", "mfcc_kmeans", "logmel_kmeans_k16", "mfcc_kmeans_k16",
                              "codes_over_best"}
    assert baselines["logmel_kmeans_k16"]["num_clusters"] == 16
    for name in ("logmel_kmeans", "mfcc_kmeans"):
        assert baselines[name]["num_clusters"] == 512
        assert result["majority_baseline"] < baselines[name]["many_to_one_accuracy"] < 1.0
        assert 0.0 < baselines[name]["pnmi"] < 1.0
        # The speakers' noise levels show in the spectra, not in the codes.
        assert baselines[name]["utterance_speaker_accuracy"] == 1.0
    best = max(b["many_to_one_accuracy"] for n, b in baselines.items() if n != "codes_over_best")
    assert baselines["codes_over_best"]["many_to_one_accuracy"] == pytest.approx(1.0 / best)
    assert result["utterance_speaker_chance"] == pytest.approx(1 / 3)
    assert result["utterance_speaker_accuracy"] < 1 / 3  # parallel sentences: another speaker's is closer
    # ABX: b-ah-k / b-iy-k in every speaker's test sentences, each once: across-speaker triplets only.
    abx = result["abx"]
    assert (abx["num_items"], abx["num_contexts"]) == (6, 1)
    assert abx["within_speaker"] == {"z_e": None, "z_q": None, "codes": None, "logmel": None}
    assert abx["across_speaker"]["codes"] == 0.0 and abx["across_speaker"]["z_q"] == 0.0
    assert set(abx["across_speaker"]) == {"z_e", "z_q", "codes", "logmel"}
    lines = format_result(result).splitlines()
    assert "baseline logmel_kmeans_k16 (K=16): many-to-one" in "\n".join(lines)
    assert any(line.startswith("ABX across speaker (6 items): z_e ") and "codes 0.0%" in line for line in lines)
    assert "(chance 33.3%, majority 33.3%)" in lines[4]


def test_speaker_chance_when_the_train_majority_speaker_is_not_in_test(tmp_path):
    # s1 has the most train utterances but none in test: always guessing s1 is never right.
    corpus = write_aligned_corpus(tmp_path, {"s1": ["u0", "u1", "u2", "u3", "u6", "u7"],
                                             "s2": ["u0", "u1", "u4", "u5"], "s3": ["u2", "u3", "u4", "u5"]})
    result = run_probe(LevelVQVAE(), corpus, progress=False)
    assert result["speaker_chance"] == 0.0
    assert result["speaker_chance_uniform"] == pytest.approx(1 / 3)
    assert result["num_speakers"] == 3


def test_run_probe_excludes_silence_and_holds_out_speakers(aligned_corpus):
    result = run_probe(LevelVQVAE(), aligned_corpus, exclude_silence=True, speaker_disjoint=True,
                       progress=False, seed=3)
    assert SILENCE not in result["phones"] and result["num_phones"] == 4
    assert result["num_frames"] == len(result["heldout_speakers"]) * 2 * 5 * FRAMES_PER_PHONE
    assert not set(result["fit_speakers"]) & set(result["heldout_speakers"])
    assert result["many_to_one_accuracy"] == 1.0


def test_probe_cli_refuses_a_corpus_without_alignments(tmp_path, write_folder_corpus, capsys):
    write_folder_corpus(tmp_path / "src")
    prepare_corpus(tmp_path / "src", tmp_path / "prepared", workers=1, progress=False)
    code = main(["probe", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "prepared"),
                 "--json", str(tmp_path / "probe.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no phone alignments" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "probe.json").exists()
