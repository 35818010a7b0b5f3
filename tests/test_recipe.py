"""recipes/vctk: the pair list is fixed and sensible; run.sh skips finished stages and ends with the page."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import make_fake_run

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "vctk"


def _conf_module():
    spec = importlib.util.spec_from_file_location("recipe_conf", RECIPE / "local" / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows():
    return [{"id": f"{spk}_{key}", "speaker": spk, "split": split, "source": f"/c/{spk}/{key}.wav"}
            for spk in ("s3", "s1", "s2") for key, split in (("k1", "test"), ("k2", "test"), ("k3", "train"))]


def test_pairs_are_fixed_unseen_and_never_to_own_speaker():
    conf = _conf_module()
    spec = {"split": "test", "speakers": None, "max_speakers": None, "per_speaker": 1, "ids": ["s3_k3"], "targets": 2}
    pairs = conf.select_pairs(_rows(), spec)
    assert [(r["id"], t) for r, t in pairs] == [
        ("s1_k1", "s2"), ("s2_k1", "s1"), ("s3_k1", "s1"), ("s3_k1", "s2"), ("s3_k3", "s1"), ("s3_k3", "s2")]
    assert pairs == conf.select_pairs(list(reversed(_rows())), spec)  # order of the manifest does not matter
    every = conf.select_pairs(_rows(), {"speakers": ["s1", "s2"], "per_speaker": None, "targets": None})
    assert {r["split"] for r, _ in every} == {"test"}
    assert len(every) == 4 and all(r["speaker"] != t for r, t in every)


def test_pairs_refuse_unknown_speakers(capsys):
    conf = _conf_module()
    with pytest.raises(SystemExit) as info:
        conf.select_pairs(_rows(), {"speakers": ["nobody"]})
    assert info.value.code == 2
    assert "unknown speakers ['nobody']" in capsys.readouterr().err


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHON"] = sys.executable
    return env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RECIPE / "run.sh"), *args], capture_output=True, text=True, env=_env(),
                          timeout=120, check=False)


def test_run_sh_report_stage_then_skips(tmp_path):
    run = make_fake_run(tmp_path, with_tb=False)
    first = _run("--conf", "conf/demo.yaml", "--out", str(run), "--stage", "7", "--stop-stage", "7")
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.strip().splitlines()
    assert lines[-1] == f"samples page: {run.resolve()}/report/index.html"
    assert (run / "report" / "index.html").is_file() and (run / ".done" / "7").is_file()
    assert any("probe many-to-one accuracy: 0.420 vs majority baseline" in line for line in lines)
    assert any(line.startswith("  stage 7 report ") and line.endswith("s") for line in lines)

    second = _run("--conf", "conf/demo.yaml", "--out", str(run), "--stage", "7")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage 7 (report): done already, skipping" in second.stdout
    assert "  stage 7 report skipped (took " in second.stdout
    assert second.stdout.strip().splitlines()[-1] == lines[-1]


def test_run_sh_refuses_bad_arguments(tmp_path):
    bad_stage = _run("--out", str(tmp_path / "x"), "--stage", "9")
    assert bad_stage.returncode == 2 and "--stage" in bad_stage.stderr
    both = _run("--vctk-root", str(tmp_path), "--corpus-root", str(tmp_path))
    assert both.returncode == 2 and "not both" in both.stderr
    missing = _run("--out", str(tmp_path / "y"), "--stage", "2", "--stop-stage", "2")
    assert missing.returncode == 2 and "manifest.jsonl is missing" in missing.stderr


def test_a_conf_with_a_base_takes_its_values_and_replaces_lists(tmp_path):
    conf = _conf_module()
    (tmp_path / "main.yaml").write_text("threads: 2\ntrain:\n  overrides: [a=1, b=2]\n  diagnose_args: [x]\n")
    (tmp_path / "variant.yaml").write_text("base: main.yaml\ntrain:\n  overrides: [c=3]\n")
    merged = conf.load(str(tmp_path / "variant.yaml"))
    assert merged.threads == 2 and list(merged.train.overrides) == ["c=3"]
    assert list(merged.train.diagnose_args) == ["x"] and "base" not in merged
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(SystemExit):
        conf.load(str(tmp_path / "loop.yaml"))
