"""The TFX trainer: the multi-worker launcher's supervision and cleanup (real child processes, a
real launch of TF workers)."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from components.tfx.trainer import Supervised, launch_local_workers, supervise

# --- TF launcher: supervision with real processes ------------------------------------------------

def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")
SLEEPER = "import time; print('ready', flush=True); time.sleep(600)"


def test_supervise_stops_the_siblings_of_a_failed_process_within_the_grace():
    stubborn, sleeper = _child(STUBBORN), _child(SLEEPER)
    for p in (stubborn, sleeper):  # their signal handling is in place before anyone fails
        assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    failing = _child("import sys, time; time.sleep(0.3); sys.exit(3)")
    outcome = supervise([stubborn, failing, sleeper], grace_s=1.0, poll_s=0.05)
    elapsed = time.monotonic() - t0
    assert outcome == Supervised(codes=[-9, 3, -15], failed=1, stopped=[0, 2])
    assert elapsed < 0.3 + 1.0 + 3.0  # the failure, the grace, interpreter start-up slack
    assert all(p.poll() is not None for p in (stubborn, failing, sleeper))


def test_supervise_waits_for_all_when_they_succeed():
    procs = [_child("import time; time.sleep(0.2)"), _child("pass")]
    assert supervise(procs, grace_s=1.0, poll_s=0.05) == Supervised(codes=[0, 0])


def _isolated_tmp(monkeypatch, tmp_path) -> Path:
    """The launcher and its workers make their temporary files under a fresh folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() re-reads TMPDIR
    return tmp


def test_launcher_removes_its_run_folder_when_it_fails_before_launching(monkeypatch, tmp_path):
    tmp = _isolated_tmp(monkeypatch, tmp_path)
    with pytest.raises(TypeError):  # the spec cannot be written as JSON
        launch_local_workers({"config": {"bad": object()}}, 2)
    assert list(tmp.iterdir()) == []


def test_launcher_names_the_failed_worker_and_cleans_up(monkeypatch, tmp_path):
    """Real TF workers on a spec whose Transform output does not exist: they fail; the launcher
    names a worker and leaves no spec file or scratch folder behind."""
    tmp = _isolated_tmp(monkeypatch, tmp_path)
    spec = {"train_files": [str(tmp_path / "none-*")], "eval_files": [],
            "transform_output": str(tmp_path / "no-transform"),
            "serving_model_dir": str(tmp_path / "serving"), "model_run_dir": str(tmp_path / "run"),
            "config": {"numeric": ["a"], "categorical": [], "label": "label", "batch_size": 4,
                       "epochs": 1, "train_rows": 10}}
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"\[tfx\]\[train\] worker [01] of 2 exited with code 1"):
        launch_local_workers(spec, 2, grace_s=2.0)
    assert time.monotonic() - t0 < 120
    assert list(tmp.iterdir()) == []
    assert not (tmp_path / "serving").exists()
