"""`speechvq train-prior key=value ...`: fit the code prior with hydra overrides of configs/train_prior.yaml."""

from __future__ import annotations

import argparse

from speechvq.cli.common import add_override_arguments, run_training
from speechvq.config import config_dir


def _options(group: str) -> str:
    try:
        return "|".join(sorted(f.stem for f in (config_dir() / group).glob("*.yaml"))) or "(none)"
    except FileNotFoundError:
        return "(configs not found)"


DESCRIPTION = f"""\
Train the autoregressive prior over codes (stage 2; the VQ-VAE stays frozen).

Arguments are hydra overrides of configs/train_prior.yaml: key=value, group=option,
+key=value to add a key. Required: run_dir=RUN and codes=DIR (from
`speechvq encode CKPT --data PREPARED --out DIR`). An existing RUN is resumed from
RUN/checkpoints/last.pt (trainer.resume=false starts over). Writes RUN/config.yaml,
RUN/checkpoints/{{step_NNNNNNN,last,best}}.pt (kind "prior"; best = lowest valid bits per code)
and RUN/tb/ (TensorBoard). Training items are random crops of data.crop_codes codes.

Config groups:
  prior={_options("prior")}
  trainer={_options("trainer")}

Examples:
  speechvq train-prior run_dir=exp/prior codes=exp/codes prior=tiny trainer.max_steps=200
  speechvq train-prior run_dir=exp/prior codes=exp/codes trainer=cpu_demo data.crop_codes=256
  speechvq train-prior run_dir=exp/prior_base codes=exp/codes prior=base trainer.max_steps=50000
  speechvq train-prior --print-config run_dir=x codes=y
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_override_arguments(parser, "train_prior")


def run(args: argparse.Namespace) -> int:
    from speechvq.training.train_prior import train_prior

    return run_training(args, "train_prior", "run_dir=RUN codes=DIR", train_prior)
