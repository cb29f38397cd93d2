"""The `recon` command line: verb discovery, help texts, and the error contract (an input error
prints one line `recon VERB: error: ...` without a traceback and exits 2)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from recon import cli
from recon.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]
VERBS = [m.NAME for m in cli._verb_modules()]


def run_recon(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "recon", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_every_verb():
    out = run_recon("--help")
    assert out.returncode == 0 and out.stderr == ""
    assert "usage: recon" in out.stdout
    for verb in VERBS:
        # argparse puts a long verb name alone on its line
        assert re.search(rf"^    {verb}(\s|$)", out.stdout, re.MULTILINE), f"{verb} missing from recon --help"


def test_no_verb_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: recon" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    from recon import __version__

    assert capsys.readouterr().out.strip() == f"recon {__version__}"


def test_verb_modules_follow_the_contract():
    for mod in cli._verb_modules():
        assert mod.__name__ == f"recon.cli.verb_{mod.NAME}"
        assert isinstance(mod.HELP, str) and mod.HELP.strip()
        assert callable(mod.add_arguments) and callable(mod.run)
    assert len(VERBS) == len(set(VERBS))


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: recon {verb}")
    assert len(out.strip().splitlines()) >= 3


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-verb"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# The error contract, with a test-only verb injected into the registry
# ------------------------------------------------------------------------------------------

def _fake_verb(exc: BaseException | None):
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path")

    def run(args):
        if exc is not None:
            raise exc
        print(f"ok {args.path}")
        return 0

    return types.SimpleNamespace(NAME="fake", HELP="test-only verb", ORDER=999,
                                 add_arguments=add_arguments, run=run)


@pytest.fixture
def with_verb(monkeypatch):
    real = cli._verb_modules

    def install(exc):
        monkeypatch.setattr(cli, "_verb_modules", lambda: [*real(), _fake_verb(exc)])

    return install


@pytest.mark.parametrize("exc, message", [
    (ValueError("points: expected shape [N, 3], got (5, 2)"), "points: expected shape [N, 3], got (5, 2)"),
    (TypeError("camera: expected calib.Camera, got str"), "camera: expected calib.Camera, got str"),
    (FormatError("model/cameras.bin", "truncated after 12 bytes"), "model/cameras.bin: truncated after 12 bytes"),
    (FileNotFoundError(2, "No such file or directory", "missing.ply"),
     "[Errno 2] No such file or directory: 'missing.ply'"),
    (NotImplementedError("camera model FOV can be stored but not projected"),
     "camera model FOV can be stored but not projected"),
])
def test_input_errors_print_one_line_and_exit_2(with_verb, capsys, exc, message):
    with_verb(exc)
    assert cli.main(["fake", "x"]) == cli.EXIT_INPUT_ERROR == 2
    captured = capsys.readouterr()
    assert captured.err == f"recon fake: error: {message}\n"
    assert "Traceback" not in captured.err and captured.out == ""


def test_debug_shows_the_traceback(with_verb):
    with_verb(ValueError("bad value"))
    with pytest.raises(ValueError, match="bad value"):
        cli.main(["--debug", "fake", "x"])


def test_bugs_are_not_disguised_as_input_errors(with_verb):
    with_verb(ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["fake", "x"])


def test_success_and_interrupt(with_verb, capsys):
    with_verb(None)
    assert cli.main(["fake", "here"]) == 0
    assert capsys.readouterr().out == "ok here\n"
    with_verb(KeyboardInterrupt())
    assert cli.main(["fake", "x"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_real_verb_input_error_in_a_subprocess():
    """End to end through `python -m recon`: a real verb, a real input error, no traceback."""
    out = run_recon("data", "info", "no-such-dataset")
    assert out.returncode == 2
    assert out.stderr.startswith("recon data: error: name: unknown dataset 'no-such-dataset'")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_info_on_a_missing_file(tmp_path):
    out = run_recon("info", str(tmp_path / "missing.ply"))
    assert out.returncode == 2
    assert out.stderr.startswith("recon info: error: ") and "missing.ply" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
