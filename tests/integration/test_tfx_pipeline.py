"""The TFX stack end to end with LocalDagRunner on a small sample of real flights."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.common import registry
from components.common.config import STAGES
from components.common.contract import load_contract
from components.common.rowdigest import frame_digest
from components.common.sources import load_default_table
from tests.integration.cli import ROOT, twinpipe, twinpipe_here

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 1 trains a real model; run 2 (learning rate 1e-9, the smallest --learning-rate takes:
    in effect the untrained network) must lose.

    Run 2 also trains with two worker processes, so the multi-worker path runs in CI.
    """
    tmp = tmp_path_factory.mktemp("tfx")
    doc = yaml.safe_load((ROOT / "components/common/flights.yaml").read_text())
    # Lower bound 0 so that only the regression rule decides run 2: the test is about the
    # baseline comparison, not about how good a model a small sample can make.
    doc["blessing"] = {"metric": "auc", "lower_bound": 0.0, "max_regression": 0.01}
    contract = tmp / "contract.yaml"
    contract.write_text(yaml.safe_dump(doc))
    # An own --contract needs its table given with --input: the packaged rows of months 1-2.
    table, _ = load_default_table(load_contract())
    rows = tmp / "flights-2013-01-02.csv"
    table[table["month"].isin([1, 2])].to_csv(rows, index=False)
    out = tmp / "out"
    common = ["run", "--stack", "tfx", "--input", str(rows), "--months", "1-2", "--sample", "8000",
              "--out", str(out), "--contract", str(contract), "--no-report"]
    twinpipe(*common, "--epochs", "4", "--batch-size", "256")
    first = json.loads((out / "tfx" / "run.json").read_text())
    twinpipe(*common, "--epochs", "1", "--learning-rate", "1e-9", "--workers", "2")
    second = json.loads((out / "tfx" / "run.json").read_text())
    return out, first, second


def test_every_stage_ran_and_a_blessed_model_was_pushed(runs):
    out, first, _ = runs
    st = first["stages"]
    assert first["failed_stage"] is None
    for name in STAGES:
        assert st[name]["wall_s"] > 0 or name == "push", name
        assert all(n["state"] == "COMPLETE" for n in st[name]["nodes"]), st[name]["nodes"]
    assert st["ingest"]["spans"] == [201301, 201302]
    assert st["validate"]["passed"] is True
    assert st["train"]["workers"] == 1 and st["train"]["samples_per_s"] > 0
    ev = st["evaluate"]
    assert 0.55 < ev["auc"] <= 1.0
    span_eval = pd.concat(pd.read_parquet(p) for p in (out / "spans").glob("span-*/eval/*.parquet"))
    assert ev["eval_rows"] == ev["eval_rows_hashed"] == len(span_eval)
    # the Evaluator's eval examples are the spans' eval rows, key by key
    assert ev["eval_rows_sha256"] == frame_digest(span_eval, load_contract().split.key).sha256
    assert ev["blessed"] is True and ev["baseline"] is None
    assert st["push"]["pushed"] is True
    pushed = Path(st["push"]["pushed_path"])
    assert (pushed / "saved_model.pb").exists() and (pushed / "signature.json").exists()


def test_worse_model_is_not_pushed_and_baseline_stays(runs):
    out, first, second = runs
    ev = second["stages"]["evaluate"]
    assert ev["baseline"] == first["stages"]["push"]["pushed_path"]
    # Same model, same rows: equal up to TFMA's bucketed AUC over float32 predictions, whose
    # batching differs between runs (seen: 1.4e-4 apart).
    assert ev["baseline_auc"] == pytest.approx(first["stages"]["evaluate"]["auc"], abs=2e-3)
    assert ev["auc"] < ev["baseline_auc"] - 0.01
    assert ev["blessed"] is False
    assert second["stages"]["push"]["pushed"] is False
    assert registry.versions(out / "tfx" / "pushed") == [Path(first["stages"]["push"]["pushed_path"])]


def test_two_workers_ran_multi_worker_strategy(runs):
    _, _, second = runs
    train = second["stages"]["train"]
    assert train["workers"] == 2 and train["replicas"] == 2
    assert train["strategy"] == "MultiWorkerMirroredStrategy"
    assert train["global_batch"] == 2 * 512


