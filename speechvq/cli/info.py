"""`speechvq info CKPT`: speakers, step, model summary and code usage of a checkpoint."""

from __future__ import annotations

import argparse
import json

import torch

from speechvq.f0 import F0Stats
from speechvq.quantization.usage import codebook_usage

DESCRIPTION = """\
Show what a checkpoint holds: kind (vqvae or prior), training step, skipped updates,
speakers, a summary of the model config, the number of parameters, the last validation
figures and, when stored, code usage (for a VQ-VAE: how often each code was chosen during
training; for a prior: the code frequencies it was trained on). For a VQ-VAE also its decoder
(wavenet or source_filter), the VQ-VAE whose frozen codes it was trained on (units_from, for
a unit vocoder) and each speaker's median F0 in hertz.

CKPT is a checkpoint file or a run directory (its best.pt, else last.pt).

Examples:
  speechvq info exp/demo/vqvae
  speechvq info exp/demo/vqvae/checkpoints/last.pt --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or run directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _usage(counts) -> dict | None:
    if counts is None:
        return None
    usage = codebook_usage(counts).as_dict()
    if usage["used_codes"] == 0:
        usage["perplexity"] = None  # no code counted yet
    return {"num_codes": int(torch.as_tensor(counts).numel()), **usage}


def summarize_checkpoint(payload: dict) -> dict:
    """The facts `speechvq info` prints, as a JSON-ready dict."""
    config = payload.get("config") or {}
    state = payload.get("model") or {}
    kind = payload["kind"]
    section = config.get("model" if kind == "vqvae" else "prior", {})
    if kind == "vqvae":
        counts = state.get("quantizer.code_usage")
    else:
        counts = payload.get("code_counts")
    return {
        "checkpoint": payload.get("path"),
        "kind": kind,
        "format_version": payload.get("format_version"),
        "step": payload.get("step"),
        "skipped_updates": payload.get("skipped_updates"),
        "speakers": list(payload.get("speakers") or []),
        "state_numbers": int(sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))),
        "model": section,
        "valid": payload.get("valid") or {},
        "code_usage": _usage(counts),
        "decoder": (section.get("decoder") or {}).get("type", "wavenet") if kind == "vqvae" else None,
        "units_from": config.get("units_from"),
        "f0_median_hz": {name: round(F0Stats.from_list(v).median_hz, 1)
                         for name, v in (payload.get("f0_stats") or {}).items()},
    }


def _flatten(prefix: str, value, lines: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, lines)
    else:
        lines.append(f"  {prefix} = {value}")


def run(args: argparse.Namespace) -> int:
    from speechvq.checkpoint import load_checkpoint

    payload = load_checkpoint(args.checkpoint)  # either kind; summarize_checkpoint reads which
    info = summarize_checkpoint(payload)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"checkpoint: {info['checkpoint']}")
    print(f"kind: {info['kind']} (format {info['format_version']})")
    print(f"step: {info['step']}  skipped updates: {info['skipped_updates']}")
    print(f"model state: {info['state_numbers']:,} numbers (parameters and buffers)")
    speakers = info["speakers"]
    if speakers:
        print(f"speakers ({len(speakers)}): {', '.join(speakers)}")
    if info["valid"]:
        print("validation: " + " ".join(f"{k}={v:.4g}" for k, v in info["valid"].items()))
    usage = info["code_usage"]
    if usage:
        ppl = "n/a" if usage["perplexity"] is None else f"{usage['perplexity']:.1f}"
        print(f"code usage: {usage['used_codes']} of {usage['num_codes']} codes used, perplexity {ppl}")
    lines: list[str] = []
    _flatten("", info["model"], lines)
    print(f"{'model' if info['kind'] == 'vqvae' else 'prior'} config:")
    print("\n".join(lines))
    return 0
