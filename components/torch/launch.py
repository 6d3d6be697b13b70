"""Launching the training app: a TorchX ``dist.ddp`` AppDef here, a cluster job from a task.

TorchX's KFP adapter is KFP v1-only (and deleted upstream), so the KFP v2 train task calls
:func:`submit_training`, which submits the job its ``train_job`` parameter describes, streams its
logs with a ``[torch][train]`` prefix and waits: TorchX ``local_cwd`` without one (gloo on CPU),
TorchX ``kubernetes`` (a Volcano Job), a Kubeflow Trainer v2 ``TrainJob``, or a Vertex AI
``CustomJob`` (NCCL on GPU). The manifests come from the pure builders in ``infra.jobs``, the same
ones ``twinpipe compile`` writes out, so what is reviewed is what is submitted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from torchx import specs
from torchx.components import dist

from components.common.cluster import (
    kube_client,
    run_custom_object,
    run_vertex_customjob,
)

log = logging.getLogger("twinpipe.torch.train")

# torchrun's --max_restarts: failed ranks are restarted (and resume from the checkpoint) this often.
MAX_RESTARTS = 3


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
    module: str = "components.torch.train_app",
) -> specs.AppDef:
    """``dist.ddp`` for ``components.torch.train_app``, plus torchrun's ``--max_restarts``.

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


def run_training(app: specs.AppDef, scheduler: str = "local_cwd", cfg: dict | None = None) -> str:
    """Submits ``app``, streams its logs with a ``[torch][train]`` prefix, and waits.

    Returns:
        The final TorchX state name; raises RuntimeError unless it SUCCEEDED.
    """
    from torchx.runner import get_runner

    # local_cwd runs `torchrun` from PATH: make it this interpreter's.
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    with get_runner() as runner:
        handle = runner.run(app, scheduler=scheduler, cfg=cfg or {})
        return _follow(runner, handle, app.roles[0].name, scheduler)


def _follow(runner, handle: str, role: str, scheduler: str, wait_interval: float = 1) -> str:
    """Streams a TorchX job's logs and waits; raises RuntimeError unless it SUCCEEDED."""
    from torchx.specs.api import AppState

    log.info("[torch][train] TorchX %s job %s", scheduler, handle)
    try:
        for line in runner.log_lines(handle, role, k=0, should_tail=True):
            sys.stderr.write(f"[torch][train] {line.rstrip()}\n")
    except Exception as e:  # noqa: BLE001 — logs are best effort; the status decides
        log.info("[torch][train] log streaming stopped: %s", e)
    status = runner.wait(handle, wait_interval=wait_interval)
    state = status.state if status else AppState.UNKNOWN
    if state != AppState.SUCCEEDED:
        raise RuntimeError(f"[torch][train] TorchX job {handle} ended {state}: {status}")
    return str(state)


def submit_training(app_args: list[str], *, workers: int, train_job: str, log_dir: str) -> None:
    """Runs the training app as ``train_job`` says and waits for it to succeed.

    Args:
        app_args: the training app's own arguments (on a cluster its rows and output are object
            URIs: the job's pods share no filesystem with the calling task).
        workers: DDP ranks in all (``infra.jobs.torch_layout`` spreads them over pods).
        train_job: the job JSON ``twinpipe compile`` put in the spec (``infra.jobs``), or ``""``
            to run through TorchX ``local_cwd`` inside the calling process's machine.
        log_dir: TorchX's local log folder; for a cluster job the submitted manifest is kept
            there as ``train-job.json`` (it holds no secrets: those are ``secretKeyRef``\ s).

    Raises:
        RuntimeError: the job did not succeed. ContractError: a bad ``train_job``.
    """
    if not train_job:
        run_training(train_appdef(*app_args, workers=workers), "local_cwd", {"log_dir": log_dir})
        return
    from infra import jobs

    job = jobs.parse_train_job(train_job)
    if job["launcher"] == "torchx":
        from torchx.runner import get_runner

        info = jobs.torch_volcano_dryrun(job, app_args, workers)
        _keep(log_dir, info.request.resource)
        # TorchX 0.7.0 reads only a kubeconfig; inside the KFP task's pod there is none, so the
        # scheduler gets the in-cluster client.
        with get_runner(client=kube_client("Volcano job", "[torch][train]")) as runner:
            handle = runner.schedule(info)
            _follow(runner, handle, info._app.roles[0].name, "kubernetes", wait_interval=10)
    elif job["launcher"] == "trainjob":
        manifest = jobs.torch_trainjob(job, app_args, workers)
        _keep(log_dir, manifest)
        run_trainjob(manifest)
    else:
        manifest = jobs.torch_vertex_customjob(job, app_args, workers)
        _keep(log_dir, manifest)
        run_vertex_customjob(manifest, prefix="[torch][train]", project=job.get("project", ""),
                             region=job.get("region", ""))


def _keep(log_dir: str, manifest: dict) -> None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    (Path(log_dir) / "train-job.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def trainjob_state(obj: dict) -> tuple[bool, str | None]:
    """(done, failure) from a TrainJob's ``Complete``/``Failed`` conditions."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") == "Complete":
            return True, None
        if c.get("status") == "True" and c.get("type") == "Failed":
            return True, c.get("message", "")
    return False, None


def trainjob_log_pod(core, ns: str, name: str, obj: dict) -> str | None:
    """The TrainJob's rank-0 node pod (of its JobSet) once it has started."""
    pods = core.list_namespaced_pod(ns, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}").items
    started = sorted(p.metadata.name for p in pods
                     if p.status.phase in ("Running", "Succeeded", "Failed"))
    return started[0] if started else None


def run_trainjob(manifest: dict, *, api_client=None, poll_s: float = 10) -> str:
    """Creates the TrainJob, streams its first node's logs and waits for Complete or Failed.

    Returns:
        The job's name; raises RuntimeError when it Failed.
    """
    return run_custom_object(manifest, "trainjobs", prefix="[torch][train]", state=trainjob_state,
                             log_pod=trainjob_log_pod, api_client=api_client, poll_s=poll_s)