def test_bad_data_stops_at_the_gate_before_training(runs, tmp_path):
    """In its own out folder (the module run's pushed model copied in), not the shared one."""
    good, _, _ = runs
    rows = pd.concat(pd.read_parquet(p) for p in sorted((good / "spans").glob("span-*/*/*.parquet")))
    rows = rows.drop(columns=["delayed", "reason"], errors="ignore").reset_index(drop=True)
    rows.loc[::50, "distance"] = 99_999  # out of the contract's range [1, 6000]
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    out = tmp_path / "out"
    shutil.copytree(good / "tfx" / "pushed", out / "tfx" / "pushed")
    before = registry.versions(out / "tfx" / "pushed")
    assert len(before) == 1
    proc = twinpipe("run", "--stack", "tfx", "--input", str(bad), "--months", "1-2",
                    "--out", str(out), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "[tfx][validate]" in proc.stderr and "distance" in proc.stderr
    assert "bad.csv" in proc.stderr  # names the user's file, not only internal paths
    summary = json.loads((out / "tfx" / "run.json").read_text())
    assert summary["failed_stage"] == "validate"
    assert summary["stages"]["validate"]["passed"] is False
    assert summary["stages"]["train"]["nodes"] == []  # Transform and Trainer never started
    assert registry.versions(out / "tfx" / "pushed") == before


def test_predict_with_pushed_model_reproduces_evaluation(runs, tmp_path):
    from sklearn.metrics import roc_auc_score

    out, first, _ = runs
    model = first["stages"]["push"]["pushed_path"]
    rows = pd.concat(pd.read_parquet(p) for p in sorted((out / "spans").glob("span-*/eval/*.parquet")))
    raw = rows.drop(columns=["delayed"])  # the contract's input shape, no label
    src, dst = tmp_path / "rows.csv", tmp_path / "scored.csv"
    raw.to_csv(src, index=False)
    twinpipe("predict", "--model", model, "--input", str(src), "--output", str(dst))
    scored = pd.read_csv(dst)
    assert len(scored) == len(raw) and scored["probability"].between(0, 1).all()
    assert list(scored.columns[:-1]) == list(raw.columns)
    # The served model alone scores the eval rows as TFMA did (TFMA's AUC is bucketed).
    auc = roc_auc_score(rows["delayed"], scored["probability"])
    assert auc == pytest.approx(first["stages"]["evaluate"]["auc"], abs=0.01)


def test_predict_rejects_bad_rows_clearly(runs, tmp_path):
    out, first, _ = runs
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"carrier": ["UA"], "origin": ["EWR"]}).to_csv(bad, index=False)
    proc = twinpipe("predict", "--model", first["stages"]["push"]["pushed_path"], "--input",
                    str(bad), "--output", str(tmp_path / "o.csv"), check=False)
    assert proc.returncode == 1
    assert "bad.csv breaks the contract 'flights'" in proc.stderr and "Traceback" not in proc.stderr
    # every missing column in one finding, not one clause each
    assert "schema on table: observed" in proc.stderr and "columns missing: " in proc.stderr
    assert "distance" in proc.stderr and proc.stderr.count("schema on") == 1
    assert not (tmp_path / "o.csv").exists()


def test_compiled_kfp_spec_has_the_stage_dag(tmp_path):
    from pipelines.compile import load_pipeline_spec

    twinpipe_here("compile", "--stack", "tfx", "--target", "kfp", "--out", str(tmp_path))
    spec = load_pipeline_spec(tmp_path / "tfx-kfp.json")
    tasks = spec.root.dag.tasks
    assert set(tasks) == {"land", "ingest", "statistics", "schema", "anomalies", "validate_gate",
                          "transform", "train", "baseline", "eval_schema", "evaluate", "push"}
    deps = {name: set(t.dependent_tasks) for name, t in tasks.items()}
    assert "land" in deps["ingest"] and not deps["land"]  # the landing ingest comes first
    assert "validate_gate" in deps["transform"]          # no training before the gate passes
    # TFDV's anomalies + skew input, and (its condition) the landing ingest's answer
    assert {"anomalies", "statistics", "land"} == deps["validate_gate"]
    assert {"train", "baseline", "eval_schema"} <= deps["evaluate"]
    # Arrow end to end: the Trainer reads ExampleGen's Parquet payload, not a Transform output
    assert "ingest" in deps["train"] and "transform" in deps["train"]
    assert {"evaluate", "train"} <= deps["push"]
    # Self-hosted KFP v2 cannot run TFX's Resolver: the spec must not contain one.
    assert not any("resolver" in name.lower() for name in spec.components)
    assert (tmp_path / "tfx-schema.pbtxt").exists()
    assert (tmp_path / "tfx-eval-schema.pbtxt").exists()
