"""`speechvq align SRC --out DIR`: phone TextGrids from transcripts with pocketsphinx."""

from __future__ import annotations

import argparse
import os
import sys

from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.data.align import FAILURES_FILE, align_corpus

DESCRIPTION = f"""\
Force-align the transcripts of a corpus (VCTK's txt/, or <stem>.txt beside the audio in
speaker folders) with pocketsphinx's bundled en-us model and CMUdict. Writes DIR/<path of
the audio relative to SRC>.TextGrid (tier "phones": ARPAbet without stress, silence "sil"),
which `speechvq prepare SRC OUT --alignments DIR` attaches. Utterances with words missing
from the dictionary or that fail to align are listed in DIR/{FAILURES_FILE} and on stderr;
the others are aligned (exit status 0; 1 when some audio files were unreadable). A rerun
skips utterances already aligned.

example: speechvq align data/synth --out data/synth_align
"""

_SHOWN_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="corpus folder (VCTK or one folder per speaker)")
    parser.add_argument("--out", required=True, help="output folder for the TextGrids")
    parser.add_argument("--layout", choices=("auto", "vctk", "vctk092", "vctk080", "folders"), default="auto",
                        help="corpus layout (default: detected)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel alignment processes (default: up to 4)")
    add_compute_arguments(parser, device=False)  # --threads, --seed (the seed of the added noise)


def run(args: argparse.Namespace) -> int:
    setup_compute(args)
    summary = align_corpus(args.src, args.out, layout=args.layout, workers=args.workers, seed=args.seed)
    for failure in summary.failures[:_SHOWN_FAILURES]:
        print(f"speechvq align: {failure.path}: {failure.reason}", file=sys.stderr)
    if len(summary.failures) > _SHOWN_FAILURES:
        print(f"speechvq align: ... and {len(summary.failures) - _SHOWN_FAILURES} more", file=sys.stderr)
    share = (summary.aligned + summary.skipped) / summary.total
    print(f"align: {summary.aligned + summary.skipped}/{summary.total} transcribed utterances aligned "
          f"({share:.1%}; {summary.skipped} were already), {len(summary.failures)} failed "
          f"(listed in {os.path.join(args.out, FAILURES_FILE)}), {summary.untranscribed} without transcript")
    return 1 if any(f.unreadable_audio for f in summary.failures) else 0
