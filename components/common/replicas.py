"""Per-replica training reports: which host a rank ran on and a digest of the weights it ended with.

Data-parallel training (torch DDP, TF ``MultiWorkerMirroredStrategy``) must end with the same
weights on every replica; only one replica (rank 0 / the chief) saves the model, so a replica
that silently diverged (a missed all-reduce, a different initialisation) would go unnoticed.
When ``TWINPIPE_REPLICA_REPORT_DIR`` is set, every replica of either stack writes
``<dir>/<stack>-rank-<rank>.json`` (rank, world size, hostname and address, the rendezvous it
joined, a SHA-256 over its final weights) so a test or an operator can compare replicas across
hosts. Unset (the default), nothing is computed or written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import numpy as np

REPORT_DIR_ENV = "TWINPIPE_REPLICA_REPORT_DIR"

log = logging.getLogger("twinpipe.replicas")


def report_dir() -> Path | None:
    """The folder replica reports go to, or None when reports are off."""
    value = os.environ.get(REPORT_DIR_ENV, "").strip()
    return Path(value) if value else None


def weights_digest(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of each array, in the order given.

    Bitwise: replicas of one data-parallel job apply identical all-reduced updates, so their
    weights must match exactly, not just approximately.
    """
    h = hashlib.sha256()
    for name, array in named_arrays:
        a = np.ascontiguousarray(array)
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def host_identity() -> dict[str, str]:
    """This process's hostname and the address it resolves to (what peers would dial)."""
    hostname = socket.gethostname()
    try:
        addr = socket.gethostbyname(hostname)
    except OSError:
        addr = ""
    return {"hostname": hostname, "addr": addr}


def write_replica_report(stack: str, rank: int, world: int, digest: str, **extra) -> Path | None:
    """Writes this replica's report when :data:`REPORT_DIR_ENV` is set; returns its path."""
    folder = report_dir()
    if folder is None:
        return None
    doc = {"stack": stack, "rank": rank, "world_size": world, **host_identity(),
           "weights_sha256": digest, **extra}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stack}-rank-{rank}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)
    log.info("[%s][train][rank %d] weights sha256 %s on %s (%s), world %d", stack, rank, digest,
             doc["hostname"], doc["addr"], world)
    return path
