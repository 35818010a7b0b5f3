"""`speechvq convert CKPT WAV... --speaker S --out DIR`: voice conversion."""

from __future__ import annotations

import argparse

from speechvq.cli.common import (
    add_compute_arguments,
    add_generation_arguments,
    check_generation_arguments,
    setup_compute,
)
from speechvq.f0 import F0_MAPPINGS

DESCRIPTION = """Voice conversion: encode each source utterance to codes, decode them with the target
speaker's identity. Inputs are audio files (any rate, any channels), directories, or list files.
Outputs: OUT/<source_speaker>_<stem>_to_<target>.wav and OUT/conversions.jsonl.
With the source-filter decoder the source's F0 contour is mapped onto the target speaker's
log-F0 statistics (stored in the checkpoint; --f0-mapping says how); --pitch-shift overrides
that with a fixed shift.

example: speechvq convert exp/demo/vqvae data/SF1/100050.wav --speaker TM1 --out conv/"""


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by convert and reconstruct."""
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("inputs", nargs="+", help="audio files, directories or list files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--source-speaker", default=None,
                        help="speaker of every input (default: each input's parent folder name)")
    add_generation_arguments(parser)
    add_compute_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inference_arguments(parser)
    parser.add_argument("--speaker", required=True,
                        help="target speaker; several as A,B to convert every input to each")
    parser.add_argument("--pitch-shift", type=float, default=None, metavar="SEMITONES",
                        help="source-filter decoder: shift the source's F0 by this many semitones instead of "
                             "mapping it onto the target speaker's range")
    parser.add_argument("--f0-mapping", choices=F0_MAPPINGS, default="utterance",
                        help="source-filter decoder: standardise the source's log F0 by the utterance's own mean "
                             "(default: every output centred on the target's mean) or by its speaker's training "
                             "statistics (keeps the utterance's register relative to its speaker)")


def run_inference(args: argparse.Namespace, targets: list[str] | None, command: str) -> int:
    """Shared body of convert (targets given) and reconstruct (targets None)."""
    from speechvq.inference.convert import collect_inputs, plan_jobs, report_failures, run_jobs
    from speechvq.inference.pipeline import SpeechVQ

    check_generation_arguments(args)
    device = setup_compute(args)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    print(f"decoder: {model.decoder_name}")
    jobs = plan_jobs(collect_inputs(args.inputs), targets, args.source_speaker)
    rows, failures = run_jobs(model, jobs, args.out, batch_size=args.batch, temperature=args.temperature,
                              argmax=args.argmax, seed=args.seed, progress=not args.quiet,
                              pitch_shift=getattr(args, "pitch_shift", None),
                              f0_mapping=getattr(args, "f0_mapping", "utterance"))
    print(f"wrote {len(rows)} files to {args.out} (conversions.jsonl)")
    return report_failures(failures, command)


def run(args: argparse.Namespace) -> int:
    targets = [t for t in args.speaker.split(",") if t]
    return run_inference(args, targets, "convert")
