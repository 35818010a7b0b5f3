"""Generation speed of the source-filter decoder: one forward pass for a whole utterance.

Builds a `SourceFilterDecoder` of the tiny_sf shape (configs/model/tiny_sf.yaml) with random
weights, random code vectors and a voiced F0 contour, and times generation of --seconds of
audio per stream (excitation + filter, no gradient); the same decoder without its envelope
filter (``envelope_filter_bins=0``) is timed beside it (``envelope_filter_time_share=``).
For comparison it also times the autoregressive tiny WaveNet's cached generator on the
same length (--ar-seconds of it, scaled).

Prints name=value lines; the last is ``realtime_factor=`` (seconds of audio generated per
second of compute, all streams together) of the source-filter decoder.

    python tools/bench_source_filter.py --threads 1 --seconds 4 --batch 1
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from speechvq.inference.generate import generate
from speechvq.models.builders import build_decoder

SAMPLE_RATE, HOP = 16000, 64


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ar-seconds", type=float, default=0.5, help="audio per stream for the AR comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs = {name: OmegaConf.load(f"configs/model/{name}.yaml") for name in ("tiny_sf", "tiny")}
    frames = int(args.seconds * SAMPLE_RATE) // HOP
    z_q = torch.randn(args.batch, 64, frames)
    speaker = torch.zeros(args.batch, dtype=torch.long)
    f0 = torch.full((args.batch, frames), 140.0)
    sf = build_decoder(configs["tiny_sf"], num_speakers=4).eval()
    with torch.inference_mode():
        seconds = _time(lambda: sf(z_q, speaker, f0), args.repeats)
    audio = args.batch * frames * HOP / SAMPLE_RATE
    print(f"source_filter_parameters={sum(p.numel() for p in sf.parameters())}")
    print(f"source_filter_seconds_per_call={seconds:.4f}")
    plain_config = OmegaConf.merge(configs["tiny_sf"], {"decoder": {"envelope_filter_bins": 0}})
    plain = build_decoder(plain_config, num_speakers=4).eval()
    with torch.inference_mode():
        plain_seconds = _time(lambda: plain(z_q, speaker, f0), args.repeats)
    print(f"without_envelope_filter_seconds_per_call={plain_seconds:.4f}")
    print(f"envelope_filter_time_share={1 - plain_seconds / seconds:.3f}")

    ar = build_decoder(configs["tiny"], num_speakers=4).eval()
    ar_frames = int(args.ar_seconds * SAMPLE_RATE) // HOP
    lengths = torch.full((args.batch,), ar_frames * HOP)
    with torch.inference_mode():
        ar_seconds = _time(lambda: generate(ar, z_q[:, :, :ar_frames], speaker, lengths, seed=0, progress=False), 1)
    ar_audio = args.batch * ar_frames * HOP / SAMPLE_RATE
    print(f"autoregressive_tiny_realtime_factor={ar_audio / ar_seconds:.3f}")
    print(f"threads={args.threads}")
    print(f"batch={args.batch}")
    print(f"realtime_factor={audio / seconds:.2f}")


if __name__ == "__main__":
    main()
