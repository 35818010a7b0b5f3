"""`speechvq train key=value ...`: train the VQ-VAE with hydra overrides of configs/train.yaml."""

from __future__ import annotations

import argparse

from speechvq.cli.common import add_override_arguments, run_training
from speechvq.config import config_dir


def _groups() -> str:
    """One line per config group: its options (configs/<group>/*.yaml)."""
    root = config_dir()
    lines = []
    for group in sorted(p for p in root.iterdir() if p.is_dir()):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        if options and group.name != "prior":
            lines.append(f"  {group.name}={'|'.join(options)}")
    return "\n".join(lines)


def _description() -> str:
    try:
        groups = _groups()
    except FileNotFoundError:
        groups = "  (configs not found)"
    return f"""\
Train encoder, quantizer and WaveNet decoder (stage 1) on a prepared corpus.

Arguments are hydra overrides of configs/train.yaml: key=value, group=option,
+key=value to add a key. Required: run_dir=RUN and data.prepared=DIR (from `speechvq prepare`).
An existing RUN is resumed from RUN/checkpoints/last.pt (trainer.resume=false starts over).
Writes RUN/config.yaml, RUN/checkpoints/{{step_NNNNNNN,last,best}}.pt and RUN/tb/ (TensorBoard).

Config groups:
{groups}

Examples:
  speechvq train run_dir=exp/tiny data.prepared=exp/data model=tiny trainer.max_steps=200
  speechvq train run_dir=exp/demo data.prepared=exp/data experiment=cpu_demo trainer.threads=2
  speechvq train run_dir=exp/paper data.prepared=exp/vctk experiment=vctk_paper
  torchrun --nproc_per_node 4 -m speechvq train run_dir=... data.prepared=... model=paper   (DDP)
  speechvq train --print-config run_dir=x data.prepared=y model=reference
"""


DESCRIPTION = _description()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_override_arguments(parser, "train")


def run(args: argparse.Namespace) -> int:
    from speechvq.training.vqvae import train

    return run_training(args, "train", "run_dir=RUN data.prepared=DIR", train)
