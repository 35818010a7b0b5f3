"""`speechvq report RUN [--out DIR]`: the samples page of a recipe run."""

from __future__ import annotations

import argparse

DESCRIPTION = """Write the samples page of a recipe run (recipes/vctk/run.sh --out RUN): one static HTML file,
RUN/report/index.html, with its assets (wavs, spectrograms, plots) beside it and relative links only.
It shows, for a few test utterances, the original, the reconstruction and conversions to other
speakers (audio players and spectrograms), prior samples, probe figures, code usage, training
curves and score tables. Parts whose results are missing are left out with a note.
Prints the headline figures, then the page's path as the last line.

example: speechvq report exp/demo"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="recipe run directory (holds vqvae/, codes/, convert/, ...)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    parser.add_argument("--utterances", type=int, default=4,
                        help="source utterances shown with players (test split first; default 4)")


def run(args: argparse.Namespace) -> int:
    from speechvq.analysis.report import build_report, headline_figures
    from speechvq.errors import SpeechVQError

    if args.utterances < 1:
        raise SpeechVQError(f"--utterances must be at least 1, got {args.utterances}")
    index = build_report(args.run, args.out, max_utterances=args.utterances)
    for label, value in headline_figures(args.run):
        print(f"{label}: {value}")
    print(index)
    return 0
