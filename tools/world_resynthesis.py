"""The ceiling of a vocoder: WORLD analysis-resynthesis of real recordings, laid out for `speechvq score`.

Each input (an audio file whose parent folder names its speaker) is analysed with pyworld (dio +
stonemask F0, cheaptrick envelope, d4c aperiodicity, 5 ms frames) and resynthesised from its own
parameters into OUT/<speaker>_<stem>_to_<speaker>.wav, listed in OUT/conversions.jsonl as a
reconstruction; `speechvq score OUT ...` then gives the figures of a vocoder that had the true
envelope and F0 (envelope dynamics R^2 about 0.94, MCD about 2.4 dB on VCC 2016).

    python tools/world_resynthesis.py LIST_OR_FILES... --out exp/world
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from speechvq.audio import SAMPLE_RATE, load_audio, save_wav
from speechvq.fileio import write_jsonl_atomic

FRAME_PERIOD_MS = 5.0


def resynthesize(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n,) float waveform -> (about n,) float32 WORLD resynthesis from its own F0, envelope and aperiodicity."""
    import pyworld

    x = np.asarray(wav, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    return pyworld.synthesize(f0, envelope, aperiodicity, sample_rate, FRAME_PERIOD_MS).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="audio files, or .list files of audio paths")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    paths = []
    for item in args.inputs:
        if item.endswith(".list"):
            paths += [line.strip() for line in Path(item).read_text().splitlines() if line.strip()]
        else:
            paths.append(item)
    out = Path(args.out)
    rows = []
    for path in map(Path, paths):
        speaker = path.parent.name
        output = out / f"{speaker}_{path.stem}_to_{speaker}.wav"
        save_wav(output, resynthesize(load_audio(path)))
        rows.append({"source": str(path), "source_speaker": speaker, "utterance": path.stem,
                     "target_speaker": speaker, "output": str(output)})
    write_jsonl_atomic(out / "conversions.jsonl", rows)
    print(f"wrote {len(rows)} files to {out}")


if __name__ == "__main__":
    main()
