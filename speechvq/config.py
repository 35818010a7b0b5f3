"""Locating and composing the hydra configs (the CLI's job; models never read configs)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig


def config_dir() -> Path:
    """The `configs/` directory: installed inside the package, or at the repository root."""
    override = os.environ.get("SPEECHVQ_CONFIG_DIR")
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve().parent
    candidates += [here / "_configs", here.parent / "configs"]
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError("speechvq configs not found (looked in: " + ", ".join(map(str, candidates)) + ")")


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose `configs/<config_name>.yaml` with hydra `overrides` (e.g. ``["model=tiny"]``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides or []))
