"""Launching the training app: a TorchX ``dist.ddp`` AppDef here, a cluster job from a task.

TorchX's KFP adapter is KFP v1-only (and deleted upstream), so the KFP v2 train task calls
:func:`submit_training`, which submits the job its ``train_job`` parameter describes, streams its
logs with a ``[torch][train]`` prefix and waits: TorchX ``local_cwd`` without one (gloo on CPU),
TorchX ``kubernetes`` (a Volcano Job), a Kubeflow Trainer v2 ``TrainJob``, or a Vertex AI
``CustomJob`` (NCCL on GPU). The manifests come from the pure builders in ``components.torch.job``, the same
ones ``twinpipe compile`` writes out, so what is reviewed is what is submitted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from torchx import specs

from components.common import rows, storage
from components.common.cluster import (
    kube_client,
    run_custom_object,
    run_vertex_customjob,
)
from components.common.contract import load_contract
from components.common.errors import ContractError
from components.common.runinfo import record_stage
from components.torch import job as jobs
from components.torch.export import export, signature_doc
from components.torch.job import train_appdef
from components.torch.trainer import check_shard, load_model

log = logging.getLogger("twinpipe.torch.train")


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
        workers: DDP ranks in all (``components.torch.job.torch_layout`` spreads them over pods).
        train_job: the job JSON ``twinpipe compile`` put in the spec (``components.torch.job``), or ``""``
            to run through TorchX ``local_cwd`` inside the calling process's machine.
        log_dir: TorchX's local log folder; for a cluster job the submitted manifest is kept
            there as ``train-job.json`` (it holds no secrets: those are ``secretKeyRef``\ s).

    Raises:
        RuntimeError: the job did not succeed. ContractError: a bad ``train_job``.
    """
    if not train_job:
        run_training(train_appdef(*app_args, workers=workers), "local_cwd", {"log_dir": log_dir})
        return

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


def train_app_args(contract, train_path: str, out: str, epochs: int, batch_size: int,
                   learning_rate: float, hidden_units: str = "64,32",
                   fail_once_after_epoch: int = -1) -> list[str]:
    """The training app's arguments (``components.torch.trainer``) for ``contract``'s columns:
    the train stage's, and the tuning sweep's (comparison/tuning), which runs the app directly."""
    return [
        "--train", train_path, "--out", out,
        "--numeric", ",".join(c.name for c in contract.numeric_features),
        "--categorical", ",".join(c.name for c in contract.categorical_features),
        "--label", contract.label.name, "--epochs", str(epochs), "--batch-size", str(batch_size),
        "--learning-rate", str(learning_rate), "--hidden-units", hidden_units,
        "--fail-once-after-epoch", str(fail_once_after_epoch),
    ]


def train_stage(
    train_path: str, model_dir: str, contract_path: str, workers: int, epochs: int,
    batch_size: int, learning_rate: float, hidden_units: str = "64,32",
    scheduler: str = "local_cwd", fail_once_after_epoch: int = -1, record_dir: str = "",
    scheduler_options: str = "", train_job: str = "", job_out: str = "",
) -> float:
    """Launches the DDP app, then writes the exports (ONNX, .pt2, TorchScript; see
    :mod:`components.torch.export`) into ``model_dir``.

    With ``train_job`` empty the app runs through TorchX ``scheduler`` (``local_cwd`` here) on
    ``train_path`` and writes into ``model_dir/train``. ``scheduler_options`` are TorchX scheduler
    settings as ``key=value,...``. With ``train_job`` (the cluster job's JSON, see
    ``pipelines.compile.train_job_spec``) the job runs on its own pods through
    ``components.torch.submit_training``: they share no filesystem with this task, so
    ``train_path`` must then be an object URI and the app writes to ``job_out`` (a URI too, e.g. the
    model artifact's ``uri + "/train"``), which is copied back here for the export.
    """

    t0 = time.time()
    contract = load_contract(contract_path or None)
    out = Path(model_dir)
    work = out / "train"
    if train_job and not (storage.is_remote(train_path) and storage.is_remote(job_out)):
        raise ContractError(
            f"[torch][train] a cluster train job (train_job) needs object URIs for its rows and "
            f"output, got {train_path!r} and {job_out!r}: the training pods share no filesystem "
            "with the launcher task. Run the pipeline with pipeline_root on gs://.")
    if train_job:
        local = [f for f in rows.files(train_path) if not storage.is_remote(f)]
        if local:
            raise ContractError(
                f"[torch][train] the rows reference {train_path} names local files ({local[0]} and "
                f"{len(local) - 1} more): the training pods cannot read them. Put the spans on "
                "object storage (spans_uri gs://...).")
    if not train_job:
        # The app checks this too; here it stops before torchrun would restart a doomed job.
        check_shard(rows.count(train_path), workers)
    app_args = train_app_args(contract, train_path, job_out if train_job else str(work), epochs,
                              batch_size, learning_rate, hidden_units, fail_once_after_epoch)
    if train_job:
        submit_training(app_args, workers=workers, train_job=train_job,
                               log_dir=str(out / "job_logs"))
        storage.download(job_out, work)
    else:
        cfg = dict(kv.split("=", 1) for kv in scheduler_options.split(",") if kv)
        if scheduler == "local_cwd":
            cfg.setdefault("log_dir", str(out / "torchx_logs"))
        run_training(train_appdef(*app_args, workers=workers), scheduler=scheduler,
                            cfg=cfg)
    model, prep, metrics = load_model(work)
    t_export = time.time()
    doc = export(model, prep, out / "serving",
                 signature_doc(prep, contract.name, contract.version, contract.label.meaning))
    metrics["export_s"] = round(time.time() - t_export, 3)
    metrics["exports"] = {name: e["converted"] for name, e in doc["exports"].items()}
    metrics["model_dir"] = str(out / "serving")
    metrics["train_path"] = train_path
    metrics["wall_s"] = round(time.time() - t0, 3)
    record_stage(record_dir, "train", metrics)
    return float(metrics["samples_per_s"])
