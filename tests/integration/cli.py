"""Running the real `twinpipe` command line from integration tests."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def twinpipe(*args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Runs `python -m infra.cli ARGS` in a subprocess; with ``check`` a failure shows stderr."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"twinpipe {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return proc
