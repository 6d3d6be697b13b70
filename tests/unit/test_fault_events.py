"""The fault tolerance tooling without a framework: the Killer on real child processes that write
progress events, the summary's arithmetic, and the report section from a measurement's JSON."""

import json
import os
import subprocess
import sys
import time

import pytest

from components.common import fault

# A stand-in worker: records start (and, as rank 0, a checkpointed epoch), then sleeps; rank 0
# exits when its sibling has gone (as a launcher stopping the survivors would make it).
WORKER = """
import os, sys, time
from components.common import fault
rank = int(sys.argv[1])
fault.record("start", rank=rank, attempt=0, resumed_epoch=0)
fault.record("step", rank=rank, attempt=0)
if rank == 0:
    time.sleep(0.2)
    fault.record("epoch_end", rank=0, attempt=0, epoch=0)
    sibling = int(sys.argv[2])
    while os.path.exists(f"/proc/{sibling}") and open(f"/proc/{sibling}/stat").read().split()[2] != "Z":
        time.sleep(0.02)
    sys.exit(0)
time.sleep(60)
"""


def test_killer_kills_rank_one_after_the_first_checkpoint_and_sees_the_sibling_stop(tmp_path,
                                                                                    monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(fault.EVENTS_ENV, str(events))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    one = subprocess.Popen([sys.executable, "-c", WORKER, "1"], env=env)
    zero = subprocess.Popen([sys.executable, "-c", WORKER, "0", str(one.pid)], env=env)
    killer = fault.Killer(events, os.getpid(), rank=1, delay_fraction=0.5)
    killer.start()
    try:
        assert one.wait(timeout=30) == -9 and zero.wait(timeout=30) == 0
        kill = killer.result()
    finally:
        for p in (one, zero):
            p.kill()
    assert kill["killed_pid"] == one.pid
    ends = [e["t"] for e in fault.read_events(events) if e["event"] == "epoch_end"]
    assert kill["killed_at"] > ends[0] and kill["detected_at"] >= kill["killed_at"]


def test_killer_refuses_a_pid_outside_its_process_tree(tmp_path):
    events = tmp_path / "events.jsonl"
    lines = [{"t": time.time(), "pid": 1, "event": "start", "rank": 1, "attempt": 0},
             {"t": time.time(), "pid": os.getpid(), "event": "epoch_end", "rank": 0, "epoch": 0}]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    killer = fault.Killer(events, os.getpid(), rank=1, delay_fraction=0.0)
    killer.start()
    killer.join(timeout=30)  # it ends on its own, refusing
    with pytest.raises(RuntimeError, match="pid 1 is not a child"):
        killer.result()


def test_summary_of_a_kill_mid_epoch_two():
    """4 epochs of 10 s, checkpoint after epoch 0, killed 4 s into epoch 1, resumed at epoch 1."""
    ev = [{"t": 0.0, "event": "start", "rank": 0, "resumed_epoch": 0},
          {"t": 1.0, "event": "step", "rank": 0},
          {"t": 11.0, "event": "epoch_end", "rank": 0, "epoch": 0},
          {"t": 20.0, "event": "start", "rank": 0, "resumed_epoch": 1},
          {"t": 22.0, "event": "step", "rank": 0},
          {"t": 53.0, "event": "end", "rank": 0}]
    s = fault.summarize(ev, {"killed_at": 15.0, "killed_pid": 7, "detected_at": 15.5}, 4, 1000)
    assert s["finished"] and s["restarts"] == 1 and s["resumed_at_epoch"] == 1
    assert s["detect_s"] == 0.5 and s["recover_s"] == 7.0
    assert s["redone_epochs"] == 0.4 and s["redone_samples"] == 400  # 4 s of a 10 s epoch
    assert s["epochs_trained_after_kill"] == 3


def test_report_section_renders_each_stack_and_a_failed_one(tmp_path):
    from comparison import fault_tolerance as section

    ok = fault.summarize(
        [{"t": 0.0, "event": "start", "rank": 0, "resumed_epoch": 0},
         {"t": 1.0, "event": "step", "rank": 0}, {"t": 3.0, "event": "epoch_end", "epoch": 0},
         {"t": 9.0, "event": "start", "rank": 0, "resumed_epoch": 1},
         {"t": 9.5, "event": "step", "rank": 0}, {"t": 20.0, "event": "end", "rank": 0}],
        {"killed_at": 4.0, "killed_pid": 3, "detected_at": 4.2}, 3, 100)
    (tmp_path / "torch").mkdir()
    (tmp_path / "tfx").mkdir()
    (tmp_path / "torch" / "fault_tolerance.json").write_text(json.dumps(
        {"stack": "torch", "recovery": "torchrun", "workers": 2, "epochs": 3, "max_restarts": 3,
         "auc": 0.71, "undisturbed_auc": 0.705, "auc_delta": 0.005, **ok}))
    (tmp_path / "tfx" / "fault_tolerance.json").write_text(json.dumps(
        {"stack": "tfx", "error": "RuntimeError: boom"}))
    runs = [{"dir": str(tmp_path), "label": "run", "stacks": {"tfx": {}, "torch": {}}}]
    doc = section.collect(runs, {})
    html = section.render(doc)
    assert [r["stack"] for r in doc["rows"]] == ["tfx", "torch"]
    assert "measurement failed: RuntimeError: boom" in html
    assert "5.5 s" in html and "0.20 s" in html and "1 of 3" in html  # recover, detect, restarts
    assert section.collect([{"dir": str(tmp_path / "none"), "label": "x", "stacks": {}}], {}) is None
