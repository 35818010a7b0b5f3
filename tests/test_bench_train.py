"""The benchmarks run: bench_train.py on the CPU preset (a unit vocoder), bench_source_filter.py with its baseline."""

import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_train.py"


def _run(*args: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, str(TOOL), "--steps", "1", "--warmup", "0", "--batch-size", "1",
                          "--segment", "2048", "--threads", "1", *args], check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def test_source_filter_preset_as_a_unit_vocoder_with_an_override():
    small = ["--override", "model.decoder.cond_channels=8", "--override", "model.decoder.cond_layers=1"]
    values = _run("--preset", "tiny_sf", "--frozen-units", *small)
    assert values["frozen_units"] == "True"
    assert values["overrides"] == "model.decoder.cond_channels=8,model.decoder.cond_layers=1"
    assert float(values["samples_per_second"]) > 0
    default = _run("--preset", "tiny_sf", "--frozen-units")
    assert int(default["parameters"]) > int(values["parameters"])  # the override reached the model


def test_source_filter_generation_bench_times_the_envelope_filter_beside_the_plain_decoder():
    tool = TOOL.parent / "bench_source_filter.py"
    out = subprocess.run([sys.executable, str(tool), "--seconds", "0.2", "--repeats", "1", "--ar-seconds", "0.02"],
                         check=True, capture_output=True, text=True, cwd=TOOL.parents[1])
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    with_filter, without = (float(values[k]) for k in ("source_filter_seconds_per_call",
                                                        "without_envelope_filter_seconds_per_call"))
    assert with_filter > 0 and without > 0 and float(values["realtime_factor"]) > 0
    # the share is 1 - without / with (timings vary on a loaded machine; the relation does not)
    assert float(values["envelope_filter_time_share"]) == pytest.approx(1 - without / with_filter, abs=0.05)
