"""A 2-process gloo run under torchrun ends with identical weights and codebooks on both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from speechvq.checkpoint import load_checkpoint
from vqvae_testutils import write_prepared_corpus

HERE = Path(__file__).resolve().parent


def test_two_process_gloo_run_keeps_ranks_identical(tmp_path):
    prepared = write_prepared_corpus(tmp_path / "corpus")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    # Known flake (about 1 run in 20 on 2 shared cores): a gloo worker occasionally dies with
    # SIGABRT ("terminate called without an active exception") inside torch's C++ code. Only
    # that signal gets one fresh retry; any other failure, or a second abort, fails the test.
    for attempt in range(2):
        run, out = tmp_path / f"run{attempt}", tmp_path / f"checksums{attempt}.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "ddp_train_worker.py"), str(prepared), str(run), str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if proc.returncode == 0 or "Signal 6 (SIGABRT)" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["step"] == 4
    rank0, rank1 = (torch.tensor(c) for c in result["checksums"])
    differing = [n for n, a, b in zip(result["names"], rank0, rank1) if a != b]
    assert not differing
    assert "quantizer.codebook" in result["names"] and "quantizer.ema_count" in result["names"]
    # rank 0 alone wrote the checkpoints; they hold the shared weights
    payload = load_checkpoint(run, kind="vqvae")
    assert payload["step"] == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt", "step_0000003.pt",
                                                                        "step_0000004.pt"]
