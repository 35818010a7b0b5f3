"""`speechvq compress CKPT PRIOR WAV... --out DIR`: audio -> .svq files (codes entropy-coded with the prior)."""

from __future__ import annotations

import argparse

from speechvq.cli.common import add_compute_arguments, setup_compute

DESCRIPTION = """Compress speech to about 1 kbit/s: encode each input to codes (250 per second) and
range-code them with the prior's next-code probabilities. Inputs are audio files (any rate,
any channels), directories or list files; outputs are OUT/<stem>.svq. Prints each file's bits
and bits per second of audio, then the mean (total bits / total seconds).

The speaker stored in each file (the default voice of `speechvq decompress`, and the prior's
conditioning where the prior knows it) is --source-speaker, else the input's parent folder name
when the VQ-VAE knows it, else none. The entropy coding runs on the CPU in float64 whatever
--device says (see speechvq/inference/codec.py: decoding must reproduce its probabilities).

example: speechvq compress exp/vqvae exp/prior data/p225/*.wav --out compressed/"""


def add_codec_arguments(parser: argparse.ArgumentParser, inputs_help: str) -> None:
    """CKPT PRIOR INPUTS... --out DIR: what compress and decompress both take."""
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("prior", help="prior checkpoint file or run directory (speechvq train-prior; "
                                      "decompress needs the one that compressed)")
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument("--out", required=True, help="output directory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_codec_arguments(parser, "audio files, directories or list files")
    parser.add_argument("--source-speaker", default=None,
                        help="speaker of every input (default: each input's parent folder name, "
                             "if the model knows it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from speechvq.audio import SAMPLE_RATE, load_audio
    from speechvq.cli.encode import _output_names
    from speechvq.errors import AudioError
    from speechvq.fileio import write_bytes_atomic
    from speechvq.inference.codec import SUFFIX, CodingPrior
    from speechvq.inference.convert import collect_inputs, report_failures
    from speechvq.inference.pipeline import SpeechVQ

    device = setup_compute(args)
    sources = list(dict.fromkeys(collect_inputs(args.inputs)))
    names = _output_names(sources, SUFFIX)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    if args.source_speaker is not None:
        model.speaker_index(args.source_speaker)
    prior = CodingPrior.from_checkpoint(args.prior, num_codes=model.num_codes)
    failures = []
    total_bits = total_seconds = 0.0
    bar = tqdm(list(zip(sources, names)), desc="compress", unit="file", disable=args.quiet)
    for src, name in bar:
        try:
            wav = load_audio(src)
        except AudioError as exc:
            failures.append((src, str(exc)))
            continue
        folder = src.resolve().parent.name
        speaker = args.source_speaker or (folder if folder in model.speakers else None)
        data = model.compress(wav, prior, speaker=speaker)
        out = Path(args.out) / f"{name}{SUFFIX}"
        write_bytes_atomic(out, data)
        bits, seconds = 8 * len(data), wav.shape[0] / SAMPLE_RATE
        total_bits += bits
        total_seconds += seconds
        bar.write(f"{out}: {bits} bits, {bits / seconds:.1f} bits/s ({seconds:.2f} s, speaker {speaker or '-'})")
    if total_seconds:
        print(f"wrote {len(sources) - len(failures)} files to {args.out}; "
              f"mean {total_bits / total_seconds:.1f} bits/s ({total_bits:.0f} bits for {total_seconds:.2f} s)")
    return report_failures(failures, "compress")
