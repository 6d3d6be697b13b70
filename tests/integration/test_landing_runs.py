"""Deliveries into one landing folder, one `twinpipe run --landing` each into one --out, as a
schedule runs them (torch stack, a small month): a delivery is taken once; a run with nothing new
ends with "no new delivery" and trains nothing; the same bytes under another name are recognised
and not ingested again. (A refused month and the months after it: tests/integration/test_replay.)"""

import json
import shutil

import pytest

from components.common.contract import load_contract
from components.common.sources import load_default_table
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def months():
    """June 2013, 3,000 real rows, in the contract's input shape."""
    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    return {m: table[table["month"] == m].sample(3000, random_state=m) for m in (6,)}


def run(landing, out, *flags, check=True):
    return twinpipe("run", "--stack", "torch", "--landing", str(landing), "--out", str(out),
                    "--workers", "1", "--epochs", "2", "--no-report", *flags, check=check)


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

    # asked to: nothing new, but the stacks train again on the spans that are there
    retrained = run(landing, out, "--retrain")
    assert "--retrain, so the stacks trained again" in retrained.stdout
    doc = json.loads((out / "torch" / "run.json").read_text())
    assert doc["spans"] == [201306] and (out / "torch" / "run.json").read_bytes() != run_json
