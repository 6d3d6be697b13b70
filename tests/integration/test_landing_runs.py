"""Monthly deliveries into one landing folder, one `twinpipe run --landing` per month into one
--out, as a schedule runs them (torch stack, small months): each delivery is taken once; a run
with nothing new ends with "no new delivery" and trains nothing; the same bytes under another
name are recognised and not ingested again; a broken month is refused, alerted and kept out of
the served model and of the drift history, and the next clean month is judged against the last
accepted one and trains (and is served when the blessing rule says so)."""

import json
import shutil

import pytest

from components.common.contract import load_contract
from components.common.history import REFUSED, status
from components.common.landing import Ledger
from components.common.sources import load_default_table
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def months():
    """June, July and August 2013, 3,000 real rows each, in the contract's input shape."""
    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    return {m: table[table["month"] == m].sample(3000, random_state=m) for m in (6, 7, 8)}


def run(landing, out, check=True):
    return twinpipe("run", "--stack", "torch", "--landing", str(landing), "--out", str(out),
                    "--workers", "1", "--epochs", "2", "--no-report", check=check)


def served(out) -> int:
    return json.loads((out / "torch" / "pushed" / "current.json").read_text())["version"]


def test_a_schedule_of_deliveries(months, tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    months[6].to_parquet(landing / "2013-06.parquet", index=False)
    first = run(landing, out)
    assert "took delivery 2013-06.parquet" in first.stdout
    june = served(out)
    run_json = (out / "torch" / "run.json").read_bytes()

    # nothing new: no stack runs, exit 0
    idle = run(landing, out)
    assert "no new delivery" in idle.stdout and "2013-06.parquet" in idle.stdout
    assert (out / "torch" / "run.json").read_bytes() == run_json and served(out) == june

    # the same bytes under another name: recognised, not ingested again
    shutil.copy(landing / "2013-06.parquet", landing / "2013-06-resent.parquet")
    again = run(landing, out)
    assert "the same bytes as 2013-06.parquet" in again.stdout and "no new delivery" in again.stdout
    assert (out / "torch" / "run.json").read_bytes() == run_json

    # a broken July: refused with an alert, June's model stays served, July never a reference
    broken = months[7].assign(distance=(months[7]["distance"] * 1.5).round().astype("int64"))
    broken.to_parquet(landing / "2013-07.parquet", index=False)
    refused = run(landing, out, check=False)
    assert refused.returncode == 1 and "drift on column 'distance'" in refused.stderr
    assert served(out) == june
    alerts = (out / "torch" / "validation" / "alerts.jsonl").read_text()
    assert "distance" in alerts
    assert status(str(out / "spans"), 201307)[0] == REFUSED
    records = {r["names"][0]: r for r in Ledger(out).records()}
    assert records["2013-07.parquet"]["verdict"] == "refused"
    assert records["2013-06.parquet"]["verdict"] == "accepted"

    # a clean August: judged against June (the newest accepted month), trains and is served
    months[8].to_parquet(landing / "2013-08.parquet", index=False)
    august = run(landing, out)
    assert "took delivery 2013-08.parquet" in august.stdout
    gate = json.loads((out / "torch" / "validation" / "gate.json").read_text())
    assert gate["figures"]["201308"]["previous_span"] == 201306
    assert "201307 refused" in gate["figures"]["201308"]["reference_note"]
    summary = json.loads((out / "torch" / "run.json").read_text())
    assert summary["spans"] == [201308] and summary["stages"]["train"]["samples_per_s"] > 0
    assert summary["stages"]["evaluate"]["blessed"] == (served(out) != june)
