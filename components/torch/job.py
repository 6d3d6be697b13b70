"""The training jobs the torch train step submits, as pure manifest builders (no cluster needed).

The KFP train task gets a ``train_job`` JSON (keys: ``launcher``, ``image``, ``cpu``, ``memMB``,
``gpu``, ``gpu_type``, ``node_selector``, ``tolerations``, ``namespace``, ``queue``,
``service_account``, ``env``) and submits one of these; ``twinpipe compile`` writes the same
manifest next to the spec (``torch-<target>.train-job.yaml``) so it can be reviewed and validated:

* ``torchx``: the Volcano Job of TorchX's ``kubernetes`` scheduler, from its own dry-run, patched
  where TorchX 0.7.0 has no knob (GPU node selector and toleration, ``secretKeyRef`` env, the
  restricted Pod Security profile of the twinpipe namespace);
* ``trainjob``: a Kubeflow Trainer v2 ``TrainJob`` on the ``torch-distributed`` runtime, pod
  settings through ``runtimePatches``;
* ``vertex``: a Vertex AI ``CustomJob`` (REST form) whose worker pools run torchrun; Vertex has no
  Kubernetes API, so the train task creates it through google-cloud-aiplatform.

Layout: ``workers`` is the number of DDP ranks. Without GPUs they run in one pod
(``nproc_per_node = workers``); with ``gpu`` GPUs per pod, one rank per GPU and as many pods as
it takes (``nnodes = ceil(workers / gpu)``), so GPUs never sit idle and never oversubscribe.
"""

from __future__ import annotations

import json
import math
import shlex

from torchx import specs
from torchx.components import dist

from components.common.alerts import secret_env
from components.common.cluster import (
    container_security,
    pod_security,
)
from components.common.errors import ContractError
from components.common.schedule_spec import vertex_machine_type

# torchrun's --max_restarts: failed ranks are restarted (and resume from the checkpoint) this often.
MAX_RESTARTS = 3
LAUNCHERS = ("torchx", "trainjob", "vertex")
TRAIN_MODULE = "components.torch.trainer"
RDZV_PORT = 29500
_RUNTIME = "torch-distributed"


def parse_train_job(train_job: str | dict) -> dict:
    """The ``train_job`` parameter as a dict, checked: a bad one fails before anything is submitted."""
    try:
        job = json.loads(train_job) if isinstance(train_job, str) else dict(train_job)
    except json.JSONDecodeError as e:
        raise ContractError(f"[torch][train] train_job is not JSON ({e}): give the object that "
                            "`twinpipe compile` writes, or '' to train inside the task.") from None
    if job.get("launcher") not in LAUNCHERS:
        raise ContractError(f"[torch][train] train_job launcher {job.get('launcher')!r}: one of "
                            f"{', '.join(LAUNCHERS)}.")
    missing = [k for k in ("image", "cpu", "memMB", "gpu") if k not in job]
    if missing:
        raise ContractError(f"[torch][train] train_job lacks {', '.join(missing)}: the training "
                            "pods' image and resources come from it.")
    if int(job["gpu"]) > 0 and not job.get("gpu_type"):
        raise ContractError("[torch][train] train_job asks for GPUs without gpu_type: the pods "
                            "would land on nodes that may have none.")
    return job


def torch_layout(job: dict, workers: int) -> tuple[int, int]:
    """``(nnodes, nproc_per_node)`` for ``workers`` DDP ranks (see the module docstring)."""
    gpu = int(job["gpu"])
    if gpu > 0:
        return max(1, math.ceil(workers / gpu)), gpu
    return 1, max(1, workers)


def pod_env(job: dict) -> list[dict]:
    """Literal settings (e.g. ``TWINPIPE_CONTRACT``) then the alert sinks from the Secret."""
    literal = [{"name": k, "value": str(v)} for k, v in sorted(job.get("env", {}).items())]
    return literal + secret_env()


def torch_appdef(job: dict, app_args: list[str], workers: int):
    """The TorchX ``dist.ddp`` AppDef of the training app sized by ``job``."""
    from components.torch.job import train_appdef

    nnodes, nproc = torch_layout(job, workers)
    return train_appdef(*app_args, workers=nproc, nnodes=nnodes, image=job["image"],
                        cpu=int(job["cpu"]), gpu=int(job["gpu"]), memMB=int(job["memMB"]),
                        env={k: str(v) for k, v in job.get("env", {}).items()})


