"""Speaker information in the codes of a trained VQ-VAE on a prepared corpus.

Encodes up to --max-utterances utterances per split (train for fitting, test for scoring) and
prints name=value lines: frame-level and utterance-level (code histogram) speaker
identification accuracy and chance (`speechvq.analysis.speaker_info`).

    python tools/speaker_leakage.py exp/vcc2016/vqvae --data exp/vcc2016/data --threads 2
"""

from __future__ import annotations

import argparse

import torch

from speechvq.analysis.speaker_info import speaker_information
from speechvq.data.dataset import PreparedCorpus
from speechvq.models.loading import load_vqvae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-utterances", type=int, default=400, help="per split (default 400)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, speakers, _ = load_vqvae(args.checkpoint)
    corpus = PreparedCorpus(args.data)
    index = {name: i for i, name in enumerate(speakers)}
    codes, labels, train = [], [], []
    for split in ("train", "test"):
        utterances = [u for u in corpus.utterances(split) if u.speaker in index]
        step = max(1, len(utterances) // args.max_utterances)
        for utt in utterances[::step][: args.max_utterances]:
            with torch.inference_mode():
                codes.append(model.encode(torch.from_numpy(corpus.audio(utt))[None])[0].numpy())
            labels.append(index[utt.speaker])
            train.append(split == "train")
    for name, value in speaker_information(codes, labels, train, model.num_codes).items():
        print(f"{name}={value:.4f}")


if __name__ == "__main__":
    main()
