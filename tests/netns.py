"""Two "hosts" on one machine: Linux network namespaces joined by a veth pair.

Multi-node training (torchrun's c10d rendezvous, TF's ``MultiWorkerMirroredStrategy``) is only
really exercised when the ranks sit on different network stacks: on one host every address is
reachable through loopback and a wrong bind address or hostname goes unnoticed. Each
:class:`Host` here has its own network namespace (``lo`` up, one veth end with its own address),
its own hostname (a UTS namespace per command) and its own ``/etc/hosts`` naming both hosts
(``ip netns exec`` bind-mounts ``/etc/netns/<name>/hosts`` over ``/etc/hosts``), as two pods
of a cluster would have. Only the filesystem is shared (like a shared volume).

Names and the /30 subnet are drawn per pair, so parallel or leftover runs never clash; the
context manager always removes what it made (namespaces, the veth pair with them, the hosts
files) and stops whatever still runs inside, even when the body fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


class NetnsUnavailable(RuntimeError):
    """This machine cannot create network namespaces (not root, no iproute2, no kernel support)."""


@dataclass(frozen=True)
class Host:
    """One simulated host: a network namespace with one address on the shared veth link."""

    netns: str
    hostname: str
    addr: str
    ifname: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host: its network namespace and /etc/hosts, its hostname."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostname, *argv]


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed (exit {proc.returncode}): "
                               f"{proc.stderr.strip()}")


def check_available() -> None:
    """Raises :class:`NetnsUnavailable` with what is missing, before anything is created."""
    missing = [tool for tool in ("ip", "unshare", "hostname") if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(f"{', '.join(missing)} not found on PATH (iproute2 / util-linux / "
                               f"hostname are needed to simulate two hosts with network namespaces)")
    if os.geteuid() != 0:
        raise NetnsUnavailable(f"creating network namespaces needs root; running as uid {os.geteuid()}")


def _pids(netns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _remove(hosts: Sequence[Host], grace_s: float = 5.0) -> None:
    """Stops what still runs in the namespaces (SIGTERM, SIGKILL after ``grace_s``), then deletes
    them (the veth pair goes with them) and their hosts files."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for h in hosts for p in _pids(h.netns)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline and any(_pids(h.netns) for h in hosts):
            time.sleep(0.1)
    for h in hosts:
        subprocess.run(["ip", "netns", "del", h.netns], capture_output=True)
        shutil.rmtree(NETNS_ETC / h.netns, ignore_errors=True)
    try:
        NETNS_ETC.rmdir()  # only when no other pair uses it
    except OSError:
        pass


@contextmanager
def two_hosts(prefix: str = "tp") -> Iterator[tuple[Host, Host]]:
    """Two hosts joined by a veth pair on a fresh 10.a.b.0/30; removed on exit, even on error."""
    check_available()
    token = secrets.token_hex(3)  # 6 hex digits: unique per pair, short enough for ifnames (<16)
    a, b = secrets.randbelow(256), secrets.randbelow(64) * 4
    hosts = tuple(
        Host(netns=f"{prefix}-{token}-{i}", hostname=f"{prefix}-{token}-host{i}",
             addr=f"10.{a}.{b}.{i + 1}", ifname=f"{prefix}{token}v{i}")
        for i in range(2)
    )
    try:
        for h in hosts:
            _ip("netns", "add", h.netns)
        _ip("link", "add", hosts[0].ifname, "netns", hosts[0].netns, "type", "veth",
            "peer", "name", hosts[1].ifname, "netns", hosts[1].netns)
        etc_hosts = "127.0.0.1 localhost\n" + "".join(f"{h.addr} {h.hostname}\n" for h in hosts)
        for h in hosts:
            _ip("-n", h.netns, "addr", "add", f"{h.addr}/30", "dev", h.ifname)
            _ip("-n", h.netns, "link", "set", "lo", "up")
            _ip("-n", h.netns, "link", "set", h.ifname, "up")
            (NETNS_ETC / h.netns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / h.netns / "hosts").write_text(etc_hosts)
        yield hosts  # type: ignore[misc]
    finally:
        _remove(hosts)


@contextmanager
def linked_host(prefix: str = "tl", hosts_entries: Sequence[str] = ()) -> Iterator[tuple[Host, str]]:
    """One host whose veth pair links it to THIS machine's network namespace: yields the host and
    the address this side holds on the link (services bound there are reachable from the host,
    and only from it). ``hosts_entries`` are extra ``/etc/hosts`` names for this side's address,
    which is how the host is made to resolve fixed public names (e.g. an API endpoint a library
    hard-codes) to a service here. The /30 is drawn from 198.18.0.0/15 (RFC 2544, reserved for
    network tests), so it never shadows a real route; removed on exit, even on error."""
    check_available()
    token = secrets.token_hex(3)
    net, last = f"198.{18 + secrets.randbelow(2)}.{secrets.randbelow(256)}", secrets.randbelow(64) * 4
    here = f"{net}.{last + 1}"
    host = Host(netns=f"{prefix}-{token}", hostname=f"{prefix}-{token}-host",
                addr=f"{net}.{last + 2}", ifname=f"{prefix}{token}n")
    outer = f"{prefix}{token}o"
    try:
        _ip("netns", "add", host.netns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", host.ifname, "netns", host.netns)
        _ip("addr", "add", f"{here}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", host.netns, "addr", "add", f"{host.addr}/30", "dev", host.ifname)
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "link", "set", host.ifname, "up")
        (NETNS_ETC / host.netns).mkdir(parents=True, exist_ok=True)
        (NETNS_ETC / host.netns / "hosts").write_text(
            f"127.0.0.1 localhost\n{host.addr} {host.hostname}\n"
            + "".join(f"{here} {name}\n" for name in hosts_entries))
        yield host, here
    finally:
        _remove((host,))  # the veth pair goes with the namespace
        subprocess.run(["ip", "link", "del", outer], capture_output=True)  # if the ns never got it


@dataclass
class Finished:
    """One command's exit code and its combined stdout/stderr."""

    host: Host
    returncode: int
    output: str


def run_on_hosts(jobs: Sequence[tuple[Host, Sequence[str], dict[str, str]]], logs: Path,
                 timeout_s: float, cwd: str | Path | None = None) -> list[Finished]:
    """Runs one command per host at the same time and waits for all of them.

    Output goes to files (no pipe can fill up and block a rank). When one command fails or the
    time is up, the others are stopped: a rank whose peer died would otherwise wait in a
    collective until its own timeout. Returns exit codes (-9/-15: stopped) and outputs.
    """
    logs.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    try:
        for i, (host, argv, env) in enumerate(jobs):
            f = open(logs / f"{i}-{host.hostname}.log", "w+")  # noqa: SIM115 (closed below)
            files.append(f)
            procs.append(subprocess.Popen(host.command(argv), env=env, cwd=cwd, stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in procs):
            failed = any(p.poll() not in (None, 0) for p in procs)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        _stop(procs)
        outputs = []
        for f in files:
            f.seek(0)
            outputs.append(f.read())
            f.close()
    return [Finished(h, p.returncode, out) for (h, _, _), p, out in zip(jobs, procs, outputs, strict=True)]


def _stop(procs: Sequence[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGTERM to each running command's process group, SIGKILL after ``grace_s``."""
    running = [p for p in procs if p.poll() is None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in running:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        waiters = [threading.Thread(target=_wait, args=(p, grace_s)) for p in running]
        for t in waiters:
            t.start()
        for t in waiters:
            t.join()
        running = [p for p in running if p.poll() is None]
        if not running:
            return


def _wait(p: subprocess.Popen, timeout_s: float) -> None:
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
