"""Training progress events, and a worker killed from outside: what fault tolerance is measured by.

Both stacks' training processes call :func:`record` at the moments a recovery is judged by (a
process starts training and at which epoch, its first step, each epoch checkpointed, a launcher
seeing a worker fail). With ``TWINPIPE_TRAIN_EVENTS`` unset (every pipeline run) it does nothing;
set, each event is one JSON line appended to that local file, with the wall clock and the pid,
so the test and the ``fault_tolerance`` measurement can

* :class:`Killer`: wait for the first checkpoint, SIGKILL one worker from outside its process
  tree (as an OOM killer or a lost node would), and time how long the launcher takes to notice
  (the surviving workers stopped);
* :func:`summarize`: from the events, the time to recover (kill -> first training step of the
  relaunched workers), the epoch it resumed at, and the work redone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

EVENTS_ENV = "TWINPIPE_TRAIN_EVENTS"
ATTEMPT_ENV = "TWINPIPE_TRAIN_ATTEMPT"  # set by the TFX local launcher; torchrun has its own


def record(event: str, **fields) -> None:
    """Appends ``event`` to the events file when one is set (one small O_APPEND write: lines of
    concurrent processes never interleave)."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps({"t": time.time(), "pid": os.getpid(), "event": event, **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class Killer(threading.Thread):
    """SIGKILLs rank ``rank`` once the first epoch's checkpoint (or backup) exists.

    It waits for the first ``epoch_end`` event (written after the checkpoint is saved), then
    ``delay_fraction`` of that first epoch's duration more (the kill lands mid-epoch, so some
    work is lost and redone, as in a real failure), then kills the latest process that recorded
    ``start`` with that rank, only if it descends from ``root_pid`` (never a stranger's process).
    ``detected_at``: when every other worker of that attempt had exited (the launcher or torchrun
    stopped them; the failure was noticed)."""

    def __init__(self, events: str | Path, root_pid: int, rank: int = 1,
                 delay_fraction: float = 0.5, timeout_s: float = 600.0, poll_s: float = 0.05):
        super().__init__(daemon=True)
        self.events, self.root_pid, self.rank = Path(events), root_pid, rank
        self.delay_fraction, self.timeout_s, self.poll_s = delay_fraction, timeout_s, poll_s
        self.killed_at: float | None = None
        self.killed_pid: int | None = None
        self.detected_at: float | None = None
        self.error: str | None = None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stops waiting (the training ended before the kill): nothing is killed after this."""
        self._cancel.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 — reported by result(), never lost in a thread
            self.error = f"{type(e).__name__}: {e}"

    def _wait(self, until) -> object:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and not self._cancel.is_set():
            found = until(read_events(self.events))
            if found:
                return found
            time.sleep(self.poll_s)
        raise TimeoutError("cancelled: training ended before the kill" if self._cancel.is_set()
                           else f"no checkpoint event within {self.timeout_s:.0f} s in {self.events}")

    def _run(self) -> None:
        import psutil

        first_end = self._wait(lambda ev: next((e for e in ev if e["event"] == "epoch_end"), None))
        events = read_events(self.events)
        steps = [e["t"] for e in events if e["event"] == "step" and e["t"] <= first_end["t"]]
        epoch_s = first_end["t"] - (min(steps) if steps else first_end["t"])
        if self._cancel.wait(max(0.0, self.delay_fraction * epoch_s)):
            raise TimeoutError("cancelled: training ended before the kill")
        starts = [e for e in read_events(self.events) if e["event"] == "start"]
        target = next(e for e in reversed(starts) if e["rank"] == self.rank)
        siblings = [e["pid"] for e in starts
                    if e.get("attempt") == target.get("attempt") and e["pid"] != target["pid"]]
        family = {p.pid for p in psutil.Process(self.root_pid).children(recursive=True)}
        if target["pid"] not in family:
            raise RuntimeError(f"rank {self.rank}'s pid {target['pid']} is not a child of "
                               f"{self.root_pid}: not killing it")
        os.kill(target["pid"], signal.SIGKILL)
        self.killed_at, self.killed_pid = time.time(), target["pid"]
        deadline = time.monotonic() + self.timeout_s
        while any(_alive(p) for p in siblings):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the other worker(s) {siblings} still ran "
                                   f"{self.timeout_s:.0f} s after the kill")
            time.sleep(self.poll_s)
        self.detected_at = time.time()

    def result(self) -> dict:
        """The kill's times, once the training it watched has ended (cancels a kill still
        pending: then RuntimeError says the kill never happened)."""
        if self.killed_at is None:
            self.cancel()
        self.join(timeout=self.timeout_s)
        if self.error or self.killed_at is None:
            raise RuntimeError(f"[fault] the kill did not happen: {self.error or 'still waiting'}")
        return {"killed_at": self.killed_at, "killed_pid": self.killed_pid,
                "detected_at": self.detected_at}


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def summarize(events: list[dict], kill: dict, epochs: int, samples_per_epoch: int) -> dict:
    """What the kill cost, from the events and :meth:`Killer.result`.

    ``redone_epochs``: the epochs trained twice: those completed before the kill but after the
    checkpoint resumed from (0 with a checkpoint every epoch) plus the part of the interrupted
    epoch done before the kill (its wall time over the mean epoch time of the same attempt).
    """
    t_kill = kill["killed_at"]
    before = [e for e in events if e["t"] <= t_kill]
    after = [e for e in events if e["t"] > t_kill]
    ends = sorted(e["t"] for e in before if e["event"] == "epoch_end")
    done = 1 + max((e["epoch"] for e in before if e["event"] == "epoch_end"), default=-1)
    resumed = [e for e in after if e["event"] == "start" and e.get("rank") == 0]
    resumed_at = resumed[0]["resumed_epoch"] if resumed else None
    steps_before = sorted(e["t"] for e in before if e["event"] == "step")
    marks = ([steps_before[0]] if steps_before else []) + ends
    epoch_s = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else None
    partial = (t_kill - ends[-1]) / epoch_s if ends and epoch_s else 0.0
    redone = (done - resumed_at) + min(partial, 1.0) if resumed_at is not None else None
    first_step = min((e["t"] for e in after if e["event"] == "step"), default=None)
    starts0 = [e for e in events if e["event"] == "start" and e.get("rank") == 0]
    finished = any(e["event"] == "end" for e in after)
    return {
        "finished": finished,
        "killed_rank_pid": kill["killed_pid"],
        "epochs": epochs,
        "epochs_checkpointed_before_kill": done,
        "resumed_at_epoch": resumed_at,
        "epochs_trained_after_kill": (epochs - resumed_at) if resumed_at is not None else None,
        "detect_s": _round(kill["detected_at"] - t_kill if kill.get("detected_at") else None),
        "recover_s": _round(first_step - t_kill if first_step else None),
        "redone_epochs": _round(redone),
        "redone_samples": int(round(redone * samples_per_epoch)) if redone is not None else None,
        "epoch_s": _round(epoch_s),
        "restarts": max(0, len(starts0) - 1),
    }


def _round(x: float | None, n: int = 3) -> float | None:
    return None if x is None else round(x, n)
