"""The TFX Trainer's cluster jobs as `twinpipe compile` writes them: a Volcano Job (kfp) and a
Vertex CustomJob, validated against the real Volcano CRD and the aiplatform CustomJob proto.

Submitting them needs a cluster or a Vertex project (neither is reachable here): what runs here is
everything up to the API call — the compile, the manifests, the spec the pods read from object
storage, and the TF_CONFIG roles each pod derives.
"""

from __future__ import annotations

import json

import pytest
import yaml

from components.common import alerts, storage
from components.common.cluster import vertex_proto
from components.common.errors import ContractError
from components.tfx import job as tfx_job
from components.tfx import launch
from components.tfx.model import cluster_role
from components.tfx.trainer import _main as trainer_main
from infra.cli import main
from pipelines import crds

WORKERS = 3


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Both targets compiled once with an L4 x2 GPU request and 3 workers."""
    out = tmp_path_factory.mktemp("compiled")
    for target in ("kfp", "vertex"):
        extra = ["--project", "p-1", "--beam-runner", "direct"] if target == "vertex" else []
        assert main(["compile", "--stack", "tfx", "--target", target, "--out", str(out),
                     "--image", "europe-docker.pkg.dev/p/r/twinpipe-tfx:1", "--workers",
                     str(WORKERS), "--gpu", "nvidia-l4", "--gpu-count", "2", *extra]) == 0
    return out


def _containers(job: dict) -> list[dict]:
    return [c for t in job["spec"]["tasks"] for c in t["template"]["spec"]["containers"]]


def test_volcano_job_validates_and_carries_gpu_on_training_pods(compiled):
    job = yaml.safe_load((compiled / "tfx-kfp.train-job.yaml").read_text())
    crds.validate(job)  # the real batch.volcano.sh Job CRD, strictly
    (task,) = job["spec"]["tasks"]
    assert task["replicas"] == WORKERS and job["spec"]["minAvailable"] == WORKERS
    # TF_CONFIG comes from Volcano's tensorflow plugin (per task), never from our env
    assert "--worker=worker" in job["spec"]["plugins"]["tensorflow"]
    assert "svc" in job["spec"]["plugins"]
    # a failed or evicted pod restarts the whole job (every worker rejoins a new ring and
    # resumes from the BackupAndRestore backup), at most max_restarts times
    assert {p["event"]: p["action"] for p in job["spec"]["policies"]} == {
        "PodFailed": "RestartJob", "PodEvicted": "RestartJob"}
    assert job["spec"]["maxRetry"] == tfx_job.ClusterJob.max_restarts == 3
    (container,) = _containers(job)
    assert "TF_CONFIG" not in {e["name"] for e in container["env"]}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    pod = task["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert container["command"][:3] == ["python", "-m", "components.tfx.trainer"]
    # alert sinks from the Secret, never literal values
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(refs) == set(alerts.ALERT_SECRET_KEYS)
    assert {r["name"] for r in refs.values()} == {alerts.ALERTS_SECRET}


def test_compiled_tfx_spec_asks_no_gpu_and_submits_the_same_job(compiled):
    """The Trainer (KFP launcher of the job) stays small; the job config in its custom_config is
    the one the manifest was built from."""
    spec = json.loads((compiled / "tfx-kfp.json").read_text())["pipelineSpec"]
    executors = json.dumps(spec["deploymentSpec"])
    assert "nvidia" not in executors and "accelerator" not in executors
    custom = _trainer_custom_config(spec)
    job = tfx_job.ClusterJob.from_dict(custom["cluster_job"])
    rebuilt = tfx_job.manifest(job, tfx_job.job_name("<model run>"))
    assert rebuilt == yaml.safe_load((compiled / "tfx-kfp.train-job.yaml").read_text())


def _trainer_custom_config(spec: dict) -> dict:
    """The Trainer's custom_config as compiled into the pipeline (a JSON string constant)."""
    value = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["custom_config"]
    return json.loads(value["runtimeValue"]["constantValue"]["stringValue"])


