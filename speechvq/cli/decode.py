"""`speechvq decode CKPT CODES... --speaker S --out DIR`: codes -> audio in a speaker's voice."""

from __future__ import annotations

import argparse

from speechvq.cli.common import (
    add_compute_arguments,
    add_generation_arguments,
    check_generation_arguments,
    refuse_stem_clash,
    setup_compute,
)

DESCRIPTION = """Decode .npy code files (from `speechvq encode`) with a speaker's identity.
Outputs OUT/<stem>_to_<speaker>.wav (16 kHz, 16-bit). The source-filter decoder takes its F0
contour from its own prediction from the codes and the speaker."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("codes", nargs="+", help=".npy code files")
    parser.add_argument("--speaker", required=True, help="speaker whose voice to decode with")
    parser.add_argument("--out", required=True, help="output directory")
    add_generation_arguments(parser)
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechvq.audio import save_wav
    from speechvq.data.codes import load_codes
    from speechvq.inference.pipeline import SpeechVQ

    check_generation_arguments(args)
    paths = [Path(p) for p in args.codes]
    refuse_stem_clash(paths, "code files", ".npy")
    device = setup_compute(args)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    model.speaker_index(args.speaker)
    print(f"decoder: {model.decoder_name}")
    codes = [load_codes(p, model.num_codes) for p in paths]
    out = Path(args.out)
    for start in range(0, len(paths), args.batch):
        chunk = slice(start, start + args.batch)
        wavs = model.decode_batch(codes[chunk], [args.speaker] * len(codes[chunk]), temperature=args.temperature,
                                  argmax=args.argmax, seed=args.seed + start, progress=not args.quiet)
        for path, wav in zip(paths[chunk], wavs):
            save_wav(out / f"{path.stem}_to_{args.speaker}.wav", wav)
    print(f"wrote {len(paths)} files to {out}")
    return 0
