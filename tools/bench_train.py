"""Training throughput of a model preset: audio samples per second through forward + backward + Adam.

Builds `configs/model/<preset>.yaml` (with the EMA quantizer) for 8 speakers and times full
training steps on random audio segments (the loss and update path of `speechvq train`,
without data loading). Prints ``name=value`` lines, the headline last::

    python tools/bench_train.py --preset tiny --steps 10 --batch-size 8 --segment 4096 --threads 1
    python tools/bench_train.py --preset paper --device cuda --precision bf16 --compile
    python tools/bench_train.py --preset tiny_sf --frozen-units --segment 8192 --threads 2 \
        --override model.decoder.cond_channels=32 --override model.decoder.cond_layers=2

The source-filter presets get a voiced 150 Hz F0 contour; ``--frozen-units`` trains the decoder
alone, as a unit vocoder (``units_from=``) does; ``--override`` passes hydra overrides of the
train config, to time a variant against the preset in two runs of the same command.

samples_per_second = batch_size * segment / mean wall seconds per step (after warm-up steps);
samples_per_cpu_second uses the process's CPU time instead (useful on a loaded machine).
"""

from __future__ import annotations

import argparse
import time

import torch

from speechvq.config import compose
from speechvq.models.builders import build_vqvae
from speechvq.training.vqvae import vqvae_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model preset: tiny | reference | paper (default tiny)")
    parser.add_argument("--quantizer", default="ema", help="quantizer config: ema | vq")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=int, default=4096, help="samples per segment (multiple of 64)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--frozen-units", action="store_true", help="train the decoder only (a unit vocoder)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="hydra override of the train config (repeatable)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = compose("train", ["run_dir=unused", "data.prepared=unused", f"model={args.preset}",
                            f"quantizer={args.quantizer}", *args.override])
    device = torch.device(args.device)
    model = build_vqvae(cfg.model, num_speakers=8, frozen_units=args.frozen_units).to(device).train()
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "audio": (0.3 * torch.randn(args.batch_size, args.segment, generator=generator)).clamp(-1, 1).to(device),
        "speaker": torch.randint(8, (args.batch_size,), generator=generator).to(device),
    }
    if not model.autoregressive:
        batch["f0"] = torch.full((args.batch_size, args.segment // model.hop_length), 150.0, device=device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=args.precision == "bf16"):
            loss, _ = vqvae_loss(step_model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    cpu_seconds = (time.process_time() - cpu_start) / args.steps
    print(f"preset={args.preset}")
    print(f"parameters={sum(p.numel() for p in model.parameters())}")
    print(f"device={args.device}")
    print(f"threads={torch.get_num_threads()}")
    print(f"precision={args.precision}")
    print(f"compile={args.compile}")
    print(f"frozen_units={args.frozen_units}")
    print(f"overrides={','.join(args.override) or 'none'}")
    print(f"batch_size={args.batch_size}")
    print(f"segment_samples={args.segment}")
    print(f"seconds_per_step={seconds:.4f}")
    # process CPU time: on a machine shared with other work, wall time >> CPU time / threads
    print(f"cpu_seconds_per_step={cpu_seconds:.4f}")
    print(f"samples_per_cpu_second={args.batch_size * args.segment / cpu_seconds:.0f}")
    print(f"samples_per_second={args.batch_size * args.segment / seconds:.0f}")


if __name__ == "__main__":
    main()
