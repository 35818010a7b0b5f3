"""tools/world_resynthesis.py: the vocoder ceiling keeps the envelope's movements and the pitch."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechvq.analysis.metrics import envelope_dynamics_r2, f0_error_cents
from speechvq.audio import load_audio, save_wav
from speechvq.f0 import world_f0

pytest.importorskip("pyworld")
TOOL = Path(__file__).resolve().parents[1] / "tools" / "world_resynthesis.py"
_spec = importlib.util.spec_from_file_location("world_resynthesis", TOOL)
world_resynthesis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(world_resynthesis)


def vowels(seconds: float = 1.0, f0: float = 140.0, sr: int = 16000, moving: bool = True) -> np.ndarray:
    """Harmonics of f0 whose spectral peak moves from 500 Hz to 2 kHz and back (a moving formant), or
    stays at 1250 Hz."""
    t = np.arange(int(seconds * sr)) / sr
    peak = 1250 - 750 * np.cos(2 * np.pi * t / seconds) if moving else np.full_like(t, 1250.0)
    x = sum(np.exp(-((k * f0 - peak) / 300.0) ** 2) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 50))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_resynthesis_keeps_the_moving_envelope_and_the_pitch():
    x = vowels()
    y = world_resynthesis.resynthesize(x)
    assert abs(len(y) - len(x)) <= 80
    assert envelope_dynamics_r2(x, y) > 0.6
    assert envelope_dynamics_r2(x, vowels(moving=False)) < 0.2  # what a fixed envelope scores
    assert f0_error_cents(world_f0(x, hop_length=160), world_f0(y, hop_length=160)) < 20


def test_cli_writes_reconstructions_for_score(tmp_path):
    source = save_wav(tmp_path / "corpus" / "A" / "u1.wav", vowels(0.5))
    listing = tmp_path / "in.list"
    listing.write_text(f"{source}\n")
    out = tmp_path / "new" / "world"
    subprocess.run([sys.executable, str(TOOL), str(listing), "--out", str(out)], check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "conversions.jsonl").read_text().splitlines()]
    assert rows == [{"source": str(source), "source_speaker": "A", "utterance": "u1", "target_speaker": "A",
                     "output": str(out / "A_u1_to_A.wav")}]
    assert len(load_audio(out / "A_u1_to_A.wav")) > 0
