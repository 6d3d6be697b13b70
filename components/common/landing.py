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

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.common import storage
from components.common.contract import Contract
from components.common.errors import GateError, TwinpipeError
from components.common.ingest import IngestResult, ingest_gated
from components.common.layout import MANIFEST_JSON, SPANS, VALIDATION
from components.common.publish import publish_remote, stage_history

log = logging.getLogger("twinpipe.ingest")

LEDGER = "ledger"
TAKEN, DONE = "taken", "done"
# How long a ``taken`` record of a process on another host holds before a run may take its
# delivery again (a scheduled run's wall time is minutes; hours leave room for a slow one).
LEASE_S = float(os.environ.get("TWINPIPE_LEASE_S", 6 * 3600))
SUFFIXES = (".csv", ".parquet", ".csv.gz")


@dataclass(frozen=True)
class Delivery:
    name: str       # its name in the landing folder
    path: str       # where it is (a local path; a landing on object storage is copied to scratch)
    sha256: str     # its content's digest
    bytes: int
    url: str = ""   # where it landed, when that is not ``path`` (gs://...)


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


def find_deliveries(landing: str | Path, scratch: str | Path | None = None) -> list[Delivery]:
    """The deliveries in ``landing``, in name order (producers name them so: dates, sequence
    numbers). A missing landing folder holds none. A ``gs://`` landing prefix is copied into
    ``scratch`` first (its bytes are hashed, and ingest reads local files)."""
    if storage.is_remote(landing):
        if scratch is None:
            raise ValueError("a landing prefix on object storage needs a scratch folder")
        found = []
        for name in storage.listdir(landing):
            url = storage.join(landing, name)
            if name.startswith((".", "_")) or (storage.isfile(url) and not _is_data(name)):
                continue
            local = storage.download(url, Path(scratch) / name)
            sha, size = content_sha256(local)
            if size:
                found.append(Delivery(name, local, sha, size, url))
        return found
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

    def __init__(self, data_root: str | Path, consumer: str = ""):
        # ``consumer``: a pipeline that takes every delivery for itself (each compiled stack's
        # pipeline runs on its own schedule: ``ledger/<consumer>/``); "" for a local run, which
        # takes each delivery once for both stacks.
        self.root = storage.join(data_root, LEDGER, *([consumer] if consumer else []))

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


NEW, NOTHING_NEW, RETRAIN = "new delivery", "no new delivery", "retrain"
PUBLISHED = "spans as published"  # no landing folder: the later steps run on the spans there


@dataclass
class Landed:
    """What :func:`land` did: ``status`` (:data:`NEW`, :data:`NOTHING_NEW`, or :data:`RETRAIN`:
    nothing new, but asked to train again on the current spans), the deliveries it took and those
    taken before (redeliveries among them), and the ingest's result when it ingested."""

    status: str
    run: str
    taken: list[dict] = field(default_factory=list)
    seen_before: list[dict] = field(default_factory=list)
    ingested: IngestResult | None = None

    @property
    def proceed(self) -> bool:
        """Whether the stages after it run (validate, train, evaluate, push)."""
        return self.status != NOTHING_NEW

    def to_dict(self) -> dict:
        return {"status": self.status, "run": self.run, "taken": self.taken,
                "seen_before": self.seen_before,
                "spans": self.ingested.span_numbers if self.ingested else [],
                "rows": self.ingested.rows if self.ingested else 0}


def run_id(label: str = "") -> str:
    """A run's name in the ledger: its label (a scheduled run's job name) or the time, and the
    process."""
    return f"{label or time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}"


