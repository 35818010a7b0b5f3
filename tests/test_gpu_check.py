"""tools/gpu_check.sh runs on a machine without CUDA: every part that does not need CUDA runs (at
the smallest sizes), the others print `<part>=skipped (no CUDA)`, and it exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["pytest_gpu", "bench_generate", "bench_train", "corpus", "train_bf16", "convert", "train_compile"]
CUDA_ONLY = {"pytest_gpu", "train_compile"}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; on a GPU run the script itself")
def test_gpu_check_runs_on_cpu_and_skips_only_the_cuda_parts(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_DIR": str(tmp_path / "check"), "GPU_CHECK_QUICK": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    for name in PARTS:
        assert values[name] == ("skipped (no CUDA)" if name in CUDA_ONLY else "ok"), name
    assert values["cuda"] == "0" and values["failed"] == "0"
    assert values["train_bf16_first_step"] == "30" and values["train_bf16_resumed_step"] == "60"
    assert values["convert_files"] == "4"
    for output in ("mulaw", "mol"):
        assert float(values[f"bench_generate_tiny_{output}_b4_samples_per_second"]) > 0
    for precision in ("fp32", "bf16"):
        assert float(values[f"bench_train_tiny_{precision}_samples_per_second"]) > 0


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "tools" / "gpu_check.sh")], check=True)
