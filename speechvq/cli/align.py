"""`speechvq align SRC --out DIR`: phone TextGrids from transcripts with pocketsphinx."""

from __future__ import annotations

import argparse
import os
import sys

from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.data.align import FAILURES_FILE, align_corpus, boundary_report, compare_corpus
from speechvq.fileio import write_json_atomic

BOUNDARY_ERRORS_FILE = "boundary_errors.json"

DESCRIPTION = f"""\
Force-align the transcripts of a corpus (VCTK's txt/, or <stem>.txt beside the audio in
speaker folders) with pocketsphinx's bundled en-us model and CMUdict. Writes DIR/<path of
the audio relative to SRC>.TextGrid (tier "phones": ARPAbet without stress, silence "sil"),
which `speechvq prepare SRC OUT --alignments DIR` attaches. Utterances with words missing
from the dictionary or that fail to align are listed in DIR/{FAILURES_FILE} and on stderr;
the others are aligned (exit status 0; 1 when some audio files were unreadable). A rerun
skips utterances already aligned.

--compare-to REF scores the TextGrids against reference alignments at the same relative
paths under REF (e.g. a `speechvq synth` corpus, whose TextGrids hold espeak-ng's exact
timings): boundary errors (mean absolute, mean and median signed, per phone class) and the
share within 10, 20 and 50 ms, printed and written to DIR/{BOUNDARY_ERRORS_FILE}.

example: speechvq align data/synth --out data/synth_align --compare-to data/synth
"""

_SHOWN_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="corpus folder (VCTK or one folder per speaker)")
    parser.add_argument("--out", required=True, help="output folder for the TextGrids")
    parser.add_argument("--layout", choices=("auto", "vctk", "vctk092", "vctk080", "folders"), default="auto",
                        help="corpus layout (default: detected)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel alignment processes (default: up to 4)")
    parser.add_argument("--compare-to", default=None, metavar="REF",
                        help="score the TextGrids against the reference alignments at the same relative "
                             "paths under REF (e.g. the synth corpus itself)")
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
    if args.compare_to is not None:
        report = boundary_report(compare_corpus(args.out, args.compare_to))
        path = os.path.join(args.out, BOUNDARY_ERRORS_FILE)
        write_json_atomic(path, report)
        print(format_boundary_report(report))
        print(f"wrote {path}")
    return 1 if any(f.unreadable_audio for f in summary.failures) else 0


def format_boundary_report(report: dict) -> str:
    """The headline lines of a `boundary_report`: errors in ms, shares in percent."""
    def ms(value, sign: str = "+") -> str:
        return "-" if value is None else f"{1000 * value:{sign}.1f} ms"

    def share(value) -> str:
        return "-" if value is None else f"{value:.1%}"

    lines = [f"boundaries: {report['num_boundaries']} matched in {report['num_alignments']} alignments; "
             f"mean absolute error {ms(report['mean_abs_error_s'], '')}, signed mean "
             f"{ms(report['mean_signed_error_s'])}, median {ms(report['median_signed_error_s'])} "
             "(positive: later than the reference)",
             "within 10 / 20 / 50 ms: " + " / ".join(share(report[f"share_within_{n}_ms"]) for n in (10, 20, 50))]
    lines += [f"  {name}: {c['num_boundaries']} boundaries, signed mean {ms(c['mean_signed_error_s'])}, "
              f"median {ms(c['median_signed_error_s'])}" for name, c in report["by_class"].items()]
    return "\n".join(lines)
