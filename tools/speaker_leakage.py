"""Speaker information in the codes of a trained VQ-VAE on a prepared corpus.

Encodes up to --max-utterances utterances per split (train for fitting, test for scoring) and
prints name=value lines: frame-level and utterance-level (code histogram) speaker
identification accuracy and chance (`speechvq.analysis.speaker_info`). With --voice-shift F
the test utterances are encoded with pitch and formants scaled by F (the training lever
``model.voice_shift``; F is rounded to a multiple of 1/32), and ``codes_changed`` says what
share of their codes that changed.

    python tools/speaker_leakage.py exp/vcc2016/vqvae --data exp/vcc2016/data --threads 2 [--voice-shift 0.875]
"""

from __future__ import annotations

import argparse

import torch

from speechvq.analysis.speaker_info import speaker_information
from speechvq.data.dataset import PreparedCorpus
from speechvq.models.loading import load_vqvae
from speechvq.modules.speaker_free import SHIFT_STEPS, shift_voice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-utterances", type=int, default=400, help="per split (default 400)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--voice-shift", type=float, default=1.0,
                        help="scale the test utterances' pitch and formants by this factor (default 1: unchanged)")
    args = parser.parse_args()
    numerator = round(args.voice_shift * SHIFT_STEPS)
    if not SHIFT_STEPS // 2 <= numerator <= 2 * SHIFT_STEPS:
        parser.error(f"--voice-shift {args.voice_shift}: must be between 0.5 and 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, speakers, _ = load_vqvae(args.checkpoint)
    corpus = PreparedCorpus(args.data)
    index = {name: i for i, name in enumerate(speakers)}
    codes, labels, train, changed = [], [], [], []
    for split in ("train", "test"):
        utterances = [u for u in corpus.utterances(split) if u.speaker in index]
        step = max(1, len(utterances) // args.max_utterances)
        for utt in utterances[::step][: args.max_utterances]:
            wav = torch.from_numpy(corpus.audio(utt))[None]
            with torch.inference_mode():
                found = model.encode(wav)[0].numpy()
                if split == "test" and numerator != SHIFT_STEPS:
                    plain, found = found, model.encode(shift_voice(wav, numerator, SHIFT_STEPS))[0].numpy()
                    changed.append(float((plain != found).mean()))
            codes.append(found)
            labels.append(index[utt.speaker])
            train.append(split == "train")
    for name, value in speaker_information(codes, labels, train, model.num_codes).items():
        print(f"{name}={value:.4f}")
    if changed:
        print(f"codes_changed={sum(changed) / len(changed):.4f}")


if __name__ == "__main__":
    main()
