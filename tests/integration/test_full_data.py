"""Full-data end-to-end run (minutes): `make test-slow`, not part of CI."""

import json

import pytest

from tests.integration.cli import twinpipe

pytestmark = pytest.mark.slow


def test_three_full_months_two_workers_push_a_blessed_model(tmp_path):
    twinpipe("run", "--stack", "tfx", "--months", "1-3", "--workers", "2", "--out", str(tmp_path),
             "--no-report", timeout=3000)
    summary = json.loads((tmp_path / "tfx" / "run.json").read_text())
    assert summary["stages"]["ingest"]["rows"] > 75_000
    assert summary["stages"]["evaluate"]["auc"] > 0.65
    assert summary["stages"]["evaluate"]["blessed"] and summary["stages"]["push"]["pushed"]
