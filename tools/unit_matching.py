"""Does choosing the target speaker's own units make conversions sound more like the target?

An ablation of the conversion path, not a feature: each source utterance is encoded to z_e and
quantised in one of these ways before the source-filter decoder renders it as the target:

- ``base``: the nearest code (what `speechvq convert` does);
- ``priorL``: the nearest code after adding L * (typical squared distance) * -log p(code | target)
  / log K, where p is the target's code histogram over its training utterances (a code prior);
- ``knnK``: z_e replaced by the mean of its K nearest target frames (cosine, over the target's
  training utterances; the matching of kNN-VC, Baas et al. 2023), then the nearest code.

Outputs are written as `speechvq convert` writes them (OUT/<variant>/*.wav and conversions.jsonl)
for `speechvq score`. Measured on VCC 2016 in recipes/vctk/README.md ("Where the voice is lost").

    python tools/unit_matching.py exp/vcc2016/vocoder exp/vcc2016/data OUT --speakers SF1,SM1,TF1,TM1
    speechvq score OUT/knn4 --references path/to/vcc2016 --layout folders --json OUT/knn4.json --f0 dio
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from speechvq.audio import save_wav
from speechvq.data.dataset import PreparedCorpus
from speechvq.fileio import write_jsonl_atomic
from speechvq.inference.pipeline import SpeechVQ


def match_codes(z_e: torch.Tensor, codebook: torch.Tensor, variant: str, counts: torch.Tensor | None = None,
                pool: torch.Tensor | None = None) -> torch.Tensor:
    """(F, D) encoder frames -> (F,) codes by `variant` (see the module docstring).

    codebook: (K, D); counts: (K,) the target's code histogram (``priorL``); pool: (N, D) the
    target's encoder frames (``knnK``).
    """
    d2 = torch.cdist(z_e, codebook) ** 2  # (F, K)
    if variant == "base":
        return d2.argmin(1)
    if variant.startswith("prior"):
        weight = float(variant[len("prior"):])
        p = (counts + 0.5) / (counts.sum() + 0.5 * codebook.shape[0])
        scale = d2.min(1).values.mean() / math.log(codebook.shape[0])
        return (d2 - weight * scale * torch.log(p)[None]).argmin(1)
    if variant.startswith("knn"):
        k = int(variant[len("knn"):])
        similarity = F.normalize(z_e, dim=1) @ F.normalize(pool, dim=1).T  # (F, N)
        matched = pool[similarity.topk(k, dim=1).indices].mean(1)
        return torch.cdist(matched, codebook).argmin(1)
    raise ValueError(f"unknown variant {variant!r}: base, priorL or knnK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a source-filter VQ-VAE or unit vocoder")
    parser.add_argument("data", help="the prepared corpus (its test split is converted)")
    parser.add_argument("out")
    parser.add_argument("--speakers", required=True, help="comma list: every directed pair is converted")
    parser.add_argument("--per-speaker", type=int, default=5, help="test utterances per source speaker")
    parser.add_argument("--pool", type=int, default=60, help="training utterances per target speaker")
    parser.add_argument("--variants", default="base,prior1,prior3,knn4,knn8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device="cpu")
    if model.autoregressive:
        parser.error("this ablation renders with the source-filter decoder")
    corpus = PreparedCorpus(args.data)
    speakers = args.speakers.split(",")
    codebook = model.vqvae.quantizer.codebook.detach().float()

    @torch.inference_mode()
    def frames(wav: np.ndarray) -> torch.Tensor:
        z_e = model.vqvae.encode_continuous(torch.from_numpy(wav)[None])[0]
        return z_e[:, : -(-len(wav) // model.vqvae.hop_length)].T.float()  # (F, D)

    pools, counts = {}, {}
    for speaker in speakers:
        train = [u for u in corpus.utterances("train") if u.speaker == speaker][: args.pool]
        pools[speaker] = torch.cat([frames(corpus.audio(u)) for u in train])
        counts[speaker] = torch.bincount(match_codes(pools[speaker], codebook, "base"),
                                         minlength=codebook.shape[0]).float()
    test = corpus.utterances("test")
    sources = [u for s in speakers for u in [v for v in test if v.speaker == s][: args.per_speaker]]
    for variant in args.variants.split(","):
        out, rows = Path(args.out) / variant, []
        for utt in sources:
            wav = corpus.audio(utt)
            z_e, f0 = frames(wav), model.source_f0(wav)
            targets = [t for t in speakers if t != utt.speaker]
            codes = [match_codes(z_e, codebook, variant, counts[t], pools[t]).numpy() for t in targets]
            contours = [model.conversion_f0(f0, utt.speaker, t) for t in targets]
            for target, audio in zip(targets, model.decode_batch(codes, targets, seed=0, f0=contours)):
                stem = Path(utt.source).stem
                path = save_wav(out / f"{utt.speaker}_{stem}_to_{target}.wav", audio)
                rows.append({"source": str(Path(utt.source).resolve()), "source_speaker": utt.speaker,
                             "utterance": stem, "target_speaker": target,
                             "output": str(Path(path).resolve())})
        write_jsonl_atomic(out / "conversions.jsonl", rows)
        print(f"{variant}: {len(rows)} conversions in {out}")


if __name__ == "__main__":
    main()
