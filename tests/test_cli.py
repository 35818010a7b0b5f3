import subprocess
import sys

import pytest

from speechvq import __version__
from speechvq.cli import COMMANDS, main


def test_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"speechvq {name}" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_version_via_console_entry():
    out = subprocess.run([sys.executable, "-m", "speechvq", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"speechvq {__version__}"


def test_missing_checkpoint_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "speechvq", "convert", str(tmp_path / "nope.pt"), str(tmp_path / "a.wav"),
         "--speaker", "x", "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "nope.pt" in proc.stderr and "Traceback" not in proc.stderr
