"""Deliveries in a landing folder are taken exactly once: known by content, recognised under
another name, never taken by two overlapping runs, and taken again after the run holding them was
killed (and only then)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.common.landing import DONE, TAKEN, Ledger, content_sha256, find_deliveries

ROOT = Path(__file__).resolve().parents[2]


def test_deliveries_are_files_or_folders_known_by_content(tmp_path):
    landing = tmp_path / "landing"
    (landing / "2013-02").mkdir(parents=True)
    (landing / "2013-01.csv").write_text("a,b\n1,2\n")
    (landing / "2013-02" / "part-0.csv").write_text("a,b\n3,4\n")
    (landing / "2013-02" / ".part-1.csv.crc").write_text("x")       # hidden: not content
    (landing / "copy-of-2013-01.csv").write_text("a,b\n1,2\n")      # the same bytes
    (landing / "_2013-03.csv").write_text("a,b\n5,6\n")              # an upload in progress
    (landing / "README.txt").write_text("not data")
    found = find_deliveries(landing)
    assert [d.name for d in found] == ["2013-01.csv", "2013-02", "copy-of-2013-01.csv"]
    assert found[0].sha256 == found[2].sha256 != found[1].sha256
    before = content_sha256(landing / "2013-02")
    (landing / "2013-02" / "part-1.csv").write_text("a,b\n7,8\n")
    assert content_sha256(landing / "2013-02")[0] != before[0]
    assert find_deliveries(tmp_path / "nowhere") == []


def test_a_delivery_is_taken_once_and_a_redelivery_is_recognised(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "jan.csv").write_text("a\n1\n")
    ledger = Ledger(tmp_path / "out")
    (jan,) = find_deliveries(landing)
    assert ledger.take(jan, "run-1") == (True, None)
    got, record = ledger.take(jan, "run-2")
    assert not got and record["run"] == "run-1" and record["state"] == TAKEN
    ledger.finish(jan.sha256, verdict="accepted", spans=[201301])
    (landing / "jan-again.csv").write_text("a\n1\n")
    again = [d for d in find_deliveries(landing) if d.name == "jan-again.csv"][0]
    got, record = ledger.take(again, "run-3")
    assert not got and record["state"] == DONE and record["verdict"] == "accepted"
    assert ledger.get(jan.sha256)["names"] == ["jan.csv", "jan-again.csv"]


def _race(landing: str, out: str, run: str, start: float, queue) -> None:
    while time.time() < start:
        time.sleep(0.001)
    ledger = Ledger(out)
    queue.put((run, [d.name for d in find_deliveries(landing) if ledger.take(d, run)[0]]))


def test_two_overlapping_runs_never_take_the_same_delivery(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(40):
        (landing / f"d{i:02d}.csv").write_text(f"a\n{i}\n")
    ctx = multiprocessing.get_context("spawn")
    queue, start = ctx.Queue(), time.time() + 3
    runs = [ctx.Process(target=_race, args=(str(landing), str(tmp_path / "out"), f"run-{k}", start,
                                            queue)) for k in range(3)]
    for p in runs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in runs)
    for p in runs:
        p.join(timeout=60)
    taken = [n for names in got.values() for n in names]
    assert sorted(taken) == sorted(f"d{i:02d}.csv" for i in range(40))  # each exactly once


HOLD = """
import sys, time
from components.common.landing import Ledger, find_deliveries
(d,) = find_deliveries(sys.argv[1])
assert Ledger(sys.argv[2]).take(d, "killed-run")[0]
print("taken", flush=True)
time.sleep(600)
"""


def test_a_delivery_held_by_a_killed_run_is_taken_again(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "jan.csv").write_text("a\n1\n")
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(landing), str(out)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "taken"
        (jan,) = find_deliveries(landing)
        got, record = Ledger(out).take(jan, "run-2")  # the holder is alive: it keeps it
        assert not got and record["run"] == "killed-run"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    got, _ = Ledger(out).take(jan, "run-3")
    assert got and Ledger(out).get(jan.sha256)["retook_from"] == "killed-run"
    assert not Ledger(out).take(jan, "run-4")[0]  # run-3 is this process: alive


@pytest.mark.parametrize("state", [TAKEN, DONE])
def test_records_of_another_host_hold_by_their_lease(tmp_path, monkeypatch, state):
    import components.common.landing as landing_module

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "jan.csv").write_text("a\n1\n")
    (jan,) = find_deliveries(landing)
    ledger = Ledger(tmp_path / "out")
    assert ledger.take(jan, "elsewhere")[0]
    record = ledger.get(jan.sha256) | {"host": "another-host", "state": state,
                                       "taken_at": time.time() - 100}
    landing_module.storage.write_json(ledger.path(jan.sha256), record)
    assert not ledger.take(jan, "run-2")[0]                   # within the lease
    monkeypatch.setattr(landing_module, "LEASE_S", 50)
    assert ledger.take(jan, "run-3")[0] == (state == TAKEN)   # a done record never expires


def _flights(month: int, rows: int):
    from components.common.contract import load_contract
    from components.common.sources import load_default_table

    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    return table[table["month"] == month].sample(rows, random_state=month)


def test_land_takes_ingests_and_records_and_a_refused_delivery_keeps_its_reasons(tmp_path):
    """The pipelines' first step (:func:`land`): a delivery is ingested into the spans and recorded
    for its pipeline (``ledger/<consumer>/``); one the ingest refuses as a whole (a contract column
    missing) is recorded refused with the reason, alerted, and publishes no span; other pipelines
    keep their own ledger."""
    from components.common.contract import load_contract
    from components.common.errors import GateError
    from components.common.landing import NOTHING_NEW, RETRAIN, land

    contract = load_contract()
    landing, data = tmp_path / "landing", tmp_path / "data"
    landing.mkdir()
    _flights(4, 1500).to_parquet(landing / "2013-04.parquet", index=False)
    done = land(str(landing), str(data), contract, "run-1", consumer="torch")
    assert done.proceed and done.ingested.span_numbers == [201304]
    assert (data / "spans" / "span-201304" / "train" / "data.parquet").is_file()
    (record,) = Ledger(data, "torch").records()
    assert record["verdict"] == "ingested" and record["spans"] == [201304]
    assert land(str(landing), str(data), contract, "run-2", consumer="torch").status == NOTHING_NEW
    assert land(str(landing), str(data), contract, "run-3", consumer="torch",
                retrain=True).status == RETRAIN
    # the other stack's pipeline takes the same delivery for itself, once
    assert land(str(landing), str(data), contract, "run-4", consumer="tfx").taken[0]["name"] == \
        "2013-04.parquet"

    _flights(5, 500).drop(columns=["distance"]).to_parquet(landing / "2013-05.parquet", index=False)
    before = os.path.realpath(data / "spans")
    with pytest.raises(GateError, match="distance"):
        land(str(landing), str(data), contract, "run-5", consumer="torch")
    refused = [r for r in Ledger(data, "torch").records() if r["names"] == ["2013-05.parquet"]]
    assert refused[0]["verdict"] == "refused" and "distance" in refused[0]["reasons"][0]
    assert os.path.realpath(data / "spans") == before              # no span published
    assert (data / "validation" / "alerts.jsonl").read_text().count("distance") >= 1
    # refused is final for those bytes: the next run has nothing new
    assert land(str(landing), str(data), contract, "run-6", consumer="torch").status == NOTHING_NEW


def test_land_gives_a_delivery_back_when_the_run_fails_for_another_reason(tmp_path, monkeypatch):
    import components.common.landing as landing_module
    from components.common.contract import load_contract

    landing, data = tmp_path / "landing", tmp_path / "data"
    landing.mkdir()
    _flights(4, 300).to_parquet(landing / "2013-04.parquet", index=False)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(landing_module, "ingest_gated", broken)
    with pytest.raises(OSError):
        landing_module.land(str(landing), str(data), load_contract(), "run-1")
    assert Ledger(data).records() == []          # given back: the next run takes it
    monkeypatch.undo()
    assert landing_module.land(str(landing), str(data), load_contract(), "run-2").taken
