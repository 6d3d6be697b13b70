"""One run per output folder: an advisory lock that names its holder.

``OUT/.twinpipe.lock`` is locked with ``flock`` for the whole run and holds the holder's pid, host,
command and start time. A second run into the same folder stops at once with a message naming the
holder. The kernel drops a ``flock`` when its process dies, so a lock left by a killed run is taken
over by the next one (which says so). The file is never deleted: deleting it would let a second
process lock a new file while a first still holds the old one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from components.common.errors import TwinpipeError

log = logging.getLogger("twinpipe.lock")

LOCK_FILE = ".twinpipe.lock"


class BusyError(TwinpipeError):
    """Another run holds the output folder."""


class RunLock:
    """``with RunLock(out, "run"):`` — exclusive use of ``out`` for one twinpipe command."""

    def __init__(self, out_dir: str | Path, command: str):
        self.path = Path(out_dir) / LOCK_FILE
        self.command = command
        self.fd: int | None = None
        self.took_over: dict | None = None   # the dead holder's record, when there was one

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self._holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if h.get(
                "started") else "an unknown time"
            raise BusyError(
                f"{self.path.parent} is in use by another twinpipe {h.get('command', 'run')} (pid "
                f"{h.get('pid', '?')} on host {h.get('host', '?')}, started {since}); one run per "
                f"output folder at a time. Wait for it to finish, or use another --out.") from None
        left = self._holder()
        if left.get("pid"):
            self.took_over = left
            log.warning("[lock] took over %s: its holder (pid %s on %s, twinpipe %s) is gone",
                        self.path, left["pid"], left.get("host"), left.get("command"))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
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
