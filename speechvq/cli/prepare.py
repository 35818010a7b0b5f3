"""`speechvq prepare SRC OUT`: resample a corpus into a 16 kHz int16 cache with manifest.jsonl."""

from __future__ import annotations

import argparse
import sys

from speechvq.data.prepare import prepare_corpus, read_test_ids
from speechvq.errors import SpeechVQError

DESCRIPTION = """\
Resample every utterance of the corpus SRC to 16 kHz mono int16 and store it in OUT:
one flat audio file per split (OUT/train.int16, valid.int16, test.int16), OUT/manifest.jsonl
(id, speaker, split, num_samples, offset, source, text, alignment) and OUT/rejected.tsv
(files that could not be read, with the reason; the run goes on without them).

SRC layouts: VCTK 0.92 (wav48_silence_trimmed/), VCTK 0.80 (wav48/), or one folder of
audio files per speaker (ROOT/<speaker>/*.wav|flac|ogg, with <stem>.txt transcripts).
Phone alignments (.TextGrid, .phn, .lab) with the audio's stem are attached, from beside
the audio or from --alignments DIR (same relative paths).

Splits go by utterance key (the id without the speaker), so a sentence is in the same split
for every speaker. Interrupted runs resume where they stopped when run again with the same
arguments.

Exit status: 0, or 1 when this run rejected some audio files (listed on stderr).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="corpus root")
    parser.add_argument("out", metavar="OUT", help="output folder (created; resumed if it holds an earlier run)")
    parser.add_argument("--layout", choices=("auto", "vctk", "folders"), default="auto",
                        help="corpus layout (default: detect)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--mic", choices=("mic1", "mic2"), default="mic1", help="VCTK 0.92 microphone (default mic1)")
    parser.add_argument("--alignments", metavar="DIR", default=None,
                        help="folder of phone alignments with the same relative paths as the audio")
    parser.add_argument("--valid-fraction", type=float, default=0.05, metavar="F",
                        help="share of utterance keys for validation (default 0.05)")
    parser.add_argument("--test-fraction", type=float, default=None, metavar="F",
                        help="share of utterance keys for test (default 0.05; not with --test-ids)")
    parser.add_argument("--test-ids", metavar="FILE", default=None,
                        help="file of utterance keys (or ids), one per line, that form the test split")
    parser.add_argument("--holdout-speakers", metavar="A,B", default="",
                        help="comma-separated speakers whose utterances all go to the test split")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.test_ids is not None and args.test_fraction is not None:
        raise SpeechVQError("--test-ids and --test-fraction exclude each other")
    test_ids = read_test_ids(args.test_ids) if args.test_ids is not None else None
    holdout = [s.strip() for s in args.holdout_speakers.split(",") if s.strip()]
    summary = prepare_corpus(
        args.src, args.out, layout=args.layout, workers=args.workers, mic=args.mic,
        alignments_dir=args.alignments, valid_fraction=args.valid_fraction,
        test_fraction=0.05 if args.test_fraction is None else args.test_fraction,
        test_ids=test_ids, holdout_speakers=holdout, progress=not args.quiet,
    )
    print(summary.format())
    for path, reason in summary.rejected_this_run:
        print(f"speechvq prepare: rejected {path}: {reason}", file=sys.stderr)
    return 1 if summary.new_rejected else 0
