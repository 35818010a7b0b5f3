"""Speed of the .svq entropy coding: the prior stepped in float64 plus the range coder, no audio.

For each prior preset (configs/prior/*.yaml; random weights, K = 512, 8 speakers) and N
random code sequences of a given length (250 codes per second), measures in seconds per
second of audio (below 1: faster than real time), on one thread as the codec runs:

- ``compress`` / ``decompress``: `speechvq.inference.codec.compress_codes` / `decompress_codes`
  (the round trip is checked to be exact);
- baselines on the same sequences: ``float64_step`` (the same stepping without the coder),
  ``float32_step`` (stepping the float32 prior: what float64 costs) and ``teacher_forced``
  (one float32 forward pass over the whole sequence: fast, but not reproducible by a decoder,
  which has to step).

Prints name=value lines, prefixed with the preset.

    python tools/bench_codec.py [--presets tiny,base] [--sequences 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from speechvq.config import compose
from speechvq.inference.codec import CodingPrior, compress_codes, decompress_codes
from speechvq.models.builders import build_prior
from speechvq.models.prior import Prior

CODES_PER_SECOND = 250
UNITS = "00" * 8


def step_all(model: Prior, codes: np.ndarray) -> None:
    """Feed `codes` one at a time through `model.step_logits`, with a softmax at each step (no coder)."""
    stream = model.step_logits(len(codes))
    logits = next(stream)
    for t, code in enumerate(codes):
        torch.softmax(logits, dim=-1)
        if t + 1 < len(codes):
            logits = stream.send(int(code))


def timed(fn, sequences: list[np.ndarray]) -> tuple[float, list]:
    """(total seconds, results) of fn(sequence) over the sequences."""
    start = time.perf_counter()
    results = [fn(seq) for seq in sequences]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,base", help="comma-separated prior presets (configs/prior)")
    parser.add_argument("--sequences", type=int, default=3, help="code sequences per preset")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio seconds per sequence (250 codes each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    length = max(1, round(args.seconds * CODES_PER_SECOND))
    sequences = [rng.integers(0, 512, length) for _ in range(args.sequences)]
    audio_seconds = args.sequences * length / CODES_PER_SECOND
    print(f"sequences={args.sequences}")
    print(f"codes_per_sequence={length}")
    print("threads=1")
    for preset in args.presets.split(","):
        cfg = compose("train_prior", ["run_dir=r", "codes=c", f"prior={preset}", "prior.zero_init_output=false"])
        torch.manual_seed(args.seed)
        prior = build_prior(cfg.prior, num_codes=512, num_speakers=8).eval()
        coding = CodingPrior(prior)
        rate = {}
        rate["compress"], files = timed(lambda c: compress_codes(coding, c, units_hash=UNITS), sequences)
        rate["decompress"], decoded = timed(lambda d: decompress_codes(coding, d, units_hash=UNITS)[0], files)
        if not all(np.array_equal(a, b) for a, b in zip(decoded, sequences)):
            raise SystemExit(f"{preset}: the round trip is not exact")
        rate["float64_step"], _ = timed(lambda c: step_all(coding.model, c), sequences)
        rate["float32_step"], _ = timed(lambda c: step_all(prior, c), sequences)
        with torch.no_grad():
            rate["teacher_forced"], _ = timed(lambda c: prior(torch.as_tensor(c)[None]), sequences)
        print(f"{preset}_parameters={sum(p.numel() for p in prior.parameters())}")
        print(f"{preset}_bits_per_second_random_weights={8 * sum(map(len, files)) / audio_seconds:.1f}")
        for name, seconds in rate.items():
            print(f"{preset}_{name}_seconds_per_audio_second={seconds / audio_seconds:.4f}")
        print(f"{preset}_float64_over_float32_step={rate['float64_step'] / rate['float32_step']:.2f}")


if __name__ == "__main__":
    main()
