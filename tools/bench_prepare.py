#!/usr/bin/env python
"""Benchmark `speechvq prepare`: how many seconds of audio it prepares per wall-clock second.

    python tools/bench_prepare.py --corpus path/to/vcc2016 --workers 2

Prepares the corpus into a temporary folder (deleted afterwards) and prints name=value
lines, the headline last: realtime_factor=<audio seconds prepared per wall second>.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from speechvq.data.prepare import prepare_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="corpus root (any layout `speechvq prepare` reads)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--layout", default="auto", help="corpus layout (default: detect)")
    args = parser.parse_args(argv)
    if not Path(args.corpus).is_dir():
        print(f"bench_prepare: no such corpus directory: {args.corpus}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench_prepare.") as tmp:
        start = time.perf_counter()
        summary = prepare_corpus(args.corpus, Path(tmp) / "prepared", layout=args.layout,
                                 workers=args.workers, progress=False)
        wall = time.perf_counter() - start
    audio_seconds = sum(summary.seconds.values())
    print(f"corpus={args.corpus}")
    print(f"workers={args.workers}")
    print(f"utterances={sum(summary.utterances.values())}")
    print(f"speakers={summary.speakers}")
    print(f"rejected={summary.rejected}")
    print(f"audio_seconds={audio_seconds:.1f}")
    print(f"wall_seconds={wall:.2f}")
    print(f"realtime_factor={audio_seconds / wall:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
