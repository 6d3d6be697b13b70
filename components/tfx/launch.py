"""Starting and following the TFX trainer's workers: local worker processes (supervised, restarted
from backups) or the cluster job that trains them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from components.common import fault, storage
from components.common.cluster import (
    kube_client,
    run_custom_object,
    run_vertex_customjob,
)
from components.common.threads import (
    THREADS_ENV,
    threads_per_worker,
    visible_gpus,
    worker_gpu_env,
)
from components.tfx.job import TASK, TERMINAL, ClusterJob, job_name, manifest

log = logging.getLogger("twinpipe.tfx.train")


def submit_and_wait(job: ClusterJob, spec_uri: str, run_key: str, poll_s: float = 10.0) -> None:
    """Submits the training job for ``spec_uri``, streams its logs and waits for the end.

    Exercised only on a real cluster / Vertex project. Raises RuntimeError when the job ends in
    any state but success."""
    # A retried Trainer step trains the same model run again: a new name, not a 409 Conflict.
    name = job_name(f"{run_key}@{time.time_ns()}")
    body = manifest(job, name, spec_uri)
    log.info("[tfx][train] submitting %s job %s: %d worker(s)", job.launcher, name, job.replicas)
    if job.launcher == "volcano":
        api = kube_client("Volcano job", "[tfx][train]")
        run_custom_object(body, "jobs", prefix="[tfx][train]", state=volcano_state,
                          log_pod=volcano_log_pod, api_client=api, poll_s=poll_s)
    else:
        run_vertex_customjob(body, prefix="[tfx][train]", project=job.project, region=job.region)


def volcano_state(obj: dict) -> tuple[bool, str | None]:
    """(done, failure) from a Volcano Job's phase."""
    state = (obj.get("status") or {}).get("state") or {}
    phase = state.get("phase", "Pending")
    if phase not in TERMINAL:
        return False, None
    return True, None if TERMINAL[phase] else f"ended {phase}: {state.get('message', '')}"


def volcano_log_pod(core, ns: str, name: str, obj: dict) -> str | None:
    """Worker 0, the chief, once the job runs: its log is the run's (the others repeat it)."""
    running = ((obj.get("status") or {}).get("state") or {}).get("phase") == "Running"
    return f"{name}-{TASK}-0" if running else None


def launch_cluster_job(spec: dict, cluster_job: dict) -> None:
    """Writes the training spec beside the model run (object storage on a cluster, where every
    training pod reads it) and runs the cluster job that trains on it."""
    from components.tfx.launch import submit_and_wait

    job = ClusterJob.from_dict(cluster_job)
    spec_uri = storage.join(spec["model_run_dir"], TRAIN_SPEC)
    storage.write_json(spec_uri, spec)
    submit_and_wait(job, spec_uri, run_key=spec["model_run_dir"])


# TF's CPU build prints these on every start; they say nothing about the run.
_NOISE = ("Unable to register cuFFT", "Unable to register cuDNN", "Unable to register cuBLAS",
          "TF-TRT Warning", "could not open file to read NUMA node")


