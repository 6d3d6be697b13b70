"""The compiled torch spec is what runs, as a schedule runs it: `twinpipe compile --stack torch
--target kfp` with the data root (landing prefix, spans, ledger, registry) and the pipeline root on
a real GCS JSON-API emulator, the YAML loaded back with ``kfp.components.load_component_from_file``
and run three times by ``kfp.local`` (SubprocessRunner), as three scheduled runs:

1. a delivery in the landing prefix: the first step takes exactly it, ingests it into a spans
   generation in the bucket, and the model trained on it is pushed;
2. nothing new: "no new delivery", nothing trained or pushed;
3. the same bytes delivered again under another name: recognised, not ingested, no retraining.

Asserted in the bucket (ledger, spans, registry) and in the tasks' artifacts. kfp.local keeps
artifacts under a LOCAL pipeline root only (``kfp.local.init`` makes the root an absolute local
path; components write ``artifact.path``): the compiled ``gs://`` pipeline root is checked in the
spec, and the runs' artifact root is a local folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from components.common import registry, storage
from components.common.contract import load_contract
from components.common.sources import load_default_table
from tests.integration.cli import ROOT, twinpipe

pytestmark = pytest.mark.integration


def _contract_in_bucket(data: str) -> str:
    """The packaged contract with a blessing that accepts any model (1 epoch on a sample is about
    where the bytes go, not model quality), under ``data/contracts``; returns its URI."""
    doc = yaml.safe_load((ROOT / "components/common/flights.yaml").read_text())
    doc["blessing"] = {"metric": "auc", "lower_bound": 0.0, "max_regression": 1.0}
    contract_uri = f"{data}/contracts/lenient.yaml"
    storage.write_text(contract_uri, yaml.safe_dump(doc))
    return contract_uri


def _delivery(tmp: Path) -> Path:
    """January 2013, 3,000 real rows in the contract's input shape: one producer's delivery."""
    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    path = tmp / "2013-01.parquet"
    table[table["month"] == 1].sample(3000, random_state=1).to_parquet(path, index=False)
    return path


def _executor_outputs(run_root: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "executor_output.json").read_text())
            for d in run_root.iterdir() if (d / "executor_output.json").is_file()}


def _last_run(artifacts: Path) -> dict[str, dict]:
    run_root = max(artifacts.iterdir(), key=lambda d: d.stat().st_mtime)
    return _executor_outputs(run_root) | {"root": {"path": run_root}}


def _landed(out: dict) -> dict:
    return out["land"]["artifacts"]["record"]["artifacts"][0]["metadata"]


# kfp.local's notes that gs:// importer URIs are not artifact.path-readable (the stages read
# .uri through the storage layer) and that the image is custom (it holds this environment).
@pytest.mark.filterwarnings("ignore:It looks like you're using the remote file")
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task")
def test_compiled_torch_spec_takes_each_delivery_once_under_kfp_local(gcs_bucket, tmp_path,
                                                                      monkeypatch):
    from kfp import local
    from kfp.components import load_component_from_file

    data, root = f"{gcs_bucket}/data", f"{gcs_bucket}/root"
    contract_uri = _contract_in_bucket(data)
    twinpipe("compile", "--stack", "torch", "--target", "kfp", "--out", str(tmp_path / "spec"),
             "--data-root", data, "--pipeline-root", root, "--workers", "1")
    spec_path = tmp_path / "spec" / "torch-kfp.yaml"
    spec = yaml.safe_load_all(spec_path.read_text()).__next__()
    assert spec["defaultPipelineRoot"] == root
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["landing_uri"]["defaultValue"] == f"{data}/landing"
    assert params["spans_uri"]["defaultValue"] == f"{data}/spans"
    assert params["push_destination"]["defaultValue"] == f"{data}/torch/pushed"
    # the first step is the landing ingest; every other task waits for its answer
    tasks = spec["root"]["dag"]["tasks"]
    assert "dependentTasks" not in tasks["land"]
    for name in ("ingest", "validate", "train", "evaluate"):
        assert "land" in tasks[name]["dependentTasks"], name
    assert "evaluate" in tasks["push"]["dependentTasks"]

    pipeline = load_component_from_file(str(spec_path))
    # Task processes run `python3 -m kfp.dsl.executor_main`: this environment's python, this
    # checkout's package; STORAGE_EMULATOR_HOST (gcs_bucket) reaches them the same way.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)  # a pathlib bug would write ./gs:/...: checked below
    artifacts = tmp_path / "artifacts"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(artifacts),
               raise_on_error=True)

    def scheduled_run(label):
        # Only what a local run must change: the contract in the bucket, 1 epoch, and training
        # through TorchX local_cwd inside the task (train_job '') instead of the cluster job.
        pipeline(contract_path=contract_uri, epochs=1, batch_size=256, train_job="",
                 run_label=label)
        return _last_run(artifacts)

    # 1. a new delivery: taken, ingested into the bucket's spans, trained, pushed
    delivery = _delivery(tmp_path)
    storage.upload(delivery, f"{data}/landing/2013-01.parquet")
    out = scheduled_run("run-1")
    landed = _landed(out)
    assert landed["status"] == "new delivery" and landed["spans"] == [201301]
    assert [d["name"] for d in landed["taken"]] == ["2013-01.parquet"]
    (record,) = [storage.read_json(u) for u in storage.glob(f"{data}/ledger/torch/*.json")]
    assert record["state"] == "done" and record["verdict"] == "ingested"
    assert record["run"].startswith("run-1") and record["spans"] == [201301]
    assert storage.exists(f"{data}/spans/CURRENT.json")
    versions = registry.versions(f"{data}/torch/pushed")
    assert len(versions) == 1
    pushed = storage.read_json(storage.join(str(versions[0]), registry.PUSH_RECORD))
    assert pushed["run"] == "run-1" and pushed["stack"] == "torch"
    assert {"model.onnx", "signature.json"} <= set(storage.listdir(str(versions[0])))
    ev_metrics = out["evaluate"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    blessing = out["evaluate"]["artifacts"]["blessing"]["artifacts"][0]
    assert 0.0 < ev_metrics["auc"] <= 1.0
    assert blessing["metadata"]["blessed"] is True
    assert blessing["metadata"]["auc"] == pytest.approx(ev_metrics["auc"], abs=1e-6)
    assert json.loads(Path(blessing["uri"]).read_text())["blessed"] is True
    assert out["train"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]["samples_per_s"] > 0
    run_root = out["root"]["path"]
    gate = json.loads((run_root / "validate" / "validation" / "gate.json").read_text())
    assert gate["spans"] == [201301]
    generation = storage.read_json(f"{data}/spans/CURRENT.json")["generation"]
    manifest = storage.read_json(f"{data}/spans/{generation}/manifest.json")
    assert manifest["source"] == f"{data}/landing/2013-01.parquet"  # not the task's scratch copy

    # 2. nothing new: no new delivery, the spans and the served model stay as they were
    out = scheduled_run("run-2")
    assert _landed(out)["status"] == "no new delivery" and _landed(out)["taken"] == []
    train = json.loads((out["root"]["path"] / "train" / "record" / "train.json").read_text())
    assert train["skipped"] == "no new delivery"
    push = json.loads((out["root"]["path"] / "push" / "record" / "push.json").read_text())
    assert push["pushed"] is False
    assert registry.versions(f"{data}/torch/pushed") == versions
    assert storage.read_json(f"{data}/spans/CURRENT.json")["generation"] == generation

    # 3. the same bytes under another name: recognised, never ingested twice, no retraining
    storage.upload(delivery, f"{data}/landing/2013-01-resent.parquet")
    out = scheduled_run("run-3")
    landed = _landed(out)
    assert landed["status"] == "no new delivery"
    (seen,) = [d for d in landed["seen_before"] if d["name"] == "2013-01-resent.parquet"]
    assert seen["first_name"] == "2013-01.parquet" and seen["run"].startswith("run-1")
    assert registry.versions(f"{data}/torch/pushed") == versions
    assert storage.read_json(f"{data}/spans/CURRENT.json")["generation"] == generation
    (record,) = [storage.read_json(u) for u in storage.glob(f"{data}/ledger/torch/*.json")]
    assert record["names"] == ["2013-01.parquet", "2013-01-resent.parquet"]
    assert not (tmp_path / "gs:").exists() and not (ROOT / "gs:").exists()
