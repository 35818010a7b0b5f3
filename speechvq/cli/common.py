"""Options shared by commands: compute (--threads/--seed/--device) and generation (--batch/--temperature/...)."""

from __future__ import annotations

import argparse
import os
import random
from typing import TYPE_CHECKING

import numpy as np

from speechvq.errors import SpeechVQError

if TYPE_CHECKING:  # imported lazily: commands that never run a model start faster
    import torch


def add_compute_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """Add --threads N, --seed N and (if `device`) --device cpu|cuda."""
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if device:
        parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                            help="where the model runs (default: cuda when present, else cpu)")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the WaveNet generation options of decode, convert and reconstruct:
    --batch, --temperature, --argmax, --quiet."""
    parser.add_argument("--batch", type=int, default=8, help="utterances generated together (default 8)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--argmax", action="store_true", help="take the most likely sample instead of sampling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_generation_arguments(args: argparse.Namespace) -> None:
    """Raise SpeechVQError unless --batch >= 1 and (--argmax or --temperature > 0)."""
    if args.batch < 1:
        raise SpeechVQError(f"--batch must be at least 1, got {args.batch}")
    if args.temperature <= 0 and not args.argmax:
        raise SpeechVQError(f"--temperature must be positive (or use --argmax), got {args.temperature}")


def setup_compute(args: argparse.Namespace) -> "torch.device":
    """Apply --threads and --seed; return the torch.device chosen by --device (cuda if present)."""
    import torch

    if getattr(args, "threads", None):
        if args.threads < 1:
            raise SpeechVQError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    seed = getattr(args, "seed", 0) or 0
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    requested = getattr(args, "device", None)
    if requested == "cuda" and not torch.cuda.is_available():
        raise SpeechVQError("--device cuda: no CUDA device is available")
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def add_override_arguments(parser: argparse.ArgumentParser, config_name: str) -> None:
    """Positional hydra KEY=VALUE overrides of configs/<config_name>.yaml, and --print-config."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"hydra overrides of configs/{config_name}.yaml")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")


def compose_config(config_name: str, overrides: list[str], example: str):
    """Compose configs/<config_name>.yaml with `overrides`; mistakes become one-line SpeechVQErrors.

    `example` shows the required overrides in the message (e.g. "run_dir=RUN codes=DIR").
    """
    from speechvq.config import compose

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SpeechVQError(f"expected key=value overrides, got {bad[0]!r} (e.g. {example})")
    try:
        return compose(config_name, overrides)
    except Exception as exc:  # hydra's composition errors: unknown group option, bad override syntax
        raise SpeechVQError(f"config: {str(exc).splitlines()[0]}") from None


def run_training(args: argparse.Namespace, config_name: str, example: str, train) -> int:
    """Body of `train` and `train-prior`: compose the config (or print it with --print-config),
    call `train(cfg)` and print its one summary line (rank 0 only under torchrun)."""
    from omegaconf import OmegaConf

    cfg = compose_config(config_name, args.overrides, example)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        valid = " ".join(f"{k}={v:.4g}" for k, v in result.valid.items())
        print(f"trained to step {result.step} ({result.skipped_updates} updates skipped) {valid}".rstrip())
    return 0


def refuse_stem_clash(paths: list, what: str, suffix: str) -> None:
    """One output per input is named after the input's stem: refuse inputs that share a stem
    (`what`: how the message names the inputs, `suffix`: their extension)."""
    stems = [p.stem for p in paths]
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash is not None:
        raise SpeechVQError(f"several {what} are named {clash}{suffix}; their outputs would overwrite each other")