def torchx_cfg(job: dict) -> dict:
    """TorchX ``kubernetes`` scheduler settings from ``job``."""
    cfg = {"queue": job.get("queue") or "twinpipe", "namespace": job.get("namespace") or "twinpipe",
           "priority_class": "twinpipe-training"}
    if job.get("service_account"):
        cfg["service_account"] = job["service_account"]
    return cfg


def torch_volcano_dryrun(job: dict, app_args: list[str], workers: int):
    """TorchX's dry-run of the ``kubernetes`` scheduler with its Volcano Job patched in place
    (``runner.schedule`` of the returned info submits exactly :func:`torch_volcano_job`)."""
    from torchx.runner import get_runner
    from torchx.schedulers.kubernetes_scheduler import sanitize_for_serialization

    with get_runner() as runner:
        info = runner.dryrun(torch_appdef(job, app_args, workers), "kubernetes", torchx_cfg(job))
    resource = sanitize_for_serialization(info.request.resource)
    resource["metadata"]["namespace"] = torchx_cfg(job)["namespace"]
    for task in resource["spec"]["tasks"]:
        spec = task["template"]["spec"]
        if job.get("node_selector"):
            spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **job["node_selector"]}
        if job.get("tolerations"):
            spec["tolerations"] = [dict(t) for t in job["tolerations"]]
        spec["securityContext"] = pod_security()
        for c in spec["containers"]:
            c["env"] = [e for e in c.get("env", []) if e["name"] not in job.get("env", {})]
            c["env"] = pod_env(job) + c["env"]
            c["securityContext"] = container_security()
    info.request.resource = resource
    return info


def torch_volcano_job(train_job: dict, app_args: list[str], workers: int) -> dict:
    """The Volcano Job (``batch.volcano.sh/v1alpha1``) the ``torchx`` launcher submits."""
    return torch_volcano_dryrun(train_job, app_args, workers).request.resource


def torchrun_command(nnodes: int, nproc: int, app_args: list[str], *, rdzv_endpoint: str,
                     node_rank: str = "") -> list[str]:
    """``torchrun`` for the app, as the container command (c10d rendezvous, restarts resume)."""
    cmd = ["torchrun", "--nnodes", str(nnodes), "--nproc_per_node", str(nproc),
           "--max_restarts", "3", "--rdzv_backend", "c10d", "--rdzv_endpoint", rdzv_endpoint]
    if node_rank:
        cmd += ["--node_rank", node_rank]
    return [*cmd, "-m", TRAIN_MODULE, *app_args]


def torch_trainjob(train_job: dict, app_args: list[str], workers: int, *,
                   name: str = "twinpipe-train") -> dict:
    """A Kubeflow Trainer v2 ``TrainJob`` on the ``torch-distributed`` ClusterTrainingRuntime.

    The runtime's torch plugin gives every node ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
    ``PET_NODE_RANK`` and ``PET_MASTER_ADDR``/``PORT`` (from ``numNodes``/``numProcPerNode``),
    which torchrun reads as its defaults, so the command is a bare ``torchrun -m`` of the app.
    Node selector, tolerations, service account and security contexts go through a
    ``runtimePatches`` entry (managed by twinpipe) on the runtime's ``node`` job; env goes in
    ``trainer.env`` (Trainer refuses env patches on the ``node`` container).
    """
    nnodes, nproc = torch_layout(train_job, workers)
    resources = {"cpu": str(train_job["cpu"]), "memory": f"{int(train_job['memMB'])}M"}
    limits = dict(resources)
    if int(train_job["gpu"]) > 0:
        resources["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(train_job["gpu"])
    pod: dict = {"securityContext": pod_security(),
                 "containers": [{"name": "node", "securityContext": container_security()}]}
    if train_job.get("service_account"):
        pod["serviceAccountName"] = train_job["service_account"]
    if train_job.get("node_selector"):
        pod["nodeSelector"] = dict(train_job["node_selector"])
    if train_job.get("tolerations"):
        pod["tolerations"] = [dict(t) for t in train_job["tolerations"]]
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"generateName": f"{name}-", "namespace": train_job.get("namespace") or "twinpipe",
                     "labels": {"app.kubernetes.io/name": name,
                                "app.kubernetes.io/managed-by": "twinpipe"}},
        "spec": {
            "runtimeRef": {"name": _RUNTIME, "kind": "ClusterTrainingRuntime",
                           "apiGroup": "trainer.kubeflow.org"},
            "trainer": {
                "image": train_job["image"],
                "command": ["torchrun", "--max_restarts", "3", "-m", TRAIN_MODULE],
                "args": list(app_args),
                "numNodes": nnodes,
                "numProcPerNode": nproc,
                "resourcesPerNode": {"requests": resources, "limits": limits},
                "env": pod_env(train_job),
            },
            "runtimePatches": [{"manager": "twinpipe.io/compile", "trainingRuntimeSpec": {
                "template": {"spec": {"replicatedJobs": [
                    {"name": "node", "template": {"spec": {"template": {"spec": pod}}}}]}}}}],
        },
    }


