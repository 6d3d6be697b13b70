"""The per-worker thread knob both stacks' training workers honour.

Every training process (a TF worker, a DDP rank) pins its intra-op threads to
:func:`threads_per_worker`: an explicit value, else ``TWINPIPE_THREADS`` from the environment,
else the cores shared out between the workers. The scaling probe sets it so that 1 and N workers
run at the same threads per worker (otherwise 1 worker x 2 threads would be compared with
2 workers x 1 thread, mixing intra-op threading with the collective's cost).
"""

from __future__ import annotations

import os

THREADS_ENV = "TWINPIPE_THREADS"


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` processes on this machine: ``threads`` when given,
    else ``TWINPIPE_THREADS``, else ``cores // workers`` (at least 1)."""
    if threads:
        return max(1, int(threads))
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    return max(1, (os.cpu_count() or 1) // max(1, workers))
