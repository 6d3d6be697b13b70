"""The compiled torch spec is what runs: `twinpipe compile --stack torch --target kfp` with the
data root and pipeline root on a real GCS JSON-API emulator, the YAML loaded back with
``kfp.components.load_component_from_file`` and run by ``kfp.local`` (SubprocessRunner).

The spans (a published generation + ``CURRENT.json``), the contract and the model registry live
in the bucket; the spec's importers bring the spans and the registry in from the URIs the compile
step put in its parameter defaults. Asserted in the bucket and in the artifacts: a model version
pushed (``push.json``), the Metrics artifacts carrying auc, the blessing artifact with its
decision. kfp.local keeps artifacts under a LOCAL pipeline root only (``kfp.local.init`` makes
the root an absolute local path; components write ``artifact.path``): the compiled
``gs://`` pipeline root is checked in the spec, and the run's artifact root is a local folder.
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
from components.common.ingest import ingest
from tests.integration.cli import ROOT, twinpipe

pytestmark = pytest.mark.integration


def _data_in_bucket(data: str, tmp: Path) -> str:
    """Months 1-2 of the packaged flights (a sample) as a spans generation under ``data/spans``,
    and a contract under ``data/contracts`` whose blessing accepts any model (1 epoch on a sample
    is about where the bytes go, not model quality); returns the contract URI."""
    doc = yaml.safe_load((ROOT / "components/common/flights.yaml").read_text())
    doc["blessing"] = {"metric": "auc", "lower_bound": 0.0, "max_regression": 1.0}
    contract_uri = f"{data}/contracts/lenient.yaml"
    storage.write_text(contract_uri, yaml.safe_dump(doc))
    ingest(load_contract(), tmp / "spans", months=[1, 2], sample=3000)
    storage.upload((tmp / "spans").resolve(), f"{data}/spans/gen-1")
    storage.write_json(f"{data}/spans/CURRENT.json", {"generation": "gen-1"})
    return contract_uri


def _executor_outputs(run_root: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "executor_output.json").read_text())
            for d in run_root.iterdir() if (d / "executor_output.json").is_file()}


# kfp.local's notes that gs:// importer URIs are not artifact.path-readable (the stages read
# .uri through the storage layer) and that the image is custom (it holds this environment).
@pytest.mark.filterwarnings("ignore:It looks like you're using the remote file")
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task")
def test_compiled_torch_spec_runs_under_kfp_local_against_the_emulator(gcs_bucket, tmp_path,
                                                                       monkeypatch):
    from kfp import local
    from kfp.components import load_component_from_file

    data, root = f"{gcs_bucket}/data", f"{gcs_bucket}/root"
    contract_uri = _data_in_bucket(data, tmp_path)
    twinpipe("compile", "--stack", "torch", "--target", "kfp", "--out", str(tmp_path / "spec"),
             "--data-root", data, "--pipeline-root", root, "--workers", "1", "--span", "all")
    spec_path = tmp_path / "spec" / "torch-kfp.yaml"
    spec = yaml.safe_load_all(spec_path.read_text()).__next__()
    assert spec["defaultPipelineRoot"] == root
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["spans_uri"]["defaultValue"] == f"{data}/spans"
    assert params["push_destination"]["defaultValue"] == f"{data}/torch/pushed"

    pipeline = load_component_from_file(str(spec_path))
    # Task processes run `python3 -m kfp.dsl.executor_main`: this environment's python, this
    # checkout's package; STORAGE_EMULATOR_HOST (gcs_bucket) reaches them the same way.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)  # a pathlib bug would write ./gs:/...: checked below
    artifacts = tmp_path / "artifacts"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(artifacts),
               raise_on_error=True)
    # Only what a local run must change: the contract in the bucket, 1 epoch, and training
    # through TorchX local_cwd inside the task (train_job '') instead of the cluster job.
    pipeline(contract_path=contract_uri, epochs=1, batch_size=256, train_job="",
             run_label="compiled-kfp")

    versions = registry.versions(f"{data}/torch/pushed")
    assert len(versions) == 1
    pushed = storage.read_json(storage.join(str(versions[0]), registry.PUSH_RECORD))
    assert pushed["run"] == "compiled-kfp" and pushed["stack"] == "torch"
    assert {"model.onnx", "signature.json"} <= set(storage.listdir(str(versions[0])))

    (run_root,) = list(artifacts.iterdir())
    out = _executor_outputs(run_root)
    ev_metrics = out["evaluate"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    blessing = out["evaluate"]["artifacts"]["blessing"]["artifacts"][0]
    assert 0.0 < ev_metrics["auc"] <= 1.0
    assert blessing["metadata"]["blessed"] is True
    assert blessing["metadata"]["auc"] == pytest.approx(ev_metrics["auc"], abs=1e-6)
    assert json.loads(Path(blessing["uri"]).read_text())["blessed"] is True
    assert out["train"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]["samples_per_s"] > 0
    gate = json.loads((run_root / "validate" / "validation" / "gate.json").read_text())
    assert gate["spans"] == [201301, 201302]
    assert not (tmp_path / "gs:").exists() and not (ROOT / "gs:").exists()