def _stream(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        if not any(n in line for n in _NOISE):
            sys.stderr.write(f"{prefix} {line}")


# How long the launcher lets the other workers stop after SIGTERM (one worker failed) before it
# sends SIGKILL: a MultiWorkerMirroredStrategy sibling can otherwise hang in a collective.
WORKER_GRACE_S = 5.0


@dataclass
class Supervised:
    """What :func:`supervise` saw: every process's exit code (``-N``: killed by signal N), the
    index of the first one that failed (None when all exited 0), and the ones it stopped."""

    codes: list[int]
    failed: int | None = None
    stopped: list[int] = field(default_factory=list)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(procs: list[subprocess.Popen], grace_s: float = WORKER_GRACE_S,
              poll_s: float = 0.1) -> Supervised:
    """Waits for ``procs``; as soon as one exits non-zero, the others get SIGTERM, then SIGKILL
    after ``grace_s`` seconds. Returns when every process has exited."""
    failed = None
    while failed is None:
        codes = [p.poll() for p in procs]
        failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
        if failed is None:
            if all(c is not None for c in codes):
                return Supervised(codes)  # type: ignore[arg-type]
            time.sleep(poll_s)
    stopped = [i for i, p in enumerate(procs) if p.poll() is None]
    stop(procs, grace_s)
    return Supervised([p.returncode for p in procs], failed, stopped)


def stop(procs: list[subprocess.Popen], grace_s: float = WORKER_GRACE_S) -> None:
    """SIGTERM to the running ``procs``, SIGKILL to those still running ``grace_s`` later."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# How often the local launcher relaunches the workers after one failed (as torchrun's
# --max_restarts for the torch stack): each relaunch resumes from the BackupAndRestore backup.
WORKER_MAX_RESTARTS = 3


BACKUP_PROGRESS = "progress.json"  # in the backup folder: the epochs it holds (for the logs)


def backup_dir(spec: dict) -> str | None:
    """Where :func:`fault_tolerance_callbacks` backs training up: ``backup/`` in the Trainer's
    model run folder (object storage when the run is there, so relaunched pods on other nodes
    find it), or the spec's own ``backup_dir``; None for a spec without a model run folder."""

    if spec.get("backup_dir"):
        return spec["backup_dir"]
    return storage.join(spec["model_run_dir"], "backup") if spec.get("model_run_dir") else None


def backed_up_epochs(spec: dict) -> int:
    """The epochs the backup holds (0: none yet, training would start from scratch)."""

    folder = backup_dir(spec)
    marker = storage.join(folder, BACKUP_PROGRESS) if folder else None
    if not marker or not storage.exists(marker):
        return 0
    return int(storage.read_json(marker)["epochs_done"])


def _start_workers(spec_path: str, workers: int, attempt: int, pinned: int, gpus: list[str],
                   procs: list[subprocess.Popen], threads: list[threading.Thread]) -> None:
    """Starts ``workers`` training processes on fresh localhost ports (a relaunch must not meet
    the previous attempt's sockets), each with its TF_CONFIG, their output streamed with a
    ``[tfx][train][worker i]`` prefix, pinned to ``pinned`` threads and given its own share of
    ``gpus`` when there are any (:func:`worker_gpu_env`); into ``procs``/``threads`` as they
    start, so that the caller stops those already running if a later one fails to start."""
    import portpicker

    ports = [portpicker.pick_unused_port() for _ in range(workers)]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    for i in range(workers):
        env = dict(os.environ) | worker_gpu_env(i, workers, gpus)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        env[THREADS_ENV] = str(pinned)
        env[fault.ATTEMPT_ENV] = str(attempt)
        proc = subprocess.Popen(
            [sys.executable, "-m", "components.tfx.trainer", spec_path],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        t = threading.Thread(target=_stream, args=(proc, f"[tfx][train][worker {i}]"), daemon=True)
        t.start()
        threads.append(t)


def launch_local_workers(spec: dict, workers: int, grace_s: float = WORKER_GRACE_S,
                         worker_threads: int | None = None, max_restarts: int | None = None) -> None:
    """Runs ``workers`` training processes on localhost with a shared TF_CONFIG cluster, each
    pinned to ``worker_threads`` intra-op threads (default: the tuned ``config["threads"]``, else
    :func:`threads_per_worker`).

    When one worker fails the others are stopped (:func:`supervise`): a MultiWorkerMirroredStrategy
    job cannot go on without every worker. Then, as TF recommends for that strategy, the whole
    job is relaunched, up to ``max_restarts`` times (``config["max_restarts"]``, default
    :data:`WORKER_MAX_RESTARTS`), and resumes from the ``BackupAndRestore`` backup of the last
    finished epoch. When the restarts are spent, RuntimeError names the failed worker.
    The spec file and the workers' scratch space live in one temporary folder, always removed.
    """
    if max_restarts is None:
        max_restarts = int(spec.get("config", {}).get("max_restarts", WORKER_MAX_RESTARTS))
    attempts = max_restarts + 1
    # what every attempt's workers get: the same threads and (when there are any) GPUs
    pinned = threads_per_worker(workers, worker_threads or spec.get("config", {}).get("threads"))
    gpus = visible_gpus() if workers > 1 else []
    run_dir = tempfile.mkdtemp(prefix="tfx-train-")
    try:
        spec_path = os.path.join(run_dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump({**spec, "scratch_dir": run_dir}, f)
        for attempt in range(attempts):
            procs: list[subprocess.Popen] = []
            threads: list[threading.Thread] = []
            try:
                _start_workers(spec_path, workers, attempt, pinned, gpus, procs, threads)
                outcome = supervise(procs, grace_s)
            finally:
                stop(procs, grace_s)  # an exception above (or Ctrl-C) leaves no worker running
                for t in threads:
                    t.join(timeout=5)
            if outcome.failed is None:  # every worker done: the backup has served
                folder = backup_dir(spec)
                if folder and storage.exists(folder):
                    storage.rm(folder, recursive=True)
                return
            what = f"worker {outcome.failed} {_describe(outcome.codes[outcome.failed])}"
            fault.record("failed", stack="tfx", worker=outcome.failed, attempt=attempt,
                         code=outcome.codes[outcome.failed])
            if attempt + 1 < attempts:
                epoch = backed_up_epochs(spec)
                log.warning("[tfx][train] %s; relaunching attempt %d/%d (max_restarts %d), %s",
                            what, attempt + 2, attempts, max_restarts,
                            f"resuming from the backup at epoch {epoch}" if epoch
                            else "no backup yet: from the start")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    stopped = (f"; stopped the other worker(s) {outcome.stopped}" if outcome.stopped else "")
    raise RuntimeError(
        f"[tfx][train] worker {outcome.failed} of {workers} "
        f"{_describe(outcome.codes[outcome.failed])}: multi-worker training failed after "
        f"{attempts} attempt(s) (max_restarts {max_restarts}; exit codes {outcome.codes}"
        f"{stopped}; see the [tfx][train][worker {outcome.failed}] lines above)"
    )


TRAIN_SPEC = "train-spec.json"
