"""Training robustness end to end: a contract with only numeric features through both stacks
(train, export, evaluate, push, predict) with 2 workers whose batches are larger than their shards
(the shard is then the one batch), and a TF multi-worker launch that leaves no temporary files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from components.common.contract import DEFAULT_CONTRACT, load_contract
from components.common.sources import load_default_table
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration

PACKAGED = Path(__file__).resolve().parents[2] / "components" / "common" / DEFAULT_CONTRACT


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """3,000 real January + February 2013 rows in the contract's input shape."""
    table, _ = load_default_table(load_contract())
    return table[table["month"].isin([1, 2])].sample(3000, random_state=7).sort_index()


def _contract(tmp_path: Path, keep: str) -> Path:
    """The packaged contract with only the ``keep`` ("numeric" or "categorical") features.

    The blessing's lower bound is 0: these runs train a step or two, and the test is about the
    mechanics (a pushed model that scores), not the model's quality.
    """
    doc = yaml.safe_load(PACKAGED.read_text())
    for spec in doc["columns"].values():
        if spec.get("feature") and (spec["type"] == "string") == (keep == "numeric"):
            spec["feature"] = False
    doc["blessing"]["lower_bound"] = 0.0
    path = tmp_path / f"only-{keep}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_contract_without_categorical_features_runs_both_stacks_and_predicts(rows, tmp_path,
                                                                              monkeypatch):
    """Zero categorical features, 2 workers in both stacks, batches larger than the shards.
    (Zero numeric features: tests/unit/test_torch_train_app.py and test_tfx_trainer.py.)"""
    keep = "numeric"
    contract_path = _contract(tmp_path, keep)
    contract = load_contract(contract_path)
    numeric = [c.name for c in contract.numeric_features]
    categorical = [c.name for c in contract.categorical_features]
    assert (bool(numeric), bool(categorical)) == (keep == "numeric", keep == "categorical")
    src = tmp_path / "rows.csv"
    rows.to_csv(src, index=False)
    # The TF launcher's spec file and its workers' scratch SavedModels go under TMPDIR.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    out = tmp_path / "out"
    # 2 workers x 2,048 rows per batch > ~2,400 train rows: each torch rank's shard (~1,200 rows)
    # is smaller than its batch, and the TF global batch exceeds the split.
    twinpipe("run", "--stack", "both", "--contract", str(contract_path), "--input", str(src),
             "--sample", "3000", "--months", "1-2", "--epochs", "1", "--workers", "2",
             "--batch-size", "2048", "--no-report", "--no-scaling-probe", "--out", str(out))
    runs = {s: json.loads((out / s / "run.json").read_text()) for s in ("tfx", "torch")}
    train_rows = runs["torch"]["stages"]["ingest"]["train_rows"]
    assert 2000 < train_rows < 2 * 2048

    tr = runs["torch"]["stages"]["train"]
    assert tr["workers"] == 2 and tr["strategy"] == "DistributedDataParallel"
    assert tr["global_batch"] == 2 * (train_rows // 2)  # each rank's shard is its one batch
    assert tr["steps"] == 1 and np.isfinite(tr["final_loss"])
    tf_tr = runs["tfx"]["stages"]["train"]
    assert tf_tr["strategy"] == "MultiWorkerMirroredStrategy" and tf_tr["workers"] == 2
    assert tf_tr["steps"] == 1 and np.isfinite(tf_tr["final_loss"])
    assert not list(tmp.glob("tfx-train-*")) and not list(tmp.rglob("worker*-*"))

    eval_rows = pd.concat(pd.read_parquet(p) for p in sorted((out / "spans").glob("span-*/eval/*.parquet")))
    eval_csv = tmp_path / "eval.csv"
    eval_rows.drop(columns=["delayed"]).to_csv(eval_csv, index=False)
    for stack, run in runs.items():
        assert run["failed_stage"] is None, stack
        ev, push = run["stages"]["evaluate"], run["stages"]["push"]
        assert ev["eval_rows"] == len(eval_rows) and ev["blessed"] is True, stack
        assert push["pushed"] is True, stack
        pushed = Path(push["pushed_path"])
        sig = json.loads((pushed / "signature.json").read_text())
        if stack == "torch":
            assert sig["inputs"]["numeric"]["columns"] == numeric
            assert sig["inputs"]["categorical"]["columns"] == categorical
            assert sig["inputs"]["numeric"]["shape"] == [None, len(numeric)]
            assert sig["inputs"]["categorical"]["shape"] == [None, len(categorical)]
        else:
            features = [f["name"] for f in sig["inputs"]["examples"]["features"]]
            assert sorted(features) == sorted(numeric + categorical)
        scored_csv = tmp_path / f"scored-{stack}.csv"
        twinpipe("predict", "--model", str(pushed), "--input", str(eval_csv), "--output",
                 str(scored_csv), "--contract", str(contract_path))
        scored = pd.read_csv(scored_csv)
        assert len(scored) == len(eval_rows)
        p = scored["probability"].to_numpy()
        assert ((p > 0) & (p < 1)).all() and p.std() > 0, stack
        # predict scores with the model evaluate scored: the same AUC on the same rows
        from sklearn.metrics import roc_auc_score

        auc = roc_auc_score(eval_rows["delayed"], p)
        assert auc == pytest.approx(ev["auc"], abs=2e-3 if stack == "tfx" else 1e-6), stack
