"""The per-worker thread knob both stacks' training workers honour.

Every training process (a TF worker, a DDP rank) pins its intra-op threads to
:func:`threads_per_worker`: an explicit value, else ``TWINPIPE_THREADS`` from the environment,
else the cores shared out between the workers. The scaling probe sets it so that 1 and N workers
run at the same threads per worker (otherwise 1 worker x 2 threads would be compared with
2 workers x 1 thread, mixing intra-op threading with the collective's cost).
"""

from __future__ import annotations

import contextlib
import os

THREADS_ENV = "TWINPIPE_THREADS"
#: The TF workers' all-reduce implementation when set (``RING``): see :func:`worker_gpu_env`.
COLLECTIVE_ENV = "TWINPIPE_TF_COLLECTIVE"


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` processes on this machine: ``threads`` when given,
    else ``TWINPIPE_THREADS``, else ``cores // workers`` (at least 1)."""
    if threads:
        return max(1, int(threads))
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    return default_threads(workers)


def default_threads(workers: int, cores: int | None = None) -> int:
    """The stacks' own rule: the cores (this machine's unless given) shared out between
    ``workers`` processes, at least 1 each."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


@contextlib.contextmanager
def threads_env(threads: int | None):
    """``TWINPIPE_THREADS`` set to ``threads`` for the ``with`` block (nothing when None), and
    restored as it was after it: for the processes started and the code run meanwhile."""
    if not threads:
        yield
        return
    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


def gpu_count() -> int:
    """How many GPUs ``nvidia-smi`` lists on this machine (0 without it)."""
    return len(query_gpus("index"))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries: that variable's list
    when set (empty when set empty), else one index per GPU ``nvidia-smi`` lists (none without it)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    return query_gpus("index")


def query_gpus(fields: str) -> list[str]:
    """One line per GPU of ``nvidia-smi --query-gpu=FIELDS`` (CSV, no header); none without
    nvidia-smi or when it fails."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def worker_gpu_env(index: int, workers: int, gpus: list[str]) -> dict[str, str]:
    """Environment for local worker ``index`` of ``workers`` on a machine with ``gpus``: each
    worker sees its own share of the GPUs (``CUDA_VISIBLE_DEVICES``), as a pod would be given its
    own. Without the split every TF worker would take every GPU (and all their memory). More
    workers than GPUs share them round-robin, with memory growth so that they fit side by side and
    ring collectives (:data:`COLLECTIVE_ENV`: NCCL refuses two ranks on one device). Nothing without
    GPUs."""
    if not gpus:
        return {}
    if workers <= len(gpus):
        k = len(gpus) // workers
        return {"CUDA_VISIBLE_DEVICES": ",".join(gpus[index * k:(index + 1) * k])}
    return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)], "TF_FORCE_GPU_ALLOW_GROWTH": "true",
            COLLECTIVE_ENV: "RING"}
