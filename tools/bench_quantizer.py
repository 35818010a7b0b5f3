"""Benchmark: speechvq's EMA quantizer against vector-quantize-pytorch 1.32.0 on the same workload.

Workload (both quantizers, one process, alternating so that machine noise hits both):
32 utterance segments x 250 frames x 64 dimensions, K = 512 codes, EMA decay 0.99,
commitment weight 0.25, training mode (EMA updates on), forward and backward of
``(quantized * upstream).sum() + loss``, CPU, `--threads` intra-op threads (1 by default).
Same features on both sides: plain straight-through gradient (their rotation trick off),
no k-means initialisation, no dead-code replacement. Each side gets its native layout:
ours (B, D, T), theirs (B, T, D).

Prints ``name=value`` lines (milliseconds per iteration, medians over `--repeats` timed
blocks), the last one ``speedup_vs_vector_quantize_pytorch=<theirs / ours>``.

    python tools/bench_quantizer.py [--threads 1] [--repeats 7] [--iters 10] [--warmup 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version

import torch

from speechvq.quantization.vq import EMAVectorQuantizer

try:
    from vector_quantize_pytorch import VectorQuantize
except ImportError:  # the pinned dev dependency
    raise SystemExit("bench_quantizer.py needs vector-quantize-pytorch==1.32.0: pip install -e '.[dev]'") from None

BATCH, FRAMES, DIM, CODES = 32, 250, 64, 512
DECAY, COMMITMENT = 0.99, 0.25


def _ours() -> Callable[[], None]:
    """One training iteration of speechvq's EMAVectorQuantizer on (B, D, T) input."""
    quantizer = EMAVectorQuantizer(CODES, DIM, beta=COMMITMENT, decay=DECAY, restart_after_steps=0).train()
    z_e = torch.randn(BATCH, DIM, FRAMES, requires_grad=True)
    upstream = torch.randn(BATCH, DIM, FRAMES)

    def step() -> None:
        result = quantizer(z_e)
        ((result.quantized * upstream).sum() + result.loss).backward()
        z_e.grad = None

    return step


def _theirs() -> Callable[[], None]:
    """One training iteration of vector_quantize_pytorch.VectorQuantize on (B, T, D) input."""
    quantizer = VectorQuantize(
        dim=DIM,
        codebook_size=CODES,
        decay=DECAY,
        commitment_weight=COMMITMENT,
        kmeans_init=False,
        threshold_ema_dead_code=0,
        rotation_trick=False,
    ).train()
    z_e = torch.randn(BATCH, FRAMES, DIM, requires_grad=True)
    upstream = torch.randn(BATCH, FRAMES, DIM)

    def step() -> None:
        quantized, _, loss = quantizer(z_e)
        ((quantized * upstream).sum() + loss).backward()
        z_e.grad = None

    return step


def _time_block(step: Callable[[], None], iters: int) -> float:
    """Milliseconds per iteration of `iters` consecutive calls."""
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) * 1000.0 / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per quantizer; the median is reported")
    parser.add_argument("--iters", type=int, default=10, help="iterations per timed block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before timing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs and codebooks")
    args = parser.parse_args()
    if min(args.threads, args.repeats, args.iters) < 1 or args.warmup < 0:
        parser.error("--threads, --repeats and --iters must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    steps = {"speechvq_ema": _ours(), "vector_quantize_pytorch": _theirs()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].append(_time_block(step, args.iters))
    ours = statistics.median(times["speechvq_ema"])
    theirs = statistics.median(times["vector_quantize_pytorch"])
    print(f"torch_version={torch.__version__}")
    print(f"vector_quantize_pytorch_version={version('vector-quantize-pytorch')}")
    print(f"threads={args.threads}")
    print(f"workload={BATCH}x{FRAMES}x{DIM},K={CODES},decay={DECAY},commitment={COMMITMENT}")
    print(f"speechvq_ema_ms_per_iter={ours:.3f}")
    print(f"vector_quantize_pytorch_ms_per_iter={theirs:.3f}")
    print(f"speedup_vs_vector_quantize_pytorch={theirs / ours:.2f}")


if __name__ == "__main__":
    main()
