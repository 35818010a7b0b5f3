"""Helpers for the VQ-VAE training tests: a small prepared corpus and a very small model config.

Plain functions (no fixtures) so that the torchrun worker script can use them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

# The tiny preset's code path with even smaller numbers: a step takes milliseconds on one core.
MICRO_MODEL = [
    "model.num_codes=32",
    "model.code_dim=8",
    "model.encoder.channels=8",
    "model.encoder.res_channels=8",
    "model.encoder.num_res_blocks=1",
    "model.decoder.speaker_dim=4",
    "model.decoder.cond_channels=8",
    "model.decoder.residual_channels=8",
    "model.decoder.gate_channels=16",
    "model.decoder.skip_channels=16",
    "model.decoder.layers=4",
    "model.decoder.stacks=1",
    "model.quantizer.restart_after_steps=2",
]


def write_prepared_corpus(root: Path, speakers=("alice", "bob"), utterances: int = 6, seconds: float = 0.25) -> Path:
    """A folder corpus of chirps with noise (distinct per speaker and utterance), prepared into root/prep.

    6 utterance keys -> 1 test and 1 valid key, 4 train keys (8 train utterances for 2 speakers).
    """
    from speechvq.data.prepare import prepare_corpus

    src = Path(root) / "src"
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    for s, speaker in enumerate(speakers):
        for u in range(utterances):
            f0 = 150 + 40 * s + 25 * u
            wav = 0.4 * np.sin(2 * np.pi * (f0 * t + 200 * t**2)) + 0.02 * rng.standard_normal(n)
            path = src / speaker / f"u{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wav.astype(np.float32), 16000)
    prep = Path(root) / "prep"
    prepare_corpus(src, prep, workers=1, valid_fraction=0.2, test_fraction=0.2, progress=False)
    return prep


def micro_overrides(run_dir: Path, prepared: Path, *extra: str) -> list[str]:
    """Overrides of configs/train.yaml for a few-second CPU run (trainer=debug, the micro model)."""
    return [
        f"run_dir={run_dir}",
        f"data.prepared={prepared}",
        "trainer=debug",
        "trainer.threads=1",
        "trainer.max_steps=6",
        "trainer.warmup_steps=2",
        "trainer.valid_every=3",
        "trainer.checkpoint_every=3",
        "trainer.log_every=3",
        "data.segment_samples=1024",
        "data.batch_size=2",
        "data.valid_samples=1024",
        "data.max_valid_utterances=2",
        *MICRO_MODEL,
        *extra,
    ]
