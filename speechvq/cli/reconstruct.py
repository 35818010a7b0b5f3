"""`speechvq reconstruct CKPT WAV... --out DIR`: encode and decode in the source speaker's own voice."""

from __future__ import annotations

import argparse

from speechvq.cli.convert import add_inference_arguments, run_inference

DESCRIPTION = """Reconstruction: encode each utterance and decode it as its own speaker (the input's parent
folder name unless --source-speaker says). Outputs OUT/<speaker>_<stem>_to_<speaker>.wav and
OUT/conversions.jsonl, so `speechvq score` gives reconstruction MCD."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_inference(args, None, "reconstruct")
