"""The TFX trainer: the multi-worker launcher's supervision and cleanup (real child processes, a
real launch of TF workers), and training + serving with a contract without numeric features on
fewer rows than one batch (real TF Transform and Keras)."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from components.tfx.launch import Supervised, launch_local_workers, supervise
from tests.tft_data import tfx_transform

ROOT = Path(__file__).resolve().parents[2]


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


def test_launcher_names_the_failed_worker_and_cleans_up(monkeypatch, tmp_path, caplog):
    """Real worker processes on a spec they refuse (before importing TensorFlow): the launcher
    relaunches them up to max_restarts times, then names a failed worker and leaves no spec
    file or scratch folder behind."""
    tmp = _isolated_tmp(monkeypatch, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"\[tfx\]\[train\] worker [01] of 2 exited with code 1"
                       r": multi-worker training failed after 2 attempt\(s\) \(max_restarts 1"):
        launch_local_workers({"config": {"workers": 2, "max_restarts": 1}}, 2, grace_s=2.0)
    assert "relaunching attempt 2/2 (max_restarts 1), no backup yet" in caplog.text
    assert time.monotonic() - t0 < 60
    assert list(tmp.iterdir()) == []

# --- TF: a contract without numeric features, fewer train rows than a batch -----------------------

def test_tfx_trainer_without_numeric_features_and_few_rows(tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft
    import yaml

    from components.common.config import STEPS_PER_EXECUTION
    from components.common.contract import DEFAULT_CONTRACT, load_contract
    from components.common.ingest import ingest
    from components.common.sources import load_default_table
    from components.common.spans import read_spans
    from components.tfx.export import predict_saved_model
    from components.tfx.model import build_model
    from components.tfx.trainer import train

    doc = yaml.safe_load((ROOT / "components" / "common" / DEFAULT_CONTRACT).read_text())
    for spec in doc["columns"].values():
        spec["feature"] = bool(spec.get("feature")) and spec["type"] == "string"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    contract = load_contract(tmp_path / "c.yaml")
    names = [c.name for c in contract.features]
    assert not contract.numeric_features and names == ["carrier", "origin", "dest"]
    table, _ = load_default_table(contract)
    table[table["month"] == 1].sample(400, random_state=0).to_parquet(tmp_path / "in.parquet")
    ingested = ingest(contract, tmp_path / "spans", input_path=tmp_path / "in.parquet")
    train_rows = ingested.spans[0].train_rows
    assert train_rows < 512  # fewer rows than one batch

    transform_output, train_files = tfx_transform(contract, tmp_path / "spans", tmp_path)
    tft_output = tft.TFTransformOutput(transform_output)
    one = build_model(tft_output, {"numeric": [], "categorical": ["origin"], "hidden_units": [4]})
    assert not [layer for layer in one.layers if isinstance(layer, tf.keras.layers.Concatenate)]
    assert int(one._steps_per_execution.numpy()) == STEPS_PER_EXECUTION  # not a Python call a step

    spec = {"train_files": [train_files], "eval_files": [], "transform_output": transform_output,
            "serving_model_dir": str(tmp_path / "serving"), "model_run_dir": str(tmp_path / "run"),
            "config": {"numeric": [], "categorical": names, "label": contract.label.name,
                       "workers": 1, "batch_size": 512, "epochs": 2, "learning_rate": 1e-2,
                       "hidden_units": [8], "train_rows": train_rows}}
    metrics = train(spec)
    assert metrics["steps"] == 2 and np.isfinite(metrics["final_loss"])  # one (full) batch per epoch
    assert metrics["samples_per_s"] > 0  # the clock started after the first execution (step 1)
    rows = read_spans(tmp_path / "spans", "eval").to_pandas()
    p = predict_saved_model(str(tmp_path / "serving"), rows, feature_names=names)
    assert p.shape == (len(rows),) and ((p > 0) & (p < 1)).all() and p.std() > 0
