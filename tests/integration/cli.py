"""Running the real `twinpipe` command line from integration tests."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def twinpipe_command(*args: str) -> tuple[list[str], dict]:
    """The command line and environment of `python -m infra.cli ARGS` (run from ROOT)."""
    return [sys.executable, "-m", "infra.cli", *args], dict(os.environ, PYTHONWARNINGS="ignore")


def twinpipe(*args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python -m infra.cli ARGS` in a subprocess; with ``check`` a failure shows stderr."""
    cmd, env = twinpipe_command(*args)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"twinpipe {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return proc


def twinpipe_here(*args: str) -> None:
    """Runs `twinpipe ARGS` in this process (``infra.cli.main``), for commands that only write
    files such as `compile`: a subprocess would spend ~15 s importing TFX again for each.
    (test_compiled_runs and test_dataflow keep compiling through a subprocess.)"""
    import contextlib
    import io

    from infra.cli import main

    saved, err = dict(os.environ), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:  # what the CLI sets for itself must not reach later tests' subprocesses
        os.environ.clear()
        os.environ.update(saved)
    assert rc == 0, f"twinpipe {' '.join(args)} exited {rc}:\n{err.getvalue()[-4000:]}"
