"""The README's Python example runs as written (on a micro model trained here)."""

import re
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from speechvq.checkpoint import save_checkpoint
from speechvq.config import compose
from speechvq.models.builders import build_prior
from speechvq.training.vqvae import train
from vqvae_testutils import micro_overrides, write_prepared_corpus

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    prepared = write_prepared_corpus(tmp_path)
    train(compose("train", micro_overrides(tmp_path / "runs" / "tiny", prepared)))
    train(compose("train", micro_overrides(tmp_path / "runs" / "vocoder", prepared, "model=tiny_sf",
                                           f"units_from={tmp_path / 'runs' / 'tiny'}")))
    cfg = OmegaConf.to_container(compose("train_prior", ["run_dir=r", "codes=c", "prior=tiny", "prior.dim=16",
                                                         "prior.heads=2"]).prior)
    save_checkpoint(tmp_path / "runs" / "prior" / "checkpoints" / "last.pt",
                    {"kind": "prior", "model": build_prior(cfg, num_codes=32, num_speakers=2).state_dict(),
                     "speakers": ["alice", "bob"], "num_codes": 32, "config": {"prior": cfg}, "step": 0})
    (tmp_path / "input.wav").write_bytes((tmp_path / "src" / "alice" / "u0.wav").read_bytes())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    codes, audio, converted = namespace["codes"], namespace["audio"], namespace["converted"]
    assert codes.dtype == np.int64 and audio.shape == (64 * codes.shape[0],)
    assert converted.shape == audio.shape and np.isfinite(converted).all()
    assert namespace["shifted"].shape == audio.shape and not np.array_equal(namespace["shifted"], converted)
    assert namespace["data"][:4] == b"SVQ\x00" and namespace["decoded"].shape == (namespace["wav"].shape[0],)
