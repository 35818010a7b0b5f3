"""`speechvq synth OUT`: a parallel multi-voice espeak-ng corpus with phone TextGrids."""

from __future__ import annotations

import argparse
import os

from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.data.synth import MAX_VOICES, synthesize_corpus

DESCRIPTION = f"""\
Synthesise English sentences with espeak-ng voices (different variant, pitch and rate) into
OUT/<voice>/<id>.wav (16 kHz) + <id>.TextGrid (tier "phones", espeak phone names, pauses
"sil") + <id>.txt. Every voice speaks the same sentences (a parallel corpus); the same
arguments give byte-identical audio; a rerun skips finished utterances. Up to {MAX_VOICES} voices.

example: speechvq synth data/synth --voices 6 --utterances 40 --seed 0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (one sub-folder per voice)")
    parser.add_argument("--voices", type=int, default=6, help=f"number of voices, 1..{MAX_VOICES} (default 6)")
    parser.add_argument("--utterances", type=int, default=40, help="sentences per voice (default 40)")
    add_compute_arguments(parser, device=False)  # --threads, --seed (the seed chooses the sentences)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel synthesis processes (default: up to 4)")


def run(args: argparse.Namespace) -> int:
    setup_compute(args)
    result = synthesize_corpus(args.out, voices=args.voices, utterances=args.utterances, seed=args.seed,
                               workers=args.workers)
    print(f"synth: {len(result.voices)} voices x {args.utterances} utterances in {args.out} "
          f"({result.written} written, {result.skipped} already there)")
    return 0