def land(landing: str, data_root: str, contract: Contract, run: str, *, consumer: str = "",
         retrain: bool = False, pipeline: str = "twinpipe", report_dir: str | None = None,
         **ingest_kwargs) -> Landed:
    """The pipelines' first step: takes the deliveries in ``landing`` that no run of ``consumer``
    took before (each content once, race-free), ingests them through the shared ingest (screen,
    quarantine, spans published atomically under ``data_root/spans``, history updated) and records
    each in the ledger under ``data_root``. Both may be local folders or ``gs://`` prefixes.

    With nothing new the status is :data:`NOTHING_NEW` (or :data:`RETRAIN` when ``retrain``) and
    no span changes. A delivery the ingest refuses (a :class:`TwinpipeError`: the whole table
    breaks the contract, or it cannot be read) is recorded ``refused`` with its reasons, alerted
    (``report_dir``, default ``data_root/validation``) and the error raised; any other failure
    gives the deliveries back to the next run (:meth:`Ledger.release`). ``landing`` '': no landing
    step (the spans were published before, e.g. by a local run's shared ingest): :data:`PUBLISHED`.
    """
    if not landing:
        return Landed(PUBLISHED, run)
    ledger = Ledger(data_root, consumer)
    with _scratch() as work:
        taken, seen = [], []
        for d in find_deliveries(landing, work / "landing"):
            got, record = ledger.take(d, run)
            if got:
                taken.append(d)
                log.info("[ingest] took delivery %s (sha256 %s, %d bytes)", d.name, d.sha256[:12],
                         d.bytes)
            else:
                seen.append({"name": d.name, "sha256": d.sha256, "run": record.get("run"),
                             "state": record["state"], "verdict": record.get("verdict"),
                             "first_name": record.get("names", [d.name])[0]})
                log.info("[ingest] %s: taken before by run %s as %s (%s)", d.name, record.get("run"),
                         seen[-1]["first_name"], record.get("verdict") or record["state"])
        if not taken:
            status = RETRAIN if retrain else NOTHING_NEW
            log.info("[ingest] %s in %s%s", NOTHING_NEW, landing,
                     ": training again on the current spans" if retrain else "")
            return Landed(status, run, seen_before=seen)
        names = [d.name for d in taken]
        spans_url = storage.join(data_root, SPANS)
        remote = storage.is_remote(data_root)
        spans = work / "spans" if remote else spans_url
        if remote:
            stage_history(spans_url, spans)
        # A landing on object storage was copied to scratch: what the user reads (messages, the
        # manifest) names the delivery's URL instead.
        named = ((str(work / "landing"), str(landing).rstrip("/")) if storage.is_remote(landing)
                 else None)
        try:
            ingested = ingest_gated(contract, spans, report_dir or storage.join(data_root, VALIDATION),
                                    pipeline=pipeline, input_path=_input_of(taken, work / "input"),
                                    **ingest_kwargs)
            if remote:
                if named:
                    ingested.source = ingested.source.replace(*named)
                    manifest = spans / MANIFEST_JSON
                    manifest.write_text(manifest.read_text().replace(*named))
                publish_remote(spans, spans_url)
                ingested.spans_dir = spans_url
        except TwinpipeError as e:  # refused: done, with its reasons (a correction is new bytes)
            if named:
                e = _renamed(e, *named)
            for d in taken:
                ledger.finish(d.sha256, run=run, verdict="refused", reasons=[str(e)[:4000]],
                              delivered_with=names)
            raise e from None
        except BaseException:
            for d in taken:
                ledger.release(d.sha256, run)
            raise
        for d in taken:
            ledger.finish(d.sha256, run=run, verdict="ingested", spans=ingested.span_numbers,
                          delivered_with=names, landed=d.url or d.path)
        return Landed(NEW, run, [{"name": d.name, "sha256": d.sha256, "bytes": d.bytes}
                                 for d in taken], seen, ingested)


def _renamed(e: TwinpipeError, local: str, url: str) -> TwinpipeError:
    """``e`` with the scratch copy's paths replaced by the landing URL."""
    if isinstance(e, GateError):
        return GateError(str(e).replace(local, url), e.checks, str(e.report), source=url,
                         quarantine=[str(q) for q in e.quarantine])
    new = type(e).__new__(type(e))
    new.args = (str(e).replace(local, url),)
    new.__dict__.update(e.__dict__)
    return new


def _input_of(taken: list[Delivery], folder: Path) -> str:
    """The ingest's input: the one delivery, or a folder of links to each, in their order."""
    if len(taken) == 1:
        return taken[0].path
    folder.mkdir(parents=True)
    for i, d in enumerate(taken):
        (folder / f"{i:04d}-{d.name}").symlink_to(Path(d.path).resolve())
    return str(folder)


@contextlib.contextmanager
def _scratch():
    work = Path(tempfile.mkdtemp(prefix="twinpipe-land-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
