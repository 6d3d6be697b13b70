"""`twinpipe replay` on three small months (torch stack): June is served, a broken July is
refused and never redelivered, the served model stays June's, August is judged against June and
trains; the timeline records every tick and the report shows it."""

import json

import pytest

from components.common.history import REFUSED, status
from components.common.landing import Ledger
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration


def test_replay_a_broken_month_never_redelivered(tmp_path):
    out = tmp_path / "replay"
    proc = twinpipe("replay", "--out", str(out), "--stack", "torch", "--months", "6-8",
                    "--rows-per-month", "3000", "--epochs", "2")
    ticks = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert [t["delivery"] for t in ticks] == ["2013-06.parquet", "2013-07.parquet", "2013-08.parquet"]
    june, july, august = (t["stacks"]["torch"] for t in ticks)
    assert [t["status"] for t in ticks] == ["trained", "refused", "trained"]
    assert june["verdict"] == "accepted" and june["served"] is not None
    assert july["verdict"] == "refused" and "drift" in july["finding"] and july["alerts"] >= 1
    assert july["served"] == june["served"] and july.get("auc") is None
    assert august["verdict"] == "accepted" and august["baseline_auc"] is not None
    gate = json.loads((out / "torch" / "validation" / "gate.json").read_text())
    assert gate["figures"]["201308"]["previous_span"] == 201306
    assert "201307 refused" in gate["figures"]["201308"]["reference_note"]
    assert status(str(out / "spans"), 201307)[0] == REFUSED
    verdicts = {r["names"][0]: r["verdict"] for r in Ledger(out).records()}
    assert verdicts == {"2013-06.parquet": "accepted", "2013-07.parquet": "refused",
                        "2013-08.parquet": "accepted"}
    page = (out / "report" / "index.html").read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    assert len(report["timeline"]["runs"][0]["ticks"]) == 3 and "Timeline" in page
    assert "tick  2 2013-07.parquet" in proc.stdout and "refused" in proc.stdout
