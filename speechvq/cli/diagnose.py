"""`speechvq diagnose CKPT --data PREPARED --json F`: codebook usage and the posterior-collapse check."""

from __future__ import annotations

import argparse
import json

from speechvq.cli.common import add_compute_arguments, setup_compute

DESCRIPTION = """\
Codebook usage (perplexity, used and dead codes) and the posterior-collapse check of a
trained VQ-VAE on held-out utterances of a prepared corpus: the decoder's NLL of each
utterance with its own codes vs with the codes of another utterance of the same speaker
(both cropped to their common length), in bits per sample, and the gap between them.
A decoder that ignores its codes shows no gap.

CKPT is a checkpoint file or a run directory (its best.pt, else last.pt).
JSON keys: perplexity, used_codes, dead_codes, nll_true_bits_per_sample,
nll_other_bits_per_sample, collapse_gap_bits_per_sample, num_utterances, num_samples,
num_codes, split, checkpoint.

Example:
  speechvq diagnose exp/demo/vqvae --data exp/demo/data --json exp/demo/diagnose.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="VQ-VAE checkpoint or run directory")
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared corpus (speechvq prepare)")
    parser.add_argument("--json", metavar="F", default=None, help="write the results as JSON to F (also printed)")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="held-out split (default test)")
    parser.add_argument("--max-utterances", type=int, default=None, metavar="N",
                        help="use at most N utterances (default: all)")
    parser.add_argument("--max-seconds", type=float, default=4.0, metavar="S",
                        help="crop each compared pair to at most S seconds (default 4; 0: no crop)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from speechvq.analysis.diagnose import diagnose
    from speechvq.data.dataset import PreparedCorpus
    from speechvq.errors import SpeechVQError
    from speechvq.fileio import write_json_atomic
    from speechvq.models.loading import load_vqvae

    if args.max_utterances is not None and args.max_utterances < 2:
        raise SpeechVQError(f"--max-utterances must be at least 2, got {args.max_utterances}")
    device = setup_compute(args)
    corpus = PreparedCorpus(args.data)
    model, speakers, payload = load_vqvae(args.checkpoint, device)
    result = diagnose(model, speakers, corpus, split=args.split, max_utterances=args.max_utterances,
                      max_seconds=args.max_seconds or None, device=device)
    result["checkpoint"] = payload["path"]
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result, indent=2))
    return 0
