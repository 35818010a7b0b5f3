"""Checkpoint -> model in eval mode (inverse of the trainer's save, `speechvq.training.trainer`).

A VQ-VAE checkpoint (kind ``"vqvae"``) is self-contained: the resolved training config
(``config["model"]`` rebuilds the architecture), the speaker names (embedding row order) and
the weights. Loading refuses, with a one-line `CheckpointError` naming the file, any
checkpoint whose weights do not fit the architecture its config describes.
"""

from __future__ import annotations

import os

import torch

from speechvq.checkpoint import load_checkpoint
from speechvq.errors import CheckpointError, SpeechVQError
from speechvq.models.builders import build_prior, build_vqvae
from speechvq.models.prior import Prior
from speechvq.models.vqvae import VQVAE


def load_state_strict(module: torch.nn.Module, state: dict, path: str) -> None:
    """`module.load_state_dict(state)`, or a one-line CheckpointError naming `path` and the first mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(f"{path}: weights do not match the model in its config ({'; '.join(problems)})")
    module.load_state_dict(state)


def load_vqvae(
    ckpt_or_run_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[VQVAE, list[str], dict]:
    """Load a VQ-VAE checkpoint (or a run directory: its best.pt, else last.pt).

    Returns:
        (model on `device` in eval mode, speaker names indexed like the speaker embedding,
        the checkpoint payload: ``config``, ``step``, ``path``, ... — optimizer state included).
    """
    payload = load_checkpoint(ckpt_or_run_dir, kind="vqvae", map_location="cpu")
    path = payload["path"]
    config, speakers, state = payload.get("config"), payload.get("speakers"), payload.get("model")
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path}: checkpoint has no model config")
    if not isinstance(speakers, list) or not speakers:
        raise CheckpointError(f"{path}: checkpoint has no speaker list")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint has no model weights")
    try:
        model = build_vqvae(config["model"], num_speakers=len(speakers))
    except SpeechVQError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model ({exc})") from None
    load_state_strict(model, state, path)
    return model.to(device).eval(), [str(s) for s in speakers], payload


def load_prior(ckpt_or_run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Prior, dict]:
    """Load a prior checkpoint (or a prior run directory: its best.pt, else last.pt).

    Returns:
        (prior on `device` in eval mode, the checkpoint payload: ``speakers`` (embedding row
        order), ``num_codes``, ``code_counts`` ((K,) int64 training-code frequencies),
        ``config``, ``step``, ``path``, ...).
    """
    payload = load_checkpoint(ckpt_or_run_dir, kind="prior", map_location="cpu")
    path = payload["path"]
    config, state = payload.get("config"), payload.get("model")
    if not isinstance(config, dict) or "prior" not in config:
        raise CheckpointError(f"{path}: checkpoint has no prior config")
    if not isinstance(state, dict) or "num_codes" not in payload:
        raise CheckpointError(f"{path}: checkpoint has no prior weights or num_codes")
    speakers = [str(s) for s in payload.get("speakers") or []]
    payload["speakers"] = speakers
    try:
        model = build_prior(config["prior"], num_codes=int(payload["num_codes"]), num_speakers=len(speakers))
    except SpeechVQError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its prior ({exc})") from None
    load_state_strict(model, state, path)
    return model.to(device).eval(), payload
