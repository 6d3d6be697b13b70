"""Contract, alerts and serving travel to the cluster (issue 12 items 6 and 7), on a real GCS
JSON-API emulator and the real kustomize build.

* `twinpipe compile --contract` stores the user's contract under the data root and both compiled
  specs name that URI; the stages read it back through the storage layer;
* alert sinks come from Secret twinpipe-alerts (secretKeyRef in the training jobs), whose Pub/Sub
  key each overlay sets to the topic Terraform creates;
* `twinpipe deploy` points each InferenceService's `twinpipe serve` container at its push destination
  (checked to hold a complete version, recorded as the served version).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from components.common import alerts, registry, storage
from components.common.contract import load_contract
from components.common.errors import ContractError
from components.tfx import job as tfx_job
from infra.cli import main
from infra.deploy import SERVED_VERSION, kustomize, serving_manifests
from pipelines import crds
from pipelines.compile import load_compiled

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "components" / "common" / "flights.yaml"


def _user_contract(tmp_path: Path) -> Path:
    """The packaged contract with a tighter blessing bound: a user's own, different bytes."""
    doc = yaml.safe_load(PACKAGED.read_text())
    doc["blessing"]["lower_bound"] = 0.51
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _torch_contract_default(path: Path) -> str:
    params = load_compiled(path)[0]["root"]["inputDefinitions"]["parameters"]
    return params["contract_path"]["defaultValue"]


def _tfx_gate_contract(path: Path) -> str:
    gate = json.loads(path.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]["validate_gate"]
    return gate["inputs"]["parameters"]["contract_path"]["runtimeValue"]["constantValue"]["stringValue"]


