"""CPU time and peak memory per stage, measured on this process and every process it starts.

A background thread samples the process tree (this process, its children and their children) every
``interval`` seconds. A stage's CPU time is the growth of the tree's cumulative CPU between the
moment it is entered and the moment the next stage is entered; a process that ended keeps its CPU
in its parent's ``children_*`` counters once waited for, so nothing a stage ran is lost. Peak memory
is the largest sum of resident set sizes over the tree seen while the stage ran (a sample, so a
spike shorter than ``interval`` can be missed).
"""

from __future__ import annotations

import threading

import psutil


def tree_cpu_and_rss(root: psutil.Process) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of ``root`` and its live descendants (reaped children's CPU
    included); a process that ended meanwhile counts as nothing."""
    cpu, rss = 0.0, 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = [root]
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += p.memory_info().rss
        except psutil.Error:  # ended between listing and reading
            continue
    return cpu, rss


class ResourceMeter:
    """``with ResourceMeter() as m: m.enter("train"); ...; m.enter(None)`` then ``m.figures()``."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self._root = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: str | None = None
        self._cpu_at_enter = 0.0
        self._cpu: dict[str, float] = {}
        self._peak: dict[str, int] = {}

    def __enter__(self) -> ResourceMeter:
        self._cpu_at_enter, _ = tree_cpu_and_rss(self._root)
        self._thread = threading.Thread(target=self._loop, name="twinpipe-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.enter(None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            _, rss = tree_cpu_and_rss(self._root)
            with self._lock:
                if self._current is not None:
                    self._peak[self._current] = max(self._peak.get(self._current, 0), rss)

    def enter(self, stage: str | None) -> None:
        """From now on, the tree's CPU and memory count for ``stage`` (None: for no stage)."""
        cpu, rss = tree_cpu_and_rss(self._root)
        with self._lock:
            if self._current is not None:
                self._cpu[self._current] = self._cpu.get(self._current, 0.0) + cpu - self._cpu_at_enter
                self._peak[self._current] = max(self._peak.get(self._current, 0), rss)
            self._current, self._cpu_at_enter = stage, cpu
            if stage is not None:
                self._peak[stage] = max(self._peak.get(stage, 0), rss)

    def figures(self) -> dict[str, dict[str, float]]:
        """{stage: {"cpu_s": ..., "peak_rss_mb": ...}} for every stage entered so far."""
        with self._lock:
            stages = set(self._cpu) | set(self._peak)
            return {
                s: {"cpu_s": round(max(self._cpu.get(s, 0.0), 0.0), 3),
                    "peak_rss_mb": round(self._peak.get(s, 0) / 2**20, 1)}
                for s in stages
            }
