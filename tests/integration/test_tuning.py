"""`twinpipe tune` on a tiny sample, then `twinpipe run --tuning PATH` with an explicit flag: the
sweep's choice is the fastest measured point under the stated AUC rule, the run applies it per
stack (run.json ``settings``), and the explicit --workers wins over it. The PyTorch stack only
(the TFX sweep's Transform + Trainer processes would double the time; its settings' path through
the runner is covered by tests/unit/test_tuning.py)."""

import json

import pytest

from comparison import tuning
from components.common.config import RunConfig
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration


def test_tune_chooses_the_best_admissible_point_and_the_run_applies_it(tmp_path):
    tuned = tmp_path / "tuned"
    twinpipe("tune", "--stack", "torch", "--months", "1", "--sample", "8000", "--out", str(tuned))
    doc = json.loads((tuned / "tuning.json").read_text())
    assert doc["cores"] == tuning.cores() and set(doc["stacks"]) == {"torch"}
    entry = doc["stacks"]["torch"]
    points = entry["points"]
    assert [p["config"] for p in points] == tuning.candidates("torch", RunConfig())
    assert all(p["samples_per_s"] > 0 and 0.5 < p["auc"] <= 1 for p in points)
    floor = points[0]["auc"] - doc["rule"]["auc_tolerance"]
    admissible = [p for i, p in enumerate(points) if i == 0 or p["auc"] >= floor]
    best = max(admissible, key=lambda p: p["samples_per_s"])
    if best["samples_per_s"] < points[0]["samples_per_s"] * (1 + doc["rule"]["min_gain"]):
        best = points[0]  # not enough faster than the reference to count
    assert entry["chosen"] == best["config"] == points[entry["chosen_index"]]["config"]

    out = tmp_path / "run"
    twinpipe("run", "--stack", "torch", "--months", "1", "--sample", "8000", "--epochs", "1",
             "--tuning", str(tuned / "tuning.json"), "--workers", "2", "--no-report",
             "--out", str(out))
    run = json.loads((out / "torch" / "run.json").read_text())
    s, tr = run["settings"], run["stages"]["train"]
    assert s["workers"] == tr["workers"] == 2  # the explicit flag, whatever the sweep chose
    assert "explicit flags kept: workers" in s["source"]
    assert s["batch_size"] == best["config"]["batch_size"]
    assert s["learning_rate"] == best["config"]["learning_rate"]
    assert tr["global_batch"] == 2 * s["batch_size"]
    assert json.loads((out / "tuning.json").read_text()) == doc  # kept for the report

    # the report's Tuning section shows the sweep and what the run used; its headline says so
    from comparison.report import build_report

    html = build_report([out]).read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    section = report["tuning"]["runs"][0]
    assert section["stacks"]["torch"]["chosen"] == best["config"]
    assert section["ran_with"]["torch"]["workers"] == 2
    assert "id='tuning'" in html and f"{best['samples_per_s']:,.0f}" in html
