"""`speechvq score DIR... --references CORPUS --json F`: objective conversion metrics."""

from __future__ import annotations

import argparse
import sys

from speechvq.analysis.metrics import F0_METHODS
from speechvq.analysis.score import (
    DEFAULT_MAX_REFERENCE_UTTERANCES,
    format_summary,
    read_conversions,
    read_probe,
    score_conversions,
)
from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.data.corpus import list_corpus
from speechvq.errors import SpeechVQError
from speechvq.fileio import write_json_atomic
from speechvq.models.loading import load_vqvae

DESCRIPTION = """Objective metrics of conversions (or reconstructions) listed in DIR/conversions.jsonl:
speaker similarity (resemblyzer's pretrained speaker encoder) of each output to the target and
source speakers' centroids (their real utterances in CORPUS that are not scored), mel-cepstral
distortion with DTW against the target speaker's real recording of the same sentence (null where
CORPUS has none), and, with --checkpoint, the share of frames whose code matches the source's
(plus, with --probe and phone alignments in CORPUS, the share of aligned frames whose code maps
to the aligned phone). Voicing and pitch (WORLD F0, 10 ms frames): the share of the source's
voiced frames voiced in the output, for reconstructions the median F0 error in cents against
the source, and for conversions whether the output's mean log F0 is nearer the target
speaker's than the source speaker's; noisiness: the output's median spectral flatness over
its source's; for reconstructions, the envelope dynamics R^2 (the share of the source's log-mel
movements that the output reproduces frame by frame). Scoring the output of
`speechvq reconstruct` gives the reconstruction MCD.
With --real, the target speakers' real recordings of the same sentences are scored in place
of the outputs: the same scoring applied to real recordings, the ceiling of every metric.

example: speechvq score conv/ --references corpora/vcc2016 --checkpoint exp/vqvae --json score.json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="output directories holding conversions.jsonl")
    parser.add_argument("--references", required=True, help="the real corpus (speaker folders or VCTK)")
    parser.add_argument("--json", required=True, help="write the per-conversion, per-pair and overall figures here")
    parser.add_argument("--checkpoint", default=None, help="VQ-VAE checkpoint for code agreement (optional)")
    parser.add_argument("--probe", default=None,
                        help="`speechvq probe` JSON of the same checkpoint, for phone agreement (needs --checkpoint)")
    parser.add_argument("--layout", choices=("auto", "vctk", "folders"), default="auto",
                        help="layout of the reference corpus (default: auto)")
    parser.add_argument("--max-reference-utterances", type=int, default=DEFAULT_MAX_REFERENCE_UTTERANCES,
                        help=f"real utterances per speaker centroid (default {DEFAULT_MAX_REFERENCE_UTTERANCES})")
    parser.add_argument("--f0", choices=F0_METHODS, default="harvest",
                        help="WORLD F0 estimator for the MCD analysis (default harvest; dio is faster); "
                             "the voicing and pitch metrics always use dio")
    parser.add_argument("--real", action="store_true",
                        help="score each row's reference (the target speaker's real recording of the same "
                             "sentence) instead of its output: the same scoring applied to real recordings, "
                             "the ceiling; rows without one are skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    device = setup_compute(args)
    if args.probe and not args.checkpoint:
        raise SpeechVQError("--probe needs --checkpoint (the codes of the outputs are mapped to phones)")
    probe = read_probe(args.probe) if args.probe else None
    conversions = read_conversions(args.dirs)
    if not conversions:
        raise SpeechVQError(f"no conversions listed in {', '.join(args.dirs)}")
    references = list_corpus(args.references, layout=args.layout)
    vqvae = None
    if args.checkpoint:
        vqvae, _, _ = load_vqvae(args.checkpoint, device=device)
    result, failures = score_conversions(conversions, references, vqvae=vqvae, device=device,
                                         max_reference_utterances=args.max_reference_utterances,
                                         f0_method=args.f0, probe=probe, progress=not args.quiet, real=args.real)
    write_json_atomic(args.json, result)
    print(format_summary(result))
    if args.real and result["overall"]["count"] < len(conversions):
        print(f"--real: skipped {len(conversions) - result['overall']['count']} of {len(conversions)} rows "
              "without a real recording by the target speaker")
    print(f"wrote {args.json}")
    for path, reason in failures:
        print(f"speechvq score: failed: {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0
