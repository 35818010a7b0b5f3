"""Generation speed of the WaveNet decoder: cached (fast WaveNet) vs naive full recompute.

Builds a decoder of a preset shape with random weights and random code vectors and measures
generated samples per second, all streams together, for
- the cached generator (`speechvq.inference.generate.generate`), and
- a naive generator that recomputes the teacher-forced pass over the whole receptive field for
  every new sample (limited to --naive-samples samples per stream).

Prints name=value lines; the last is the cached generator's `samples_per_second=<x>`.

    python tools/bench_generate.py --batch 1 --threads 1 --samples 16000
    python tools/bench_generate.py --batch 8 --threads 2 --samples 16000 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from speechvq.inference.generate import generate
from speechvq.models.decoder import Decoder

# Decoder shapes: reference = the speed-comparison decoder of docs/architecture.md; paper = the paper preset.
PRESETS = {
    "tiny": dict(residual_channels=32, gate_channels=64, skip_channels=64, layers=10, stacks=1,
                 cond_channels=32, speaker_dim=32),
    "reference": dict(residual_channels=64, gate_channels=128, skip_channels=128, layers=20, stacks=2,
                      cond_channels=64, speaker_dim=64),
    "paper": dict(residual_channels=256, gate_channels=512, skip_channels=256, layers=30, stacks=3,
                  cond_channels=64, speaker_dim=64),
}


def naive_generate(decoder: Decoder, z_q: torch.Tensor, speaker: torch.Tensor, samples: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Sample by running the full teacher-forced pass over the receptive field for every sample."""
    hop = decoder.hop_length
    wav = torch.zeros(z_q.shape[0], samples, device=z_q.device)
    field = decoder.receptive_field
    for t in range(samples):
        begin = max(0, t - field) // hop * hop  # frame-aligned window covering the receptive field
        window = wav[:, begin:t + 1]
        frames = z_q[:, :, begin // hop:-(-(t + 1) // hop)]
        params = decoder(window, frames, speaker)[:, :, -1]
        wav[:, t] = decoder.output.sample(params, generator=generator)
    return wav


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1, help="streams generated together")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--samples", type=int, default=16000, help="samples per stream for the cached generator")
    parser.add_argument("--naive-samples", type=int, default=64,
                        help="samples per stream for the naive generator (0: skip)")
    parser.add_argument("--config", choices=sorted(PRESETS), default="reference", help="decoder shape")
    parser.add_argument("--output", choices=["mulaw", "mol"], default="mulaw", help="output distribution")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-cuda-graph", action="store_true", help="on cuda, run the step eagerly")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    decoder = Decoder(code_dim=64, num_speakers=8, output=args.output, **PRESETS[args.config]).to(device).eval()
    frames = -(-args.samples // decoder.hop_length)
    z_q = torch.randn(args.batch, 64, frames, device=device)
    speaker = torch.arange(args.batch, device=device) % 8
    graph = None if device.type != "cuda" else not args.no_cuda_graph

    print(f"config={args.config}")
    print(f"output={args.output}")
    print(f"device={device.type}")
    print(f"batch={args.batch}")
    print(f"threads={args.threads}")
    print(f"receptive_field={decoder.receptive_field}")
    if device.type == "cuda":
        print(f"cuda_graph={int(graph)}")
    if args.naive_samples > 0:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        with torch.no_grad():
            start = time.perf_counter()
            naive_generate(decoder, z_q, speaker, args.naive_samples, generator)
            if device.type == "cuda":
                torch.cuda.synchronize()
            naive = args.batch * args.naive_samples / (time.perf_counter() - start)
        print(f"naive_samples={args.naive_samples}")
        print(f"naive_samples_per_second={naive:.1f}")
    lengths = [args.samples] * args.batch
    start, cpu_start = time.perf_counter(), time.process_time()
    generate(decoder, z_q, speaker, lengths, seed=args.seed, progress=False, use_cuda_graph=graph)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    cached = args.batch * args.samples / seconds
    print(f"samples={args.samples}")
    print(f"seconds={seconds:.3f}")
    # CPU time of this process: on a shared machine, wall time also counts other processes' work
    print(f"cpu_seconds={cpu_seconds:.3f}")
    print(f"samples_per_cpu_second={args.batch * args.samples / cpu_seconds:.1f}")
    print(f"real_time_factor={cached / 16000:.3f}")
    if args.naive_samples > 0:
        print(f"speedup_vs_naive={cached / naive:.1f}")
    print(f"samples_per_second={cached:.1f}")


if __name__ == "__main__":
    main()
