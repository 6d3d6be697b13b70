"""Run a command under a memory cap: a fresh cgroup-v1 memory cgroup, removed afterwards.

Issue 13 asks for a test that runs a stack at a scale whose naive in-memory version exceeds a
cap and shows the streaming one fits. ``ulimit -v`` would be the wrong tool (it caps virtual
address space per process, which TensorFlow/PyTorch reserve by the gigabyte without touching);
a memory cgroup caps what the whole process tree actually holds resident, as a Kubernetes pod's
memory limit does, and the kernel OOM-kills inside it when the cap is reached.

The cgroup is created under the memory cgroup this process already belongs to (read from
``/proc/self/cgroup``), so any limit the machine puts on us still applies to the capped child.
Needs root and the v1 memory controller mounted at ``/sys/fs/cgroup/memory``;
:func:`unavailable_reason` says why not otherwise, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MOUNT = Path("/sys/fs/cgroup/memory")
MiB = 1 << 20


@dataclass
class CappedRun:
    returncode: int            # negative: killed by that signal (-9 after an OOM kill)
    limit_bytes: int
    max_usage_bytes: int       # memory.max_usage_in_bytes: the cgroup's peak charge (RSS + cache)
    oom_kills: int             # processes the kernel OOM-killed in the cgroup
    wall_s: float
    timed_out: bool = False

    @property
    def oom_killed(self) -> bool:
        return self.oom_kills > 0

    @property
    def max_usage_mib(self) -> float:
        return self.max_usage_bytes / MiB


def unavailable_reason() -> str | None:
    """None when :func:`run_capped` can work here, else why not (one sentence for pytest.skip)."""
    if not (MOUNT / "memory.limit_in_bytes").is_file():
        return (f"no cgroup-v1 memory controller at {MOUNT} (memory.limit_in_bytes missing); "
                "the memory-capped run needs one")
    if os.geteuid() != 0:
        return "creating a memory cgroup needs root; this process is not root"
    return None


def _own_cgroup() -> Path:
    """This process's memory cgroup folder (the mount's root when it cannot be found)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                folder = MOUNT / path.lstrip("/")
                if folder.is_dir():
                    return folder
    return MOUNT


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _oom_kills(cg: Path) -> int:
    """The ``oom_kill`` counter of memory.oom_control (kernels >= 4.13)."""
    for line in (cg / "memory.oom_control").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def _kill_all(cg: Path) -> None:
    """SIGKILLs what is left in the cgroup (children the command left behind) and waits."""
    for _ in range(50):
        pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int):
    """A fresh memory cgroup capped at ``limit_bytes`` (swap included where memsw exists);
    yields its folder; on exit kills anything still in it and removes it."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    cg = _own_cgroup() / f"twinpipe-cap-{uuid.uuid4().hex[:10]}"
    cg.mkdir()
    try:
        (cg / "memory.limit_in_bytes").write_text(str(limit_bytes))
        if (cg / "memory.memsw.limit_in_bytes").is_file():  # no escape into swap (must be >= limit)
            (cg / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        yield cg
    finally:
        _kill_all(cg)
        for _ in range(50):  # rmdir can fail for a moment while the last exit is accounted
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def run_capped(cmd: list[str], limit_bytes: int, *, timeout: float | None = None,
               **popen_kwargs) -> CappedRun:
    """Runs ``cmd`` inside a fresh cgroup capped at ``limit_bytes`` and returns its exit status,
    peak memory charge and OOM kills. The command joins the cgroup before it execs (a ``sh``
    writes its own pid to cgroup.procs, then execs the command), so everything it starts is
    capped from its first allocation on. ``popen_kwargs`` go to :func:`subprocess.run` (cwd,
    env, stdout, ...)."""
    with memory_cgroup(limit_bytes) as cg:
        wrapped = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cg), *cmd]
        t0 = time.monotonic()
        timed_out = False
        try:
            rc = subprocess.run(wrapped, timeout=timeout, **popen_kwargs).returncode
        except subprocess.TimeoutExpired:
            timed_out, rc = True, -signal.SIGKILL
        wall = time.monotonic() - t0
        _kill_all(cg)
        return CappedRun(returncode=rc, limit_bytes=limit_bytes,
                         max_usage_bytes=_read_int(cg / "memory.max_usage_in_bytes"),
                         oom_kills=_oom_kills(cg),
                         wall_s=round(wall, 2), timed_out=timed_out)
