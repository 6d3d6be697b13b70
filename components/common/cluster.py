"""Submitting a training job to a cluster and following it: one mechanism for both stacks.

The torch train task (Trainer v2 ``TrainJob``, Vertex ``CustomJob``) and the TFX Trainer (Volcano
``Job``, Vertex ``CustomJob``) create a custom resource or a Vertex job, stream one pod's log with
their ``[stack][train]`` prefix and wait for a terminal state. What differs per resource — how its
status reads, which pod's log is the run's — is passed in. Exercised against a real cluster only
there; here, through the real ``kubernetes`` client against a recording API on loopback.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from components.common.errors import ContractError

log = logging.getLogger("twinpipe.cluster")

#: ``state(obj) -> (done, failure)``: done once terminal; ``failure`` is the reason, None on success.
State = Callable[[dict], "tuple[bool, str | None]"]
#: ``log_pod(core_api, namespace, name, obj) -> pod name | None`` (None: no pod to follow yet).
LogPod = Callable[[object, str, str, dict], "str | None"]


#: The images' non-root user (infra/docker/Dockerfile.{tfx,torch}).
IMAGE_UID = 10001


def pod_security() -> dict:
    """A training pod's securityContext: the twinpipe namespace enforces the ``restricted`` Pod
    Security profile."""
    return {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
            "fsGroup": IMAGE_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict:
    """A training container's securityContext under the same profile."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True}


def kube_client(what: str, prefix: str):
    """The API client: in-cluster inside a pod (a pipeline task), else the local kubeconfig;
    RuntimeError in one paragraph when neither is there (``what``: the job, for the message)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as e:
            raise RuntimeError(
                f"{prefix} no Kubernetes API to submit the {what} to ({e}): the compiled kfp spec trains "
                "on a cluster; run the pipeline there, or locally with `twinpipe run`, which "
                "trains in its own processes.") from None
    return client.ApiClient()


def run_custom_object(manifest: dict, plural: str, *, prefix: str, state: State, log_pod: LogPod,
                      api_client=None, poll_s: float = 10) -> str:
    """Creates ``manifest`` (a namespaced custom resource), streams the log of the pod
    ``log_pod`` names once there is one, and polls until ``state`` says it is done.

    Returns:
        The created object's name; RuntimeError when it ended in failure.
    """
    from kubernetes import client

    api = api_client or kube_client(manifest["kind"], prefix)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    group, version = manifest["apiVersion"].split("/")
    ns = manifest["metadata"]["namespace"]
    name = custom.create_namespaced_custom_object(group, version, ns, plural,
                                                  manifest)["metadata"]["name"]
    what = f"{manifest['kind']} {ns}/{name}"
    log.info("%s %s created", prefix, what)
    streamed = False
    while True:
        obj = custom.get_namespaced_custom_object(group, version, ns, plural, name)
        done, failure = state(obj)
        if not streamed and (pod := log_pod(core, ns, name, obj)):
            stream_pod_log(core, ns, pod, prefix)
            streamed = True
        if done:
            if failure is not None:
                raise RuntimeError(f"{prefix} {what} failed: {failure}")
            log.info("%s %s complete", prefix, what)
            return name
        time.sleep(poll_s)


def stream_pod_log(core, ns: str, pod: str, prefix: str) -> None:
    """Follows ``pod``'s log to stderr, each line under ``prefix`` (best effort: the job's
    status, not its log, decides the outcome)."""
    log.info("%s logs of %s", prefix, pod)
    try:
        resp = core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False)
        for raw in resp.stream():
            for line in raw.decode(errors="replace").splitlines():
                sys.stderr.write(f"{prefix} {line}\n")
    except Exception as e:  # noqa: BLE001
        log.info("%s log streaming of %s stopped: %s", prefix, pod, e)


def run_vertex_customjob(body: dict, *, prefix: str, project: str = "", region: str = "",
                         poll_s: float = 30) -> str:
    """Creates the Vertex AI CustomJob ``body`` (REST form) and waits; Vertex streams its logs to
    Cloud Logging. Project and region: the arguments, else ``CLOUD_ML_PROJECT_ID`` /
    ``CLOUD_ML_REGION`` (Vertex sets them inside its jobs, where a pipeline task runs).

    Returns:
        The job's resource name; RuntimeError unless it succeeded.
    """
    from google.cloud import aiplatform_v1


    project = project or os.environ.get("CLOUD_ML_PROJECT_ID", "")
    region = region or os.environ.get("CLOUD_ML_REGION", "")
    if not (project and region):
        raise ContractError(f"{prefix} a Vertex CustomJob needs a project and a region: run the "
                            "task on Vertex (it sets CLOUD_ML_PROJECT_ID and CLOUD_ML_REGION) or "
                            "compile with --project and --region.")
    svc = aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    created = svc.create_custom_job(parent=f"projects/{project}/locations/{region}",
                                    custom_job=vertex_proto(body))
    log.info("%s Vertex CustomJob %s created; its logs are in Cloud Logging", prefix, created.name)
    done = {aiplatform_v1.JobState.JOB_STATE_SUCCEEDED, aiplatform_v1.JobState.JOB_STATE_FAILED,
            aiplatform_v1.JobState.JOB_STATE_CANCELLED}
    while (job := svc.get_custom_job(name=created.name)).state not in done:
        time.sleep(poll_s)
    if job.state != aiplatform_v1.JobState.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"{prefix} Vertex CustomJob {created.name} ended {job.state.name}: "
                           f"{job.error.message}")
    return created.name


def vertex_proto(body: dict):
    """``body`` parsed strictly into ``aiplatform_v1.CustomJob`` (unknown or mistyped fields
    raise): what Vertex's API accepts, checked offline."""
    from google.cloud.aiplatform_v1.types import CustomJob
    from google.protobuf import json_format

    return CustomJob.wrap(json_format.ParseDict(body, CustomJob.pb(CustomJob())))
