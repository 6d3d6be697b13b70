"""One run per output folder: an advisory lock that names its holder.

``OUT/.twinpipe.lock`` is locked with ``flock`` for the whole run and holds the holder's pid, host,
command and start time. A second run into the same folder stops at once with a message naming the
holder. The kernel drops a ``flock`` when its process dies, so a lock left by a killed run is taken
over by the next one (which says so). The file is never deleted: deleting it would let a second
process lock a new file while a first still holds the old one.

On object storage (``--out gs://...``) there is no flock: the lock is the object
``OUT/.twinpipe.lock``, created with the precondition ``ifGenerationMatch=0`` (GCS refuses the
upload when the object exists — the service's own mutex idiom; :func:`storage.create_new`). It
holds the same holder record plus a random token, and is deleted on release (only while it still
holds our token). Nothing notices a holder that was killed: its lock object stays, and the next
run is refused with a message saying which object to delete once that holder is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from components.common import storage
from components.common.errors import TwinpipeError

log = logging.getLogger("twinpipe.lock")

LOCK_FILE = ".twinpipe.lock"


class BusyError(TwinpipeError):
    """Another run holds the output folder."""


class RunLock:
    """``with RunLock(out, "run"):`` — exclusive use of ``out`` for one twinpipe command."""

    def __init__(self, out_dir: str | Path, command: str):
        self.remote = storage.is_remote(out_dir)
        self.url = storage.join(out_dir, LOCK_FILE)
        self.path = Path(out_dir) / LOCK_FILE if not self.remote else None
        self.command = command
        self.fd: int | None = None
        self.token: str | None = None        # ours, inside the lock object (object storage)
        self.took_over: dict | None = None   # the dead holder's record, when there was one

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.time()}

    @staticmethod
    def _since(h: dict) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if h.get(
            "started") else "an unknown time"

    def _acquire_object(self) -> RunLock:
        token = uuid.uuid4().hex
        if not storage.create_new(self.url, json.dumps(self._record() | {"token": token}).encode()):
            try:
                h = storage.read_json(self.url)
            except (OSError, ValueError):
                h = {}
            raise BusyError(
                f"{storage.parent(self.url)} is in use by another twinpipe {h.get('command', 'run')} "
                f"(pid {h.get('pid', '?')} on host {h.get('host', '?')}, started "
                f"{self._since(h)}): its lock object {self.url} exists; one run per output folder "
                f"at a time. Wait for it to finish, or use another --out; if that run is known to "
                f"be dead (object storage cannot tell), delete {self.url} and run again.")
        self.token = token
        return self

    def _holder(self) -> dict:
        assert self.path is not None
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        if self.remote:
            return self._acquire_object()
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self._holder()
            since = self._since(h)
            raise BusyError(
                f"{self.path.parent} is in use by another twinpipe {h.get('command', 'run')} (pid "
                f"{h.get('pid', '?')} on host {h.get('host', '?')}, started {since}); one run per "
                f"output folder at a time. Wait for it to finish, or use another --out.") from None
        left = self._holder()
        if left.get("pid"):
            self.took_over = left
            log.warning("[lock] took over %s: its holder (pid %s on %s, twinpipe %s) is gone",
                        self.path, left["pid"], left.get("host"), left.get("command"))
        record = self._record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.token is not None:
            try:
                mine = storage.read_json(self.url).get("token") == self.token
            except (OSError, ValueError):
                mine = False
            if mine:
                storage.rm(self.url)
            self.token = None
            return
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty file: nobody holds it, nothing to take over
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