def test_vertex_customjob_parses_strictly_with_chief_and_worker_pools(compiled):
    body = yaml.safe_load((compiled / "tfx-vertex.train-job.yaml").read_text())
    job = vertex_proto(body)  # json_format.ParseDict: unknown/mistyped fields raise
    chief, workers = job.job_spec.worker_pool_specs
    assert job.job_spec.scheduling.restart_job_on_worker_restart  # all replicas restart together
    assert chief.replica_count == 1 and workers.replica_count == WORKERS - 1
    for pool in (chief, workers):
        assert pool.machine_spec.accelerator_type.name == "NVIDIA_L4"
        assert pool.machine_spec.accelerator_count == 2
        assert pool.machine_spec.machine_type == "g2-standard-24"  # Vertex pairs L4s with G2 only
        assert list(pool.container_spec.command[:3]) == ["python", "-m", "components.tfx.trainer"]
    with pytest.raises(Exception, match="replica_cnt|replicaCnt|no field"):
        vertex_proto({**body, "jobSpec": {"workerPoolSpecs": [{"replicaCnt": "1"}]}})


def test_tf_config_roles_from_volcano_and_vertex():
    """Each pod's role as the trainer derives it from the TF_CONFIG its launcher writes."""
    volcano = {"cluster": {"worker": [f"j-worker-{i}.j:2222" for i in range(3)]}}
    roles = [cluster_role({**volcano, "task": {"type": "worker", "index": i}}) for i in range(3)]
    assert roles == [(3, 0, True), (3, 1, False), (3, 2, False)]
    vertex = {"cluster": {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"]}}
    roles = [cluster_role({**vertex, "task": {"type": "chief", "index": 0}})] + [
        cluster_role({**vertex, "task": {"type": "worker", "index": i}}) for i in range(2)]
    assert roles == [(3, 0, True), (3, 1, False), (3, 2, False)]  # one chief, global indices
    assert cluster_role({}) == (1, 0, True)


def test_bad_cluster_job_config_is_one_paragraph():
    with pytest.raises(ContractError, match="launcher is 'slurm'"):
        tfx_job.ClusterJob.from_dict({"launcher": "slurm", "image": "i", "replicas": 2})
    with pytest.raises(ContractError, match="replicas is 0"):
        tfx_job.ClusterJob.from_dict({"launcher": "volcano", "image": "i", "replicas": 0})
    with pytest.raises(ContractError, match=r"unknown key\(s\) \['gpus'\]"):
        tfx_job.ClusterJob.from_dict({"launcher": "volcano", "image": "i", "replicas": 1, "gpus": 1})
    with pytest.raises(ContractError, match="max_restarts is -1"):
        tfx_job.ClusterJob.from_dict({"launcher": "volcano", "image": "i", "replicas": 1,
                                     "max_restarts": -1})


def test_no_restarts_abort_on_volcano_and_disable_vertex_retries():
    job = tfx_job.ClusterJob.from_dict({"launcher": "volcano", "image": "i", "replicas": 2,
                                       "max_restarts": 0})
    volcano = tfx_job.tfx_volcano_job(job, "j")
    crds.validate(volcano)
    assert volcano["spec"]["maxRetry"] == 0
    vertex = vertex_proto(tfx_job.tfx_vertex_customjob(job, "j"))
    assert vertex.job_spec.scheduling.disable_retries
    assert not vertex.job_spec.scheduling.restart_job_on_worker_restart


def test_training_pods_read_their_spec_from_object_storage(gcs_bucket):
    """The pods run `python -m components.tfx.trainer gs://.../train-spec.json`: the spec is read
    through the storage layer (a bad one fails before TensorFlow is imported)."""
    uri = storage.join(gcs_bucket, "pipeline_root", "train", "train-spec.json")
    storage.write_json(uri, {"train_files": ["gs://x/*"], "config": {}})
    with pytest.raises(ValueError, match=r"train-spec.json lacks \['eval_files'"):
        trainer_main(["trainer", uri])


def test_submitting_without_a_cluster_says_so(monkeypatch, tmp_path):
    """Here there is no Kubernetes API: the Trainer's submission fails with one paragraph."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    job = tfx_job.ClusterJob(launcher="volcano", image="i", replicas=2)
    with pytest.raises(RuntimeError, match=r"no Kubernetes API to submit the Volcano job"):
        launch.submit_and_wait(job, "gs://b/run/train-spec.json", run_key="gs://b/run")
