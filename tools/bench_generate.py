"""Generation speed of the WaveNet decoder: cached (fast WaveNet) vs naive full recompute.

Builds a decoder of a preset shape with random weights and random code vectors and measures
generated samples per second, all streams together, for
- the cached generator (`speechvq.inference.generate.generate`), and
- a naive generator that recomputes the teacher-forced pass over the whole receptive field for
  every new sample (limited to --naive-samples samples per stream).

Prints name=value lines; the last is the cached generator's `samples_per_second=<x>`.

    python tools/bench_generate.py --batch 1 --threads 1 --samples 16000
    python tools/bench_generate.py --batch 8 --threads 2 --samples 16000 --device cuda
    python tools/bench_generate.py --config reference,paper --output mulaw,mol --batch 1,16,256 \
        --samples 1600 --device cuda --cuda-graph both     # one line per combination
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


def _list(text: str, kind=str, choices=None) -> list:
    values = [kind(v) for v in text.split(",") if v.strip()]
    if not values or (choices is not None and any(v not in choices for v in values)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {choices or kind.__name__}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1", help="streams generated together; a comma list runs each (1,16,256)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--samples", type=int, default=16000, help="samples per stream for the cached generator")
    parser.add_argument("--naive-samples", type=int, default=64,
                        help="samples per stream for the naive generator (0: skip; single runs only)")
    parser.add_argument("--config", default="reference",
                        help=f"decoder shape ({', '.join(sorted(PRESETS))}); a comma list runs each")
    parser.add_argument("--output", default="mulaw", help="output distribution (mulaw, mol); a comma list runs each")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-cuda-graph", action="store_true", help="on cuda, run the step eagerly")
    parser.add_argument("--cuda-graph", choices=("on", "off", "both"), default=None,
                        help="on cuda: with the CUDA graph, eagerly, or both (default on; --no-cuda-graph: off)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    batches = _list(args.batch, int)
    configs = _list(args.config, str, sorted(PRESETS))
    outputs = _list(args.output, str, ["mulaw", "mol"])
    device = torch.device(args.device)
    mode = args.cuda_graph or ("off" if args.no_cuda_graph else "on")
    graphs = [None] if device.type != "cuda" else {"on": [True], "off": [False], "both": [True, False]}[mode]
    torch.set_num_threads(args.threads)
    runs = [(c, o, b, g) for c in configs for o in outputs for b in batches for g in graphs]
    if len(runs) == 1:
        single(args, device, *runs[0])
        return
    # Several runs: one line each, `<config>_<output>_b<batch>[_graph|_eager]_samples_per_second=<x>`.
    print(f"device={device.type}")
    print(f"samples={args.samples}")
    for config, output, batch, graph in runs:
        decoder, z_q, speaker = build(args, device, config, output, batch)
        rate = cached_rate(args, decoder, z_q, speaker, graph)
        tag = "" if graph is None else ("_graph" if graph else "_eager")
        print(f"{config}_{output}_b{batch}{tag}_samples_per_second={rate:.1f}", flush=True)


def build(args, device: torch.device, config: str, output: str, batch: int):
    """A random-weight decoder of preset `config` and random codes for `batch` streams."""
    torch.manual_seed(args.seed)
    decoder = Decoder(code_dim=64, num_speakers=8, output=output, **PRESETS[config]).to(device).eval()
    frames = -(-args.samples // decoder.hop_length)
    z_q = torch.randn(batch, 64, frames, device=device)
    speaker = torch.arange(batch, device=device) % 8
    return decoder, z_q, speaker


def cached_rate(args, decoder: Decoder, z_q: torch.Tensor, speaker: torch.Tensor, graph: bool | None) -> float:
    """Samples per second (all streams) of `generate`."""
    batch = z_q.shape[0]
    start = time.perf_counter()
    generate(decoder, z_q, speaker, [args.samples] * batch, seed=args.seed, progress=False, use_cuda_graph=graph)
    if z_q.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * args.samples / (time.perf_counter() - start)


def single(args, device: torch.device, config: str, output: str, batch: int, graph: bool | None) -> None:
    decoder, z_q, speaker = build(args, device, config, output, batch)
    print(f"config={config}")
    print(f"output={output}")
    print(f"device={device.type}")
    print(f"batch={batch}")
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
            naive = batch * args.naive_samples / (time.perf_counter() - start)
        print(f"naive_samples={args.naive_samples}")
        print(f"naive_samples_per_second={naive:.1f}")
    lengths = [args.samples] * batch
    start, cpu_start = time.perf_counter(), time.process_time()
    generate(decoder, z_q, speaker, lengths, seed=args.seed, progress=False, use_cuda_graph=graph)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    cached = batch * args.samples / seconds
    print(f"samples={args.samples}")
    print(f"seconds={seconds:.3f}")
    # CPU time of this process: on a shared machine, wall time also counts other processes' work
    print(f"cpu_seconds={cpu_seconds:.3f}")
    print(f"samples_per_cpu_second={batch * args.samples / cpu_seconds:.1f}")
    print(f"real_time_factor={cached / 16000:.3f}")
    if args.naive_samples > 0:
        print(f"speedup_vs_naive={cached / naive:.1f}")
    print(f"samples_per_second={cached:.1f}")


if __name__ == "__main__":
    main()
