"""How much of the spectral envelope the codes of a VQ-VAE carry: an information ceiling for decoders.

A ridge regression (or, with --mlp, a two-layer perceptron) from the code vectors z_q of a few
neighbouring frames and a speaker one-hot to the log-mel spectrogram at the code rate is fitted
on training utterances of a prepared corpus and scored on its test utterances with the envelope
dynamics R^2 of `speechvq score` (`speechvq.analysis.metrics.envelope_r2`: the share of the
log-mel movements reproduced, pooled over the utterances). Compare it with the envelope R^2 of
the decoder's reconstructions: a decoder near this figure renders what the codes say.
Prints name=value lines.

    python tools/envelope_ceiling.py exp/vcc2016/vqvae --data exp/vcc2016/data --threads 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from speechvq.analysis.metrics import ENVELOPE_RANGE_DB, envelope_deviations, log_mel_db
from speechvq.data.dataset import PreparedCorpus
from speechvq.models.loading import load_vqvae


def context_features(z_q: np.ndarray, speaker: int, num_speakers: int, context: int = 2) -> np.ndarray:
    """(F, D) code vectors -> (F, (2 context + 1) D + num_speakers): each frame with its neighbours
    (edges repeated) and the speaker's one-hot."""
    frames = len(z_q)
    padded = np.pad(z_q, ((context, context), (0, 0)), mode="edge")
    stacked = np.concatenate([padded[i: i + frames] for i in range(2 * context + 1)], axis=1)
    one_hot = np.zeros((frames, num_speakers), dtype=stacked.dtype)
    one_hot[:, speaker] = 1.0
    return np.concatenate([stacked, one_hot], axis=1)


def pooled_envelope_r2(references: list[np.ndarray], estimates: list[np.ndarray],
                       range_db: float = ENVELOPE_RANGE_DB) -> float:
    """`envelope_r2` pooled over utterances: one R^2 over the `envelope_deviations` of every
    (bands, frames) pair (pairs with fewer than two loud frames left out)."""
    error = total = 0.0
    for reference, estimate in zip(references, estimates):
        deviations = envelope_deviations(reference, estimate, range_db)
        if deviations is None:
            continue
        dx, dy = deviations
        error += float(np.sum((dy - dx) ** 2))
        total += float(np.sum(dx ** 2))
    if total <= 0.0:
        raise ValueError("no reference spectrum moves: the envelope R^2 is undefined")
    return 1.0 - error / total


def fit_readout(features: np.ndarray, targets: np.ndarray, mlp: bool = False, seed: int = 0):
    """Fit the (frames, inputs) -> (frames, bands) readout: ridge (alpha 1) or a 512-512 MLP."""
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if mlp:
        model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(512, 512), max_iter=40,
                                                             early_stopping=True, random_state=seed))
    else:
        model = Ridge(alpha=1.0)
    return model.fit(features, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--train-utterances", type=int, default=40, help="per speaker (default 40)")
    parser.add_argument("--test-utterances", type=int, default=5, help="per speaker (default 5)")
    parser.add_argument("--mlp", action="store_true", help="a two-layer perceptron instead of ridge")
    parser.add_argument("--speakers", default=None, help="comma-separated subset of the speakers (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, speakers, _ = load_vqvae(args.checkpoint)
    model.eval()
    corpus = PreparedCorpus(args.data)
    chosen = None if args.speakers is None else set(args.speakers.split(","))
    if chosen is not None and not chosen <= set(speakers):
        parser.error(f"--speakers: {sorted(chosen - set(speakers))} not among the checkpoint's speakers")

    def examples(split: str, per_speaker: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        inputs, targets = [], []
        for index, name in enumerate(speakers):
            if chosen is not None and name not in chosen:
                continue
            for utt in [u for u in corpus.utterances(split) if u.speaker == name][:per_speaker]:
                wav = corpus.audio(utt)
                with torch.no_grad():
                    z_q = model.quantized(model.encode(torch.from_numpy(wav)[None]))[0].T.numpy()
                mel = log_mel_db(wav, hop_length=model.hop_length)[:, : len(z_q)]
                inputs.append(context_features(z_q, index, len(speakers))[: mel.shape[1]])
                targets.append(mel)
        return inputs, targets

    train_x, train_y = examples("train", args.train_utterances)
    test_x, test_y = examples("test", args.test_utterances)
    if not train_x or not test_x:
        parser.error(f"{args.data}: needs train and test utterances of the checkpoint's speakers")
    readout = fit_readout(np.concatenate(train_x), np.concatenate([y.T for y in train_y]), mlp=args.mlp)
    predicted = [readout.predict(x).T for x in test_x]
    print(f"readout={'mlp' if args.mlp else 'ridge'}")
    print(f"train_utterances={len(train_x)}")
    print(f"test_utterances={len(test_x)}")
    print(f"envelope_r2={pooled_envelope_r2(test_y, predicted):.4f}")


if __name__ == "__main__":
    main()
