"""Fault tolerance of both stacks' training, with a worker SIGKILLed from outside its process.

Each test trains twice on the same real rows (January flights, a small sample): once
undisturbed, once with 2 workers and worker/rank 1 killed (SIGKILL, by pid, from this process: what an OOM
killer or a lost node does) after the first epoch's checkpoint/backup exists. The disturbed run
must finish through its launcher's own recovery (TFX: the local launcher relaunches the job and
``BackupAndRestore`` restores it; torch: torchrun ``--max_restarts`` and the app's checkpoint),
resume past epoch 0 rather than start over, and score within 0.01 AUC of the undisturbed run.
The training entry points run directly (the Trainer's multi-worker launcher, the torch train
component's TorchX job), not whole pipelines: recovery lives entirely inside them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from components.common import fault
from components.common.metrics import binary_metrics

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
WORKERS = 2


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    """Spans of 8000 sampled January flights (read-only for the tests)."""
    from components.common.contract import DEFAULT_CONTRACT, load_contract
    from components.common.ingest import ingest
    from components.common.spans import read_spans

    contract = load_contract(ROOT / "components" / "common" / DEFAULT_CONTRACT)
    spans = tmp_path_factory.mktemp("fault") / "spans"
    ingested = ingest(contract, spans, months=[1], sample=8000)
    train_rows = sum(s.train_rows for s in ingested.spans)
    return contract, spans, train_rows, read_spans(spans, "eval").to_pandas()


def _killed(monkeypatch, tmp_path, train, samples_per_epoch: int) -> dict:
    """Runs ``train()`` while a :class:`fault.Killer` SIGKILLs rank 1 after the first checkpoint;
    the kill's summary from the progress events."""
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(fault.EVENTS_ENV, str(events))
    killer = fault.Killer(events, os.getpid(), rank=1)
    killer.start()
    try:
        train()
    except BaseException:
        killer.cancel()
        raise
    kill = killer.result()
    summary = fault.summarize(fault.read_events(events), kill, EPOCHS, samples_per_epoch)
    print(json.dumps(summary))  # the figures, for whoever reads the test log
    return summary


def _assert_resumed(summary: dict) -> None:
    assert summary["finished"] and summary["restarts"] == 1
    assert summary["epochs_checkpointed_before_kill"] >= 1
    assert 0 < summary["resumed_at_epoch"] <= summary["epochs_checkpointed_before_kill"]
    assert summary["epochs_trained_after_kill"] < EPOCHS  # not restarted from scratch
    assert summary["detect_s"] is not None and summary["recover_s"] > summary["detect_s"]


def test_tfx_worker_killed_relaunches_and_resumes_from_backup(flights, tmp_path, monkeypatch,
                                                              caplog):
    from components.tfx.export import predict_saved_model
    from components.tfx.launch import launch_local_workers
    from components.tfx.trainer import TRAIN_METRICS
    from tests.tft_data import tfx_transform

    contract, spans, train_rows, eval_rows = flights
    transform_output, train_files = tfx_transform(contract, spans, tmp_path)
    names = [c.name for c in contract.features]
    # steps_per_execution 1: epochs of ~90 steps long enough that the kill lands inside one.
    config = {"numeric": [c.name for c in contract.numeric_features],
              "categorical": [c.name for c in contract.categorical_features],
              "label": contract.label.name, "workers": WORKERS, "batch_size": 32,
              "epochs": EPOCHS, "learning_rate": 3e-3, "hidden_units": [16],
              "train_rows": train_rows, "steps_per_execution": 1}

    def spec(name: str) -> dict:
        return {"train_files": [train_files], "eval_files": [], "transform_output": transform_output,
                "serving_model_dir": str(tmp_path / name / "serving"),
                "model_run_dir": str(tmp_path / name / "run"), "config": config}

    auc = {}
    for name in ("undisturbed", "killed"):
        run = spec(name)
        if name == "undisturbed":
            # The same launcher, workers, batch and seed (the Trainer seeds weights and shuffle):
            # the two runs differ only by the kill and the resume.
            launch_local_workers(run, WORKERS, max_restarts=0)
        else:
            with caplog.at_level(logging.WARNING, logger="twinpipe.tfx.train"):
                summary = _killed(monkeypatch, tmp_path, lambda r=run: launch_local_workers(
                    r, WORKERS), train_rows)
        p = predict_saved_model(run["serving_model_dir"], eval_rows, feature_names=names)
        auc[name] = binary_metrics(eval_rows[contract.label.name].to_numpy(), p)["auc"]

    _assert_resumed(summary)
    assert (f"worker 1 was killed by SIGKILL; relaunching attempt 2/4 (max_restarts 3), resuming "
            f"from the backup at epoch {summary['resumed_at_epoch']}") in caplog.text
    metrics = json.loads((tmp_path / "killed" / "run" / TRAIN_METRICS).read_text())
    assert metrics["resumed_from_epoch"] == summary["resumed_at_epoch"]
    assert not (tmp_path / "killed" / "run" / "backup").exists()  # removed after success
    print(auc)
    assert abs(auc["killed"] - auc["undisturbed"]) < 0.01, auc


def test_torch_rank_killed_is_restarted_by_torchrun_and_resumes(flights, tmp_path, monkeypatch):
    """Both runs with 2 ranks under TorchX + torchrun; the checkpoint holds model and optimizer,
    and each epoch's shuffle is seeded by (seed, epoch, rank): a resumed run retrains the same."""
    import torch

    from components.torch.job import train_appdef
    from components.torch.launch import run_training
    from components.torch.trainer import load_model

    contract, spans, train_rows, eval_rows = flights

    def train(out: Path) -> None:
        args = ["--train", str(spans), "--out", str(out),
                "--numeric", ",".join(c.name for c in contract.numeric_features),
                "--categorical", ",".join(c.name for c in contract.categorical_features),
                "--label", contract.label.name, "--epochs", str(EPOCHS), "--batch-size", "32"]
        run_training(train_appdef(*args, workers=WORKERS, max_restarts=3), "local_cwd",
                     {"log_dir": str(out.parent / f"{out.name}-logs")})

    auc = {}
    for name in ("undisturbed", "killed"):
        out = tmp_path / name
        if name == "undisturbed":
            train(out)
        else:
            summary = _killed(monkeypatch, tmp_path, lambda o=out: train(o), train_rows)
        model, prep, metrics = load_model(out)
        num, cat = prep.encode(eval_rows)
        with torch.no_grad():
            p = model(torch.from_numpy(num), torch.from_numpy(cat)).numpy()
        auc[name] = binary_metrics(eval_rows[contract.label.name].to_numpy(), p)["auc"]

    _assert_resumed(summary)
    assert metrics["resumed_from_epoch"] == summary["resumed_at_epoch"]
    assert np.isfinite(metrics["final_loss"])
    assert abs(auc["killed"] - auc["undisturbed"]) < 0.01, auc
