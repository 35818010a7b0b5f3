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


@pytest.mark.parametrize("command,extra", [("decode", ["--speaker", "x"]), ("convert", ["--speaker", "x"]),
                                           ("reconstruct", [])])
@pytest.mark.parametrize("bad,message", [(["--batch", "0"], "--batch must be at least 1"),
                                         (["--temperature", "0"], "--temperature must be positive")])
def test_bad_generation_options_are_refused_before_loading_anything(command, extra, bad, message, tmp_path, capsys):
    rc = main([command, str(tmp_path / "nope.pt"), str(tmp_path / "a.wav"), "--out", str(tmp_path / "out"),
               *extra, *bad])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "nope.pt" not in err
    assert not (tmp_path / "out").exists()


def test_decode_refuses_code_files_whose_outputs_would_collide(tmp_path, capsys):
    rc = main(["decode", str(tmp_path / "nope.pt"), str(tmp_path / "a" / "u1.npy"), str(tmp_path / "b" / "u1.npy"),
               "--speaker", "x", "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "several code files are named u1.npy" in capsys.readouterr().err


def test_encode_names_outputs_by_stem_and_refuses_unresolvable_clashes(tmp_path, capsys):
    from speechvq.cli.encode import _output_names

    a, b, c = tmp_path / "x" / "spk1" / "u1.wav", tmp_path / "x" / "spk2" / "u1.wav", tmp_path / "u2.wav"
    assert _output_names([a, b, c]) == ["spk1_u1", "spk2_u1", "u2"]
    rc = main(["encode", str(tmp_path / "nope.pt"), str(a), str(tmp_path / "y" / "spk1" / "u1.wav"),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "several inputs would be written as spk1_u1.npy" in capsys.readouterr().err
