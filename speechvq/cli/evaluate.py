"""`speechvq evaluate CKPT [--prior P] --data PREPARED --json F`: held-out likelihood and bitrate."""

from __future__ import annotations

import argparse
import json

from speechvq.cli.common import add_compute_arguments, setup_compute

DESCRIPTION = """\
Held-out likelihood of the two-stage model on the test split of a prepared corpus
(teacher-forced, one utterance at a time):

  decoder_bits_per_sample   -log2 p(x | codes, speaker) per audio sample
  prior_bits_per_code       -log2 p(codes) per code under PRIOR (uniform: log2 512 = 9 bits)
  unigram_bits_per_code     entropy of the prior's training-code frequencies (a prior with
                            no context; null without --prior): a useful prior is below it
  bitrate_bits_per_second   prior_bits_per_code * 250 codes per second
  raw_bitrate_bits_per_second  log2(K) * 250 = 2250 for K = 512
  total_bits_per_sample     decoder_bits_per_sample + prior_bits_per_code / 64
                            (decoder and total are null for the source-filter decoder: no likelihood)
  f0_bits_per_second        what the F0 track that the source-filter decoder needs costs, apart
                            from the units' bits (voicing + 10-cent log-F0 steps, entropy-coded)

Averages are weighted by samples (decoder) and codes (prior). Also: num_utterances,
num_samples, num_codes, codes_per_second, prior, split, checkpoint. Utterances of speakers
the VQ-VAE does not know are skipped (with a warning). CKPT and PRIOR are checkpoint files
or run directories (best.pt, else last.pt).

Examples:
  speechvq evaluate exp/vqvae --data exp/data --json uniform.json
  speechvq evaluate exp/vqvae --prior exp/prior --data exp/data --json likelihood.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="VQ-VAE checkpoint or run directory")
    parser.add_argument("--prior", metavar="P", default=None,
                        help="prior checkpoint or run directory (default: the uniform prior, 9 bits per code)")
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared corpus (speechvq prepare)")
    parser.add_argument("--json", metavar="F", default=None, help="write the results as JSON to F (also printed)")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="held-out split (default test)")
    parser.add_argument("--max-utterances", type=int, default=None, metavar="N",
                        help="use at most the first N utterances of the split (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from speechvq.analysis.likelihood import evaluate_likelihood
    from speechvq.data.dataset import PreparedCorpus
    from speechvq.errors import CheckpointError, DataError, SpeechVQError
    from speechvq.fileio import write_json_atomic
    from speechvq.models.loading import load_prior, load_vqvae

    if args.max_utterances is not None and args.max_utterances < 1:
        raise SpeechVQError(f"--max-utterances must be at least 1, got {args.max_utterances}")
    device = setup_compute(args)
    corpus = PreparedCorpus(args.data)
    model, speakers, payload = load_vqvae(args.checkpoint, device)
    prior = prior_payload = None
    if args.prior is not None:
        prior, prior_payload = load_prior(args.prior, device)
        if prior.num_codes != model.num_codes:
            raise CheckpointError(f"{prior_payload['path']}: prior over {prior.num_codes} codes, "
                                  f"but the VQ-VAE has {model.num_codes}")
    report = evaluate_likelihood(
        model,
        speakers,
        corpus,
        prior=prior,
        prior_speakers=prior_payload["speakers"] if prior_payload else None,
        code_counts=prior_payload.get("code_counts") if prior_payload else None,
        prior_name=prior_payload["path"] if prior_payload else "uniform",
        split=args.split,
        max_utterances=args.max_utterances,
        device=device,
        progress=not args.quiet,
    )
    if report.num_utterances == 0:
        raise DataError(f"{corpus.root}: no {args.split} utterances of speakers the VQ-VAE knows")
    result = {**report.to_dict(), "split": args.split, "checkpoint": payload["path"]}
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result, indent=2))
    return 0
