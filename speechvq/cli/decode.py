"""`speechvq decode CKPT CODES... --speaker S --out DIR`: codes -> audio in a speaker's voice."""

from __future__ import annotations

import argparse

from speechvq.cli.common import add_compute_arguments, setup_compute

DESCRIPTION = """Decode .npy code files (from `speechvq encode`) with a speaker's identity.
Outputs OUT/<stem>_to_<speaker>.wav (16 kHz, 16-bit)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("codes", nargs="+", help=".npy code files")
    parser.add_argument("--speaker", required=True, help="speaker whose voice to decode with")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--batch", type=int, default=8, help="utterances generated together (default 8)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--argmax", action="store_true", help="take the most likely sample instead of sampling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechvq.audio import save_wav
    from speechvq.data.codes import load_codes
    from speechvq.inference.pipeline import SpeechVQ

    device = setup_compute(args)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    model.speaker_index(args.speaker)
    paths = [Path(p) for p in args.codes]
    codes = [load_codes(p, model.num_codes) for p in paths]
    out = Path(args.out)
    for start in range(0, len(paths), max(1, args.batch)):
        chunk = slice(start, start + max(1, args.batch))
        wavs = model.decode_batch(codes[chunk], [args.speaker] * len(codes[chunk]), temperature=args.temperature,
                                  argmax=args.argmax, seed=args.seed + start, progress=not args.quiet)
        for path, wav in zip(paths[chunk], wavs):
            save_wav(out / f"{path.stem}_to_{args.speaker}.wav", wav)
    print(f"wrote {len(paths)} files to {out}")
    return 0
