"""The TFX Trainer's cluster job: real multi-worker training on pods of their own.

Locally the Trainer starts its workers as processes beside itself
(:func:`components.tfx.trainer.launch_local_workers`). On a cluster that would put every "worker"
inside the one Trainer pod, so with a cluster job config in its ``custom_config`` the Trainer
submits a job instead, streams its logs and waits:

* ``volcano`` (self-hosted KFP on GKE): a Volcano Job (``batch.volcano.sh/v1alpha1``) with one
  task ``worker`` of ``replicas`` pods and the ``tensorflow`` plugin, which writes each pod's
  TF_CONFIG (cluster = every worker's stable DNS name from the ``svc`` plugin, task = its index).
  Kubeflow Trainer v2 has no TensorFlow runtime, hence Volcano.
* ``vertex`` (Vertex AI Pipelines): a CustomJob with a chief pool (1 replica) and a worker pool
  (``replicas - 1``); Vertex sets TF_CONFIG (``chief`` + ``worker``) on every replica.

Each pod runs ``python -m components.tfx.trainer SPEC_URI``: the training spec the Trainer wrote
to object storage. GPU requests sit on these pods only; the Trainer pod only waits.

The builders are pure (``tfx_volcano_job``, ``tfx_vertex_customjob``) and their output is what
``twinpipe compile`` writes next to the spec and what the tests validate against the Volcano CRD
and the Vertex CustomJob proto. :func:`submit_and_wait` talks to a real cluster or Vertex and is
exercised only there (no Kubernetes or GCP project is reachable from the test machine).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from components.common.alerts import secret_env
from components.common.cluster import (
    container_security,
    pod_security,
)
from components.common.errors import ContractError

log = logging.getLogger("twinpipe.tfx.train")

LAUNCHERS = ("volcano", "vertex")
TASK = "worker"
TF_PORT = 2222
# Set by the Trainer at run time (the spec it wrote); the compiled manifest shows this stand-in.
SPEC_ENV = "TWINPIPE_TRAIN_SPEC"
SPEC_AT_RUN_TIME = "<written by the train step at run time>"
TERMINAL = {"Completed": True, "Failed": False, "Aborted": False, "Terminated": False}


@dataclass(frozen=True)
class ClusterJob:
    """Where and how the training pods run (the Trainer's ``custom_config["cluster_job"]``)."""

    launcher: str
    image: str
    replicas: int
    cpu: str = "4"
    memory: str = "16Gi"
    gpu: int = 0
    gpu_type: str = ""                      # GKE accelerator name (kfp) / Vertex enum (vertex)
    machine_type: str = "n1-standard-8"     # Vertex only
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)
    namespace: str = "twinpipe"
    queue: str = "twinpipe"
    service_account: str = "twinpipe-runner"
    contract_uri: str = ""
    project: str = ""                        # Vertex only
    region: str = "us-central1"              # Vertex only
    max_restarts: int = 3                    # whole-job relaunches after a worker failed

    @classmethod
    def from_dict(cls, doc: dict) -> ClusterJob:
        """Checks a job config; a ContractError names the bad key."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ContractError(f"[tfx][train] cluster job config: unknown key(s) {unknown}; "
                                f"known: {sorted(known)}.")
        if doc.get("launcher") not in LAUNCHERS:
            raise ContractError(f"[tfx][train] cluster job config: launcher is "
                                f"{doc.get('launcher')!r}; one of {', '.join(LAUNCHERS)}.")
        if not doc.get("image"):
            raise ContractError("[tfx][train] cluster job config: 'image' is required (the TFX "
                                "image every training pod runs).")
        replicas = doc.get("replicas")
        if not isinstance(replicas, int) or replicas < 1:
            raise ContractError(f"[tfx][train] cluster job config: replicas is {replicas!r}; "
                                "it must be a whole number of workers, at least 1.")
        if int(doc.get("gpu", 0)) > 0 and not doc.get("gpu_type"):
            raise ContractError("[tfx][train] cluster job config: gpu > 0 needs gpu_type.")
        restarts = doc.get("max_restarts", 0)
        if not isinstance(restarts, int) or restarts < 0:
            raise ContractError(f"[tfx][train] cluster job config: max_restarts is {restarts!r}; "
                                "it must be a whole number, 0 or more.")
        return cls(**doc)


def job_name(run_key: str) -> str:
    """A Kubernetes-safe name, unique per training run (``run_key``: the model run folder)."""
    return f"twinpipe-tfx-train-{hashlib.sha256(run_key.encode()).hexdigest()[:10]}"


def _command() -> list[str]:
    # Kubernetes expands $(VAR) in args from the container's env: the spec URI is set per run.
    return ["python", "-m", "components.tfx.trainer", f"$({SPEC_ENV})"]


def _pod_env(job: ClusterJob, spec_uri: str) -> list[dict]:
    env = [{"name": SPEC_ENV, "value": spec_uri}]
    if job.contract_uri:
        env.append({"name": "TWINPIPE_CONTRACT", "value": job.contract_uri})
    return env + secret_env()


def tfx_volcano_job(job: ClusterJob, name: str, spec_uri: str = SPEC_AT_RUN_TIME) -> dict:
    """The Volcano Job: one ``worker`` task of ``job.replicas`` pods, TF_CONFIG from the plugin.

    ``minAvailable`` = replicas (gang scheduling: MultiWorkerMirroredStrategy needs every worker
    up, or the first collective waits forever). A pod failing or evicted restarts the whole job
    (``RestartJob``: the collective cannot continue without it, and every worker must rejoin
    the new ring), at most ``job.max_restarts`` times (``maxRetry``); the new pods resume from
    the ``BackupAndRestore`` backup in the model run folder on object storage. Past that the
    job fails and the Trainer reports it.
    """
    resources: dict = {"requests": {"cpu": job.cpu, "memory": job.memory},
                       "limits": {"cpu": job.cpu, "memory": job.memory}}
    if job.gpu:
        resources["requests"]["nvidia.com/gpu"] = str(job.gpu)
        resources["limits"]["nvidia.com/gpu"] = str(job.gpu)
    pod_spec: dict = {
        "serviceAccountName": job.service_account,
        "restartPolicy": "Never",
        "priorityClassName": "twinpipe-training",
        "securityContext": pod_security(),
        "containers": [{
            "name": "tensorflow",
            "image": job.image,
            "command": _command(),
            "env": _pod_env(job, spec_uri),
            "ports": [{"name": "tfjob-port", "containerPort": TF_PORT}],
            "resources": resources,
            "securityContext": container_security(),
        }],
    }
    if job.node_selector:
        pod_spec["nodeSelector"] = dict(job.node_selector)
    if job.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in job.tolerations]
    return {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": job.namespace,
                     "labels": {"app.kubernetes.io/part-of": "twinpipe", "twinpipe/stack": "tfx",
                                "twinpipe/stage": "train"}},
        "spec": {
            "schedulerName": "volcano",
            "queue": job.queue,
            "minAvailable": job.replicas,
            "maxRetry": job.max_restarts,
            "plugins": {"svc": [], "tensorflow": [f"--worker={TASK}", f"--port={TF_PORT}"]},
            "policies": [{"event": "PodFailed", "action": "RestartJob"},
                         {"event": "PodEvicted", "action": "RestartJob"}],
            "tasks": [{
                "name": TASK,
                "replicas": job.replicas,
                "policies": [{"event": "TaskCompleted", "action": "CompleteJob"}],
                "template": {"metadata": {"labels": {"twinpipe/stage": "train"}},
                             "spec": pod_spec},
            }],
        },
    }


def tfx_vertex_customjob(job: ClusterJob, name: str, spec_uri: str = SPEC_AT_RUN_TIME) -> dict:
    """The Vertex CustomJob (REST/JSON form of ``aiplatform_v1.CustomJob``): pool 0 is the
    chief (1 replica), pool 1 the other ``replicas - 1`` workers; Vertex writes TF_CONFIG.

    Vertex has no Kubernetes Secrets: alert secrets reach Vertex jobs through the pipeline's own
    settings, only the contract URI travels here.

    Fault tolerance: Vertex restarts a failed replica itself; ``restartJobOnWorkerRestart``
    restarts every replica with it (MultiWorkerMirroredStrategy's ring needs them all anew), and
    they resume from the ``BackupAndRestore`` backup on object storage. ``max_restarts`` 0 turns
    Vertex's retries off (``disableRetries``); Vertex has no other bound on them."""
    machine: dict = {"machineType": job.machine_type}
    if job.gpu:
        machine.update(acceleratorType=job.gpu_type, acceleratorCount=job.gpu)
    env = [{"name": SPEC_ENV, "value": spec_uri}]
    if job.contract_uri:
        env.append({"name": "TWINPIPE_CONTRACT", "value": job.contract_uri})
    # No $(VAR) expansion on Vertex: the URI goes into the args directly.
    container = {"imageUri": job.image, "command": _command()[:-1] + [spec_uri], "env": env}
    pools = [{"machineSpec": machine, "replicaCount": "1", "containerSpec": container}]
    if job.replicas > 1:
        pools.append({"machineSpec": dict(machine), "replicaCount": str(job.replicas - 1),
                      "containerSpec": dict(container)})
    scheduling: dict = {"restartJobOnWorkerRestart": True}
    if job.max_restarts == 0:
        scheduling = {"disableRetries": True}
    spec: dict = {"workerPoolSpecs": pools, "scheduling": scheduling}
    if job.service_account and "@" in job.service_account:  # a GCP SA; the KSA name means nothing
        spec["serviceAccount"] = job.service_account
    return {"displayName": name, "jobSpec": spec,
            "labels": {"twinpipe-stack": "tfx", "twinpipe-stage": "train"}}


def manifest(job: ClusterJob, name: str, spec_uri: str = SPEC_AT_RUN_TIME) -> dict:
    """The manifest ``job.launcher`` submits."""
    build = tfx_volcano_job if job.launcher == "volcano" else tfx_vertex_customjob
    return build(job, name, spec_uri)


