"""`speechvq sample CKPT PRIOR --speaker S --seconds X --out WAV`: babble from the code prior."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.errors import CheckpointError, SpeechVQError

DESCRIPTION = """\
Draw code sequences from a trained prior (`speechvq train-prior`) and decode them to speech
with the VQ-VAE's WaveNet decoder in a chosen speaker's voice: new speech-like audio with no
input. 250 codes per second; output 16 kHz 16-bit wav. With --num N > 1 the files are
WAV's stem + _0, _1, ... (e.g. babble_0.wav, babble_1.wav).

Examples:
  speechvq sample exp/vqvae exp/prior --speaker p225 --seconds 4 --out babble.wav
  speechvq sample exp/vqvae exp/prior --speaker p225 --seconds 4 --num 4 --temperature 0.9 --top-k 50 --out babble.wav
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("prior", help="prior checkpoint file or run directory")
    parser.add_argument("--speaker", required=True, help="speaker whose voice to decode with (a VQ-VAE speaker)")
    parser.add_argument("--seconds", type=float, required=True, help="length of each sample in seconds")
    parser.add_argument("--out", required=True, help="output wav path")
    parser.add_argument("--num", type=int, default=1, help="number of samples drawn together (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="prior sampling temperature (default 1.0; 0 = most likely code)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample each code among the k most likely (default: all)")
    parser.add_argument("--decoder-temperature", type=float, default=1.0,
                        help="WaveNet sampling temperature (default 1.0; 0 = most likely sample)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def output_paths(out: Path, num: int) -> list[Path]:
    """`out` itself for one sample, else <stem>_<i><suffix> beside it."""
    if num == 1:
        return [out]
    suffix = out.suffix or ".wav"
    return [out.with_name(f"{out.stem}_{i}{suffix}") for i in range(num)]


def codes_for_seconds(seconds: float) -> int:
    """Codes (250 per second) covering `seconds` of audio: ceil(seconds * 250), immune to float noise
    (8.06 s is 2015 codes, although 8.06 * 250 evaluates to 2015.0000000000002)."""
    from speechvq.audio import CODES_PER_SECOND

    return math.ceil(round(seconds * CODES_PER_SECOND, 6))


def run(args: argparse.Namespace) -> int:
    import torch

    from speechvq.audio import CODES_PER_SECOND, save_wav
    from speechvq.inference.pipeline import SpeechVQ
    from speechvq.models.loading import load_prior

    if args.num < 1:
        raise SpeechVQError(f"--num must be at least 1, got {args.num}")
    if not args.seconds > 0:
        raise SpeechVQError(f"--seconds must be positive, got {args.seconds}")
    if args.temperature < 0 or args.decoder_temperature < 0:
        raise SpeechVQError("--temperature and --decoder-temperature must be >= 0")
    if args.top_k is not None and args.top_k < 1:
        raise SpeechVQError(f"--top-k must be at least 1, got {args.top_k}")
    device = setup_compute(args)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    print(f"decoder: {model.decoder_name}")
    model.speaker_index(args.speaker)  # unknown speaker -> error listing the known ones
    prior, payload = load_prior(args.prior, device)
    if prior.num_codes != model.num_codes:
        raise CheckpointError(f"{payload['path']}: prior over {prior.num_codes} codes, "
                              f"but the VQ-VAE has {model.num_codes}")
    num_codes = codes_for_seconds(args.seconds)
    if num_codes > prior.max_len:
        raise SpeechVQError(f"--seconds {args.seconds}: {num_codes} codes exceed the prior's max_len "
                            f"({prior.max_len} codes = {prior.max_len / CODES_PER_SECOND:.1f} s)")
    speaker = None
    if prior.num_speakers > 0:
        prior_speakers = payload["speakers"]
        if args.speaker not in prior_speakers:
            print(f"speechvq sample: warning: the prior was not trained on {args.speaker!r}; "
                  "sampling its codes without a speaker", file=sys.stderr)
        row = prior_speakers.index(args.speaker) if args.speaker in prior_speakers else -1
        speaker = torch.full((args.num,), row, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    codes = prior.sample(args.num, num_codes, speaker, temperature=args.temperature, top_k=args.top_k,
                         generator=generator).cpu().numpy()
    wavs = model.decode_batch(list(codes), [args.speaker] * args.num, temperature=args.decoder_temperature,
                              argmax=args.decoder_temperature == 0, seed=args.seed, progress=not args.quiet)
    for path, wav in zip(output_paths(Path(args.out), args.num), wavs):
        save_wav(path, wav)
        print(path)
    return 0
