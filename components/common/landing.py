"""Deliveries and their ledger: what lands in a landing folder is taken exactly once.

A **delivery** is one entry of the landing folder: a CSV/Parquet file, or a folder of them (a
producer's upload of one batch). Entries whose name starts with ``.`` or ``_`` are uploads in
progress and wait. A delivery is known by the SHA-256 of its content (a folder: its files'
relative paths and bytes), so the same bytes under another name are a **redelivery**: recognised,
reported, and never ingested twice.

The **ledger** lives under the data root, one record per delivery content::

    OUT/ledger/<sha256>.json   {"sha256", "names", "bytes", "state": "taken" | "done",
                                "run", "host", "pid", "taken_at", "verdicts", "spans", ...}

A run **takes** a delivery by creating its record, race-free (``O_CREAT|O_EXCL`` locally, an
upload with ``ifGenerationMatch=0`` on ``gs://``: :func:`components.common.storage.create_new`):
of two overlapping runs only one gets each delivery. When the run ends it records the verdicts
and the spans (``done``). A run killed in between leaves a ``taken`` record: the next run takes
the delivery again once the holder is known to be gone (a dead process on this host) or its lease
ran out (another host: :data:`LEASE_S`). The spans it may have published meanwhile were published
atomically and are replaced by the retake's, so nothing is lost or half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from components.common import storage

LEDGER = "ledger"
TAKEN, DONE = "taken", "done"
# How long a ``taken`` record of a process on another host holds before a run may take its
# delivery again (a scheduled run's wall time is minutes; hours leave room for a slow one).
LEASE_S = float(os.environ.get("TWINPIPE_LEASE_S", 6 * 3600))
SUFFIXES = (".csv", ".parquet", ".csv.gz")


@dataclass(frozen=True)
class Delivery:
    name: str       # its name in the landing folder
    path: str       # where it is (a local path)
    sha256: str     # its content's digest
    bytes: int


def _is_data(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def content_sha256(path: str | Path) -> tuple[str, int]:
    """(SHA-256, size in bytes) of a file's bytes, or of a folder's data files (each file's path
    relative to the folder, then its bytes, in path order; hidden files left out)."""
    p = Path(path)
    h, size = hashlib.sha256(), 0
    files = [p] if p.is_file() else sorted(
        f for f in p.rglob("*") if f.is_file() and _is_data(f.name)
        and not any(part.startswith(".") for part in f.relative_to(p).parts))
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    return h.hexdigest(), size


def find_deliveries(landing: str | Path) -> list[Delivery]:
    """The deliveries in ``landing``, in name order (producers name them so: dates, sequence
    numbers). A missing landing folder holds none."""
    root = Path(landing)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and not _is_data(entry.name):
            continue
        sha, size = content_sha256(entry)
        if size:
            found.append(Delivery(entry.name, str(entry), sha, size))
    return found


def _alive(record: dict) -> bool:
    """Whether the run holding a ``taken`` record may still be running."""
    if record.get("host") == socket.gethostname() and record.get("pid"):
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(record.get("taken_at", 0)) < LEASE_S


class Ledger:
    """The delivery records under ``data_root``/ledger (a local folder or ``gs://`` prefix)."""

    def __init__(self, data_root: str | Path):
        self.root = storage.join(data_root, LEDGER)

    def path(self, sha256: str) -> str:
        return storage.join(self.root, f"{sha256}.json")

    def get(self, sha256: str) -> dict | None:
        p = self.path(sha256)
        return storage.read_json(p) if storage.exists(p) else None

    def records(self) -> list[dict]:
        if not storage.isdir(self.root):
            return []
        return [storage.read_json(storage.join(self.root, n)) for n in sorted(storage.listdir(self.root))
                if n.endswith(".json")]

    def take(self, delivery: Delivery, run: str) -> tuple[bool, dict | None]:
        """Takes ``delivery`` for ``run``: (True, None) when this run got it; (False, record) when
        it was taken before (the record says by which run, and whether it is done)."""
        doc = {"sha256": delivery.sha256, "names": [delivery.name], "bytes": delivery.bytes,
               "state": TAKEN, "run": run, "host": socket.gethostname(), "pid": os.getpid(),
               "taken_at": time.time()}
        if storage.create_new(self.path(delivery.sha256), json.dumps(doc, indent=2).encode()):
            return True, None
        record = self.get(delivery.sha256)
        if record is None:  # removed between the two calls: try once more
            return self.take(delivery, run)
        if record["state"] == TAKEN and not _alive(record):
            # The holder died before it finished: one retake wins (its own marker, race-free).
            marker = storage.join(self.root, f".retake-{delivery.sha256}-{record['run']}")
            if storage.create_new(marker, run.encode()):
                doc["retook_from"] = record["run"]
                doc["names"] = sorted(set(record.get("names", [])) | {delivery.name})
                storage.write_json(self.path(delivery.sha256), doc)
                return True, None
        if delivery.name not in record.get("names", []):  # the same bytes under another name
            record = record | {"names": [*record.get("names", []), delivery.name]}
            storage.write_json(self.path(delivery.sha256), record)
        return False, record

    def finish(self, sha256: str, **fields) -> dict:
        """Marks the delivery done with ``fields`` (verdicts, spans, ...); returns the record."""
        record = (self.get(sha256) or {"sha256": sha256}) | fields | {"state": DONE,
                                                                       "done_at": time.time()}
        storage.write_json(self.path(sha256), record)
        return record

    def release(self, sha256: str, run: str) -> None:
        """Gives back a delivery this run took but could not start on (e.g. the input is not
        readable yet): the next run takes it again."""
        record = self.get(sha256)
        if record is not None and record.get("run") == run and record["state"] == TAKEN:
            storage.rm(self.path(sha256))