def test_compile_stores_the_contract_under_the_data_root_and_both_specs_name_it(
        gcs_bucket, tmp_path, capsys):
    mine = _user_contract(tmp_path)
    data_root = storage.join(gcs_bucket, "data")
    out = tmp_path / "compiled"
    assert main(["compile", "--stack", "both", "--target", "kfp", "--out", str(out),
                 "--contract", str(mine), "--data-root", data_root]) == 0
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()[:12]
    uri = f"{data_root}/contracts/flights-{digest}.yaml"
    assert storage.read_bytes(uri) == mine.read_bytes()  # identical bytes on the bucket
    assert f"stored at {uri}" in capsys.readouterr().out
    assert _tfx_gate_contract(out / "tfx-kfp.json") == uri
    assert _torch_contract_default(out / "torch-kfp.yaml") == uri
    job = tfx_job.ClusterJob.from_dict(json.loads(
        json.loads((out / "tfx-kfp.json").read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
        ["train"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constantValue"]
        ["stringValue"])["cluster_job"])
    assert job.contract_uri == uri
    # what every task does with it: read it back through the storage layer
    assert load_contract(uri).blessing.lower_bound == 0.51


def test_placeholder_data_root_keeps_the_contract_beside_the_spec(tmp_path, capsys):
    """No --data-root, no --project: nobody can reach the placeholder bucket, so nothing is
    uploaded; the copy lies next to the spec and the printed command publishes it."""
    mine = _user_contract(tmp_path)
    out = tmp_path / "compiled"
    assert main(["compile", "--stack", "torch", "--target", "kfp", "--out", str(out),
                 "--contract", str(mine)]) == 0
    (local,) = (out / "contracts").iterdir()
    assert local.read_bytes() == mine.read_bytes()
    uri = _torch_contract_default(out / "torch-kfp.yaml")
    assert uri == f"gs://twinpipe-artifacts/data/contracts/{local.name}"
    assert f"gsutil cp {local} {uri}" in capsys.readouterr().out


def test_missing_or_bad_contracts_are_one_paragraph(gcs_bucket, tmp_path, capsys):
    with pytest.raises(ContractError, match="does not exist"):
        load_contract(storage.join(gcs_bucket, "contracts", "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {}\n")
    assert main(["compile", "--stack", "torch", "--out", str(tmp_path / "c"), "--contract",
                 str(bad), "--data-root", storage.join(gcs_bucket, "data")]) != 0
    err = capsys.readouterr().err
    assert "key 'columns' lists no column" in err and "Traceback" not in err
    assert not storage.exists(storage.join(gcs_bucket, "data", "contracts"))


def _terraform_topic(env: str) -> str:
    """The topic id modules/platform creates for terraform/envs/<env> (google_pubsub_topic.id is
    projects/<project>/topics/<name>)."""
    tf = (ROOT / "terraform/modules/platform/main.tf").read_text()
    block = tf[tf.index('resource "google_pubsub_topic" "alerts"'):]
    pattern = re.search(r'name\s*=\s*"([^"]+)"', block).group(1)
    project = name = f"twinpipe-{env}"  # the overlays' project and Terraform name
    return f"projects/{project}/topics/" + pattern.replace("${var.name}", name)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_overlay_secret_wires_the_terraform_topic_and_jobs_reference_it(env):
    docs = kustomize(ROOT / "k8s" / "overlays" / env)
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == alerts.ALERTS_SECRET
    assert secret["stringData"]["pubsub"] == _terraform_topic(env)
    assert set(secret["stringData"]) == {"pubsub"}  # a template: no secret values in git
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert f"@twinpipe-{env}.iam" in sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    job = tfx_job.tfx_volcano_job(tfx_job.ClusterJob(launcher="volcano", image="i", replicas=2), "j")
    (container,) = job["spec"]["tasks"][0]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["TWINPIPE_ALERT_PUBSUB"] == {"name": secret["metadata"]["name"],
                                             "key": "pubsub", "optional": True}
    assert not any("value" in e and "hooks" in str(e["value"]) for e in container["env"])


def _push(dest: str, files: dict[str, bytes], run: str) -> str:
    def fill(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)

    return registry.push_atomic(dest, fill, {"stack": "tfx", "run": run})


def test_deploy_points_inference_services_at_a_destination_with_a_complete_push(gcs_bucket):
    data_root = storage.join(gcs_bucket, "data")
    docs = kustomize(ROOT / "k8s" / "overlays" / "dev")
    with pytest.raises(ContractError, match="nothing pushed to .*tfx/pushed yet"):
        serving_manifests(docs, data_root)
    files = {"saved_model.pb": b"graph", "variables/variables.index": b"idx",
             "signature.json": b"{}"}
    dest = storage.join(data_root, "tfx", "pushed")
    _push(dest, files, "r1")
    v2 = _push(dest, files, "r2")
    _push(storage.join(data_root, "torch", "pushed"), {"model.onnx": b"onnx"}, "r1")
    # a push in flight: its files are there, its push.json not yet — it must not be served
    storage.write_bytes(storage.join(dest, "999999999999999", "saved_model.pb"), b"half")

    resolved = serving_manifests(docs, data_root)
    isvc = next(d for d in resolved if d["metadata"]["name"] == "flights-tfx")
    crds.validate(isvc)  # the KServe InferenceService CRD, strictly
    (container,) = isvc["spec"]["predictor"]["containers"]
    args = container["args"]
    assert args[:3] == ["serve", "--stack", "tfx"] and args[args.index("--model") + 1] == dest
    assert isvc["metadata"]["annotations"][SERVED_VERSION] == storage.basename(v2)
    # what `twinpipe serve` loads from that destination: the whole newest complete version
    uri = registry.serving_uri(dest)
    assert uri == v2
    listed = sorted(storage.basename(f) for f in storage.find(uri))
    assert [f for f in listed if not f.startswith(".")] == [  # .claim: the registry's name claim
        "push.json", "saved_model.pb", "signature.json", "variables.index"]
    assert storage.read_json(storage.join(uri, "push.json"))["run"] == "r2"
    torch = next(d for d in resolved if d["metadata"]["name"] == "flights-torch")
    torch_dest = storage.join(data_root, "torch", "pushed")
    assert torch["spec"]["predictor"]["containers"][0]["args"][4] == torch_dest
    assert storage.exists(storage.join(registry.serving_uri(torch_dest), "model.onnx"))
    # the CLI prints the same manifests
    assert main(["deploy", "--overlay", str(ROOT / "k8s/overlays/dev"),
                 "--data-root", data_root]) == 0
