"""The command line explains itself: every flag has help with its default, every command has
examples, ``--version`` and ``-v`` work anywhere, and a usage error leaves nothing behind."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _commands(child, (*path, name))


COMMANDS = list(_commands(build_parser()))


def _leaf(parser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def test_the_commands_are_found():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"run", "validate", "predict", "serve", "compile", "submit", "schedule", "deploy"} <= names


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_flag_has_help_and_shows_its_default(path, parser):
    missing, no_default = [], []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:  # removed flags that answer with a message
            continue
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip():
            missing.append(name)
            continue
        shown = formatter._expand_help(action)
        meaningful = action.default not in (None, False, [], argparse.SUPPRESS)
        if action.option_strings and meaningful and not action.required and "default" not in shown:
            no_default.append(name)
    assert not missing, f"`twinpipe {' '.join(path)}`: flags without help: {missing}"
    assert not no_default, f"`twinpipe {' '.join(path)}`: help hides the default of {no_default}"


@pytest.mark.parametrize("path,parser", [(p, c) for p, c in COMMANDS if _leaf(c)],
                         ids=[" ".join(p) for p, c in COMMANDS if _leaf(c)])
def test_every_command_has_examples_and_takes_v_after_its_name(path, parser):
    assert parser.epilog and "twinpipe " in parser.epilog, f"`twinpipe {' '.join(path)}`: no examples"
    assert any("--verbose" in a.option_strings for a in parser._actions)
    assert "(default: " in parser.format_help() or not any(
        a.default not in (None, False, [], argparse.SUPPRESS) and a.option_strings
        and not a.required for a in parser._actions if not isinstance(a, argparse._HelpAction))


def test_version_and_verbose_anywhere(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("twinpipe ")
    p = build_parser()
    tail = ["predict", "--model", "m", "--input", "i", "--output", "o"]
    assert p.parse_args(["-v", *tail]).verbose is True
    assert p.parse_args([*tail, "-v"]).verbose is True
    assert p.parse_args(tail).verbose is False


def test_submit_names_the_kfp_host_flag():
    args = build_parser().parse_args(["submit", "--target", "kfp", "--spec", "s.yaml",
                                      "--kfp-host", "http://localhost:8080"])
    assert args.kfp_host == "http://localhost:8080"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["submit", "--target", "kfp", "--spec", "s.yaml", "--host", "x"])


def test_usage_errors_leave_nothing_behind(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["validate", str(tmp_path / "nonexistent.csv"), "--out", str(out)]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert not out.exists()
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n1,2\n")
    code = main(["run", "--input", str(rows), "--contract", str(tmp_path / "missing.yaml"),
                 "--out", str(out)])
    assert code == 1 and not out.exists()
    # a missing tuning file is refused before ingest writes any span
    code = main(["run", "--sample", "100", "--tuning", str(tmp_path / "missing.json"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "--tuning" in err and "missing.json" in err, err
    assert not out.exists()


def test_compile_hides_tensorflow_cpp_logs():
    """The CLI runs with TensorFlow's C++ log off (no 'Unable to register cuFFT factory' lines):
    checked on a fresh interpreter that imports TensorFlow the way compile does."""
    code = ("import os, sys; from infra.cli import _env_for_stacks; "
            "os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None); _env_for_stacks(False); "
            "import tensorflow; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert "Unable to register" not in proc.stderr
