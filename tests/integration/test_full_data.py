"""Full-data end-to-end run (minutes): `make test-slow`, not part of CI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_three_full_months_two_workers_push_a_blessed_model(tmp_path):
    subprocess.run([sys.executable, "-m", "infra.cli", "run", "--stack", "tfx", "--months", "1-3",
                    "--workers", "2", "--out", str(tmp_path)], cwd=ROOT, check=True,
                   env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=3000)
    summary = json.loads((tmp_path / "tfx" / "run.json").read_text())
    assert summary["stages"]["ingest"]["rows"] > 75_000
    assert summary["stages"]["evaluate"]["auc"] > 0.65
    assert summary["stages"]["evaluate"]["blessed"] and summary["stages"]["push"]["pushed"]
