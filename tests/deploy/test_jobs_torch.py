"""The torch training jobs `twinpipe compile` writes next to each spec (torch-<target>.train-job.yaml),
compiled with a GPU (nvidia-l4 x2) for kfp (TorchX Volcano Job), kfp --launcher trainjob (Trainer
v2 TrainJob) and vertex (CustomJob): validated against the real CRDs / the Vertex API message,
GPUs only on the training pods, the image, node selector, toleration and secretKeyRef env; and
the TrainJob launcher's requests through the real kubernetes client against a loopback API."""

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from components.common.cluster import vertex_proto
from components.common.errors import ContractError
from components.torch import job as jobs
from infra.deploy import kustomize
from pipelines import crds
from pipelines.compile import compile_torch, load_compiled

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "reg.example/twinpipe/twinpipe-torch:v1-cu130"
CONTRACT = "gs://bkt/data/contracts/flights-0123456789ab.yaml"
CASES = {"kfp-torchx": ("kfp", "torchx"), "kfp-trainjob": ("kfp", "trainjob"),
         "vertex": ("vertex", "torchx")}
#: variable -> key in Secret twinpipe-alerts (k8s/base/alerts-secret.yaml documents the keys)
ALERT_VARS = {"TWINPIPE_ALERT_WEBHOOK": "webhook", "TWINPIPE_ALERT_SLACK": "slack",
              "TWINPIPE_SMTP_PASSWORD": "smtp-password", "TWINPIPE_SMTP_USER": "smtp-user",
              "TWINPIPE_ALERT_SMTP": "smtp", "TWINPIPE_ALERT_PUBSUB": "pubsub"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """case -> (compiled spec documents, train-job manifest)."""
    out = {}
    for case, (target, launcher) in CASES.items():
        d = tmp_path_factory.mktemp(case)
        spec = compile_torch(target=target, out_dir=str(d), data_root="gs://bkt/data", image=IMAGE,
                             workers=4, gpu="nvidia-l4", gpu_count=2,
                             pipeline_root="gs://bkt/pipeline_root", contract_uri=CONTRACT,
                             launcher=launcher)
        job_file = d / f"torch-{target}.train-job.yaml"
        assert job_file.read_text().startswith("# The training job")
        out[case] = (load_compiled(spec), yaml.safe_load(job_file.read_text()))
    return out


def _pods(manifest: dict) -> list[dict]:
    """The training pod specs of a Volcano Job, or the TrainJob's patched node pod."""
    if manifest["kind"] == "Job":
        return [t["template"]["spec"] for t in manifest["spec"]["tasks"]]
    (patch,) = manifest["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return [node["template"]["spec"]["template"]["spec"]]


def _assert_env(env: list[dict]) -> None:
    by_name = {e["name"]: e for e in env}
    assert by_name["TWINPIPE_CONTRACT"]["value"] == CONTRACT
    for var, key in ALERT_VARS.items():
        assert "value" not in by_name[var], var  # never a literal secret
        assert by_name[var]["valueFrom"]["secretKeyRef"] == {
            "name": "twinpipe-alerts", "key": key, "optional": True}


def test_launcher_task_stays_small(compiled):
    for spec_docs, _ in compiled.values():
        docs = copy.deepcopy(spec_docs)
        job = docs[0]["root"]["inputDefinitions"]["parameters"].pop("train_job")
        assert json.loads(job["defaultValue"])["gpu"] == 2  # the GPUs are the job's
        for executor in spec_docs[0]["deploymentSpec"]["executors"].values():
            resources = executor.get("container", {}).get("resources", {})
            assert "accelerator" not in resources, resources
        platform = spec_docs[1:] and spec_docs[1]["platforms"]["kubernetes"]["deploymentSpec"]
        assert "gke-accelerator" not in yaml.safe_dump(platform or {})
        assert "nvidia.com/gpu" not in yaml.safe_dump_all(docs)


@pytest.mark.parametrize("case", ["kfp-torchx", "kfp-trainjob"])
def test_kfp_manifest_validates_with_gpus_on_training_pods(compiled, case):
    _, manifest = compiled[case]
    crds.validate(manifest)
    pods = _pods(manifest)
    for pod in pods:
        assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
            pod["tolerations"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    if manifest["kind"] == "Job":  # TorchX: one Volcano task per node, 4 ranks = 2 pods x 2 GPUs
        assert len(pods) == 2
        for pod in pods:
            (c,) = pod["containers"]
            assert c["image"] == IMAGE
            assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
            assert "--nnodes 2 --nproc_per_node 2" in c["command"][-1]
            _assert_env(c["env"])
        assert manifest["spec"]["queue"] == "twinpipe"
    else:
        trainer = manifest["spec"]["trainer"]
        assert manifest["spec"]["runtimeRef"]["name"] == "torch-distributed"
        assert (trainer["image"], trainer["numNodes"], trainer["numProcPerNode"]) == (IMAGE, 2, 2)
        # torchrun takes nodes, ranks and rendezvous from the PET_* variables Trainer sets.
        assert trainer["command"][0] == "torchrun" and "--nnodes" not in trainer["command"]
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2"
        _assert_env(trainer["env"])


def test_vertex_customjob_parses_as_the_api_message(compiled):
    _, manifest = compiled["vertex"]
    job = vertex_proto(manifest)  # the launcher's own strict parse: unknown fields raise
    pools = job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 1]  # chief + one more node: 4 ranks on 2x2 GPUs
    for p in pools:
        assert p.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_L4
        assert (p.machine_spec.accelerator_count, p.machine_spec.machine_type) == (2, "g2-standard-24")
        assert p.container_spec.image_uri == IMAGE
        assert "--node_rank $RANK" in p.container_spec.command[-1]
        assert {e.name: e.value for e in p.container_spec.env} == {"TWINPIPE_CONTRACT": CONTRACT}
    broken = copy.deepcopy(manifest)
    broken["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorTyp"] = "NVIDIA_L4"
    with pytest.raises(json_format.ParseError, match="acceleratorTyp"):
        vertex_proto(broken)


@pytest.mark.parametrize(("case", "edit", "path"), [
    ("kfp-torchx", lambda m: m["spec"]["tasks"][0]["template"]["spec"].update(
        toleration=[{"key": "nvidia.com/gpu"}]), r"\$\.spec\.tasks\[0\]\.template\.spec"),
    ("kfp-torchx", lambda m: m["spec"]["tasks"][1]["template"]["spec"]["containers"][0]["env"][0]
     .update(valueFrom={"secretKeyRef": {"name": "twinpipe-alerts"}}),
     r"containers\[0\]\.env\[0\]\.valueFrom\.secretKeyRef.*'key' is a required"),
    ("kfp-trainjob", lambda m: m["spec"]["trainer"].update(numNodes="2"),
     r"\$\.spec\.trainer\.numNodes: '2' is not of type 'integer'"),
    ("kfp-trainjob", lambda m: m["spec"].pop("runtimeRef"), r"'runtimeRef' is a required"),
])
def test_validation_catches_a_broken_manifest(compiled, case, edit, path):
    manifest = copy.deepcopy(compiled[case][1])
    edit(manifest)
    with pytest.raises(crds.CrdError, match=path):
        crds.validate(manifest)


def test_layout_and_bad_train_job():
    cpu = {"launcher": "trainjob", "image": IMAGE, "cpu": 4, "memMB": 8192, "gpu": 0}
    assert jobs.torch_layout(cpu, 3) == (1, 3)
    assert jobs.torch_layout({**cpu, "gpu": 4}, 6) == (2, 4)
    crds.validate(jobs.torch_trainjob(cpu, ["--train", "gs://b/r"], 3))
    with pytest.raises(ContractError, match="not JSON"):
        jobs.parse_train_job("{launcher: torchx")
    with pytest.raises(ContractError, match="launcher 'slurm'"):
        jobs.parse_train_job(json.dumps({**cpu, "launcher": "slurm"}))
    with pytest.raises(ContractError, match="without gpu_type"):
        jobs.parse_train_job({**cpu, "gpu": 1})


class _FakeTrainerApi(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for one TrainJob: it completes on the second read."""

    requests: list = []
    reads = 0

    def _send(self, body: dict | str, status: int = 200) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(("POST", self.path, body))
        self._send({**body, "metadata": {**body["metadata"], "name": "twinpipe-train-x1"}}, 201)

    def do_GET(self):  # noqa: N802
        type(self).requests.append(("GET", self.path, None))
        if "/trainjobs/" in self.path:
            type(self).reads += 1
            done = [{"type": "Complete", "status": "True"}] if self.reads > 1 else []
            self._send({"metadata": {"name": "twinpipe-train-x1"}, "status": {"conditions": done}})
        elif self.path.split("?")[0].endswith("/log") and "follow=true" in self.path.lower():
            self._send("epoch 1 loss 0.5\nepoch 2 loss 0.4\n")
        else:
            self._send({"kind": "PodList", "apiVersion": "v1", "items": [
                {"metadata": {"name": "twinpipe-train-x1-node-0-0"}, "status": {"phase": "Running"}}]})

    def log_message(self, *args):
        pass


def test_trainjob_launcher_creates_follows_and_waits(capfd):
    from kubernetes import client

    from components.torch.launch import run_trainjob

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeTrainerApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conf = client.Configuration()
        conf.host = f"http://127.0.0.1:{server.server_port}"
        job = {"launcher": "trainjob", "image": IMAGE, "cpu": 4, "memMB": 8192, "gpu": 0,
               "env": {"TWINPIPE_CONTRACT": CONTRACT}}
        manifest = jobs.torch_trainjob(job, ["--train", "gs://b/r"], 2)
        name = run_trainjob(manifest, api_client=client.ApiClient(conf), poll_s=0.01)
    finally:
        server.shutdown()
    assert name == "twinpipe-train-x1"
    method, path, body = _FakeTrainerApi.requests[0]
    assert (method, path) == ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/twinpipe/trainjobs")
    assert body == manifest
    paths = [p for _, p, _ in _FakeTrainerApi.requests]
    assert any("labelSelector=jobset.sigs.k8s.io%2Fjobset-name%3Dtwinpipe-train-x1" in p for p in paths)
    assert "[torch][train] epoch 2 loss 0.4" in capfd.readouterr().err


class _FakeVolcanoApi(_FakeTrainerApi):
    """Just enough of the Kubernetes API for TorchX's kubernetes scheduler: one Volcano Job."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(("POST", self.path, body))
        self._send(body, 201)

    def do_GET(self):  # noqa: N802
        type(self).requests.append(("GET", self.path, None))
        if self.path.split("?")[0].endswith("/log"):
            self._send("2026-11-29T00:00:00Z epoch 1 auc 0.71\n")
        else:
            self._send({"status": {"state": {"phase": "Completed"}}})


def test_torchx_launcher_submits_the_patched_volcano_job(tmp_path, monkeypatch, capfd):
    from components.torch.launch import submit_training

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVolcanoApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "loop",
        "clusters": [{"name": "loop", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "loop", "context": {"cluster": "loop", "user": "u"}}]}))
    # kubernetes reads $KUBECONFIG when first imported; point its default there as well.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    job = {"launcher": "torchx", "image": IMAGE, "cpu": 4, "memMB": 8192, "gpu": 1,
           "gpu_type": "nvidia-l4", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
           "namespace": "twinpipe", "queue": "twinpipe", "service_account": "twinpipe-runner",
           "env": {"TWINPIPE_CONTRACT": CONTRACT}}
    try:
        submit_training(["--train", "gs://b/r", "--out", "gs://b/m"], workers=2,
                        train_job=json.dumps(job), log_dir=str(tmp_path / "logs"))
    finally:
        server.shutdown()
    method, path, body = _FakeVolcanoApi.requests[0]
    assert (method, path) == ("POST", "/apis/batch.volcano.sh/v1alpha1/namespaces/twinpipe/jobs")
    crds.validate(body)
    assert body == json.loads((tmp_path / "logs" / "train-job.json").read_text())
    assert len(body["spec"]["tasks"]) == 2  # 2 ranks on 1-GPU pods: 2 nodes
    for task in body["spec"]["tasks"]:
        pod = task["template"]["spec"]
        assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
        assert pod["serviceAccountName"] == "twinpipe-runner"
        _assert_env(pod["containers"][0]["env"])
    assert "[torch][train] 2026-11-29T00:00:00Z epoch 1 auc 0.71" in capfd.readouterr().err


@pytest.mark.parametrize("case", ["kfp-torchx", "kfp-trainjob"])
def test_kfp_job_names_objects_the_overlay_creates(compiled, case):
    """Namespace, service account, Volcano queue and PriorityClass exist in k8s/overlays/dev, or
    the job would be refused or never scheduled on the cluster."""
    have = {(d["kind"], d["metadata"]["name"]) for d in kustomize(ROOT / "k8s/overlays/dev")}
    _, manifest = compiled[case]
    assert ("Namespace", manifest["metadata"]["namespace"]) in have
    for pod in _pods(manifest):
        assert ("ServiceAccount", pod["serviceAccountName"]) in have
    if manifest["kind"] == "Job":
        assert ("Queue", manifest["spec"]["queue"]) in have
        assert ("PriorityClass", manifest["spec"]["priorityClassName"]) in have
