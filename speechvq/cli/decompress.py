"""`speechvq decompress CKPT PRIOR FILE.svq... --out DIR [--speaker S]`: .svq files -> audio."""

from __future__ import annotations

import argparse

from speechvq.cli.common import (
    add_compute_arguments,
    add_generation_arguments,
    check_generation_arguments,
    refuse_stem_clash,
    setup_compute,
)
from speechvq.cli.compress import add_codec_arguments

DESCRIPTION = """Decompress .svq files (from `speechvq compress`): range-decode the exact codes with the
prior, then generate 16 kHz speech of the original length in the stored speaker's voice, or in
--speaker's. Inputs are .svq files, directories of them or list files; outputs are
OUT/<stem>.wav. The
source-filter decoder takes its F0 contour from its own prediction from the codes and the
speaker, as `speechvq decode` does. A file made with other VQ-VAE units or another prior, or a
truncated or corrupt one, is skipped and listed (exit status 1).

example: speechvq decompress exp/vqvae exp/prior compressed/ --out decoded/"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, ".svq files, directories or list files")
    parser.add_argument("--speaker", default=None,
                        help="voice to decode with (default: the speaker stored in each file)")
    add_generation_arguments(parser)
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from speechvq.audio import save_wav
    from speechvq.errors import SpeechVQError
    from speechvq.inference.codec import SUFFIX, CodingPrior
    from speechvq.inference.convert import collect_inputs, report_failures
    from speechvq.inference.pipeline import SpeechVQ

    check_generation_arguments(args)
    paths = list(dict.fromkeys(collect_inputs(args.inputs, (SUFFIX,))))
    refuse_stem_clash(paths, "inputs", SUFFIX)
    device = setup_compute(args)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    if args.speaker is not None:
        model.speaker_index(args.speaker)
    prior = CodingPrior.from_checkpoint(args.prior, num_codes=model.num_codes)
    print(f"decoder: {model.decoder_name}")
    failures, decoded = [], []
    for path in tqdm(paths, desc="decompress: codes", unit="file", disable=args.quiet):
        try:
            data = path.read_bytes()
        except OSError as exc:
            failures.append((path, f"{path}: cannot read ({exc.strerror or exc})"))
            continue
        try:
            decoded.append((path, *model.read_compressed(data, prior, args.speaker, name=str(path))))
        except SpeechVQError as exc:
            failures.append((path, str(exc)))
    out = Path(args.out)
    for start in range(0, len(decoded), args.batch):
        chunk = decoded[start : start + args.batch]
        wavs = model.decode_batch([codes for _, codes, _, _ in chunk], [voice for _, _, voice, _ in chunk],
                                  temperature=args.temperature, argmax=args.argmax, seed=args.seed + start,
                                  progress=not args.quiet)
        for (path, _, _, num_samples), wav in zip(chunk, wavs):
            save_wav(out / f"{path.stem}.wav", wav[:num_samples])
    print(f"wrote {len(decoded)} files to {out}")
    return report_failures(failures, "decompress")