def torch_vertex_customjob(train_job: dict, app_args: list[str], workers: int, *,
                           name: str = "twinpipe-train") -> dict:
    """A Vertex AI ``CustomJob`` (REST form): pool 0 is the chief, pool 1 the other nodes.

    For more than one node torchrun rendezvouses at ``$MASTER_ADDR:$MASTER_PORT`` with node rank
    ``$RANK``, the variables Vertex documents for distributed PyTorch (the chief is rank 0); this
    is unverified here (no GCP project) — with a custom container check them on a real job, or
    derive them from ``CLUSTER_SPEC``, which Vertex always sets. Vertex has no Kubernetes Secrets: alert sinks
    reach these containers only as the ``env`` given (the pipeline's own alerting runs in its
    validate task), and the job runs as ``service_account`` when that is a GCP service account
    (an email), else as the project's Vertex default.
    """
    nnodes, nproc = torch_layout(train_job, workers)
    machine: dict = {"machineType": vertex_machine_type(train_job)}
    if int(train_job["gpu"]) > 0:
        machine.update(acceleratorType=train_job["gpu_type"], acceleratorCount=int(train_job["gpu"]))
    if nnodes > 1:
        run = torchrun_command(nnodes, nproc, app_args, rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT",
                               node_rank="$RANK")
    else:
        run = torchrun_command(1, nproc, app_args, rdzv_endpoint=f"localhost:{RDZV_PORT}")
    # A shell expands the rendezvous variables Vertex sets; the app's arguments stay quoted.
    text = " ".join(a if a.startswith("$") else shlex.quote(a) for a in run)
    env = [{"name": k, "value": str(v)} for k, v in sorted(train_job.get("env", {}).items())]
    pools = [{"machineSpec": dict(machine), "replicaCount": n,
              "containerSpec": {"imageUri": train_job["image"], "command": ["bash", "-c", text],
                                "env": [dict(e) for e in env]}}
             for n in ([1, nnodes - 1] if nnodes > 1 else [1])]
    spec: dict = {"workerPoolSpecs": pools}
    if "@" in train_job.get("service_account", ""):  # a GCP service account; a KSA name means nothing here
        spec["serviceAccount"] = train_job["service_account"]
    return {"displayName": name, "jobSpec": spec}


def torch_train_job_manifest(train_job: str | dict, app_args: list[str], workers: int) -> dict:
    """The manifest ``train_job``'s launcher submits."""
    job = parse_train_job(train_job)
    build = {"torchx": torch_volcano_job, "trainjob": torch_trainjob,
             "vertex": torch_vertex_customjob}[job["launcher"]]
    return build(job, app_args, workers)


def train_appdef(
    *app_args: str,
    workers: int = 1,
    nnodes: int = 1,
    image: str = "twinpipe-torch:latest",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 4096,  # noqa: N803 (TorchX's own parameter name)
    max_restarts: int = MAX_RESTARTS,
    max_retries: int = 0,
    env: dict[str, str] | None = None,
    module: str = "components.torch.trainer",
) -> specs.AppDef:
    """``dist.ddp`` for ``components.torch.trainer``, plus torchrun's ``--max_restarts``.

    Args:
        app_args: the training app's own arguments.
        workers: DDP ranks per node (``nproc_per_node``).
        nnodes: nodes (replicas); >1 needs a multi-node scheduler such as kubernetes.
        max_restarts: how often torchrun restarts failed ranks (they resume from the checkpoint).
        max_retries: scheduler-level retries of the whole job.
        module: the module torchrun runs on every rank (the scaling probe runs its own).
    """
    app = dist.ddp(
        *app_args, m=module, image=image, name="twinpipe-train",
        cpu=cpu, gpu=gpu, memMB=memMB, j=f"{nnodes}x{workers}", env=dict(env or {}),
        max_retries=max_retries,
    )
    role = app.roles[0]
    # dist.ddp has no max_restarts; torchrun takes it right after its name.
    role.args = [a.replace("torchrun ", f"torchrun --max_restarts {max_restarts} ", 1) for a in role.args]
    return app
