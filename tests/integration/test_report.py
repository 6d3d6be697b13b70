"""The side-by-side report of the `--stack both` run: every section filled, numbers consistent with
each stack's run.json, the HTML renders in headless Chromium (screenshot taken), runs combine."""

import json
import shutil
import struct
import subprocess

import pytest

from components.common.config import STAGES
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def report(both):
    out, runs, proc = both
    data = json.loads((out / "report" / "report.json").read_text())
    return out, runs, proc, data


def test_run_prints_where_the_report_is(report):
    out, _, proc, _ = report
    assert f"report: {(out / 'report' / 'index.html').resolve()}" in proc.stdout


def test_every_section_is_filled_for_both_stacks(report):
    _, _, _, data = report
    (run,) = data["runs"]
    assert set(run["stacks"]) == {"tfx", "torch"}
    for stack, s in run["stacks"].items():
        for stage in STAGES:
            st = s["run"]["stages"][stage]
            assert st["wall_s"] is not None and st["cpu_s"] is not None, (stack, stage)
            assert st["peak_rss_mb"] > 50, (stack, stage)  # a Python process at least
        assert s["run"]["stages"]["train"]["cpu_s"] > 1.0
        workers = [p["workers"] for p in s["scaling"]["points"]]
        assert workers == [1, 2] and all(p["samples_per_s"] > 0 for p in s["scaling"]["points"])
        m = s["measurements"]
        assert set(m["latency"]) == {"1", "256"}
        assert all(v["p50_ms"] > 0 and v["p95_ms"] >= v["p50_ms"] for v in m["latency"].values())
        assert all(b > 1000 for b in m["sizes_bytes"].values())
        assert len(m["roc"]["fpr"]) > 10 and sum(m["calibration"]["count"]) == m["eval_rows"]
    assert set(run["stacks"]["torch"]["measurements"]["sizes_bytes"]) == {"TorchScript", "ONNX"}
    assert data["checks"][run["dir"]] == {"same_eval_rows": True, "same_spans": True}
    assert run["environment"]["cpu_count"] >= 1 and run["environment"]["versions"]["tfx"] == "1.16.0"
    assert all(v["tfx"] > 0 and v["torch"] > 0 for v in data["lines_of_code"].values())
    assert len(data["summary"]) >= 8
    assert [n["stage"] for n in data["notes"]["scale_out"]] == list(STAGES)  # where each scales out


def test_report_numbers_agree_with_each_stacks_run_json(report):
    out, runs, _, data = report
    (run,) = data["runs"]
    for stack, summary in runs.items():
        s = run["stacks"][stack]
        assert s["run"]["total_wall_s"] == summary["total_wall_s"]
        for stage in STAGES:
            assert s["run"]["stages"][stage]["wall_s"] == summary["stages"][stage]["wall_s"]
        m = s["measurements"]
        ev = summary["stages"]["evaluate"]
        assert m["eval_rows"] == ev["eval_rows"]
        # Scored again outside the pipeline on the same rows: TFMA's AUC (float32 batching)
        # and onnxruntime's must agree with sklearn's on the report's own predictions.
        assert m["metrics"]["auc"] == pytest.approx(ev["auc"], abs=2e-3 if stack == "tfx" else 1e-6)
        n = summary["workers"]
        point = next(p for p in s["scaling"]["points"] if p["workers"] == n)
        assert point["samples_per_s"] == summary["stages"]["train"]["samples_per_s"]
    # the written summary is generated from these numbers
    t = {k: runs[k]["total_wall_s"] for k in runs}
    assert any(f"{t['tfx']:.1f} s" in line and f"{t['torch']:.1f} s" in line for line in data["summary"])


def test_html_renders_in_headless_chromium_with_a_screenshot(report, tmp_path):
    out, _, _, _ = report
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is missing: `make setup` installs it (infra/scripts/setup_system.sh)"
    page = (out / "report" / "index.html").resolve().as_uri()
    html = (out / "report" / "index.html").read_text()
    for section in ("summary", "runs", "stages", "scaling", "quality", "artifacts", "serving",
                    "code", "notes", "environment"):
        assert f"id='{section}'" in html
    assert html.count("<img ") == 7  # stage wall, CPU, memory; scaling; ROC, calibration; latency
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p1'}",
                          "--virtual-time-budget=10000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="true"' in dom.stdout  # every embedded plot decoded
    assert "Uncaught" not in dom.stderr and ":CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p2'}",
                           "--window-size=1200,5000", f"--screenshot={shot}", page],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1200, 5000)
    assert shot.stat().st_size > 100_000  # plots and tables, not a blank page


def test_report_command_lays_two_runs_side_by_side(report, tmp_path):
    out, _, _, _ = report
    second = tmp_path / "second-run"
    shutil.copytree(out, second, ignore=shutil.ignore_patterns("pipeline_root", "spans"))
    proc = twinpipe("report", str(out), str(second), "--out", str(tmp_path / "combined"))
    assert "report:" in proc.stdout
    data = json.loads((tmp_path / "combined" / "report.json").read_text())
    assert [r["dir"] for r in data["runs"]] == [str(out.resolve()), str(second.resolve())]
    assert any("across runs" in line for line in data["summary"])
    html = (tmp_path / "combined" / "index.html").read_text()
    assert "second-run" in html and html.count("<h3>") >= 4


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path):
    proc = twinpipe("report", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert "no tfx/run.json or torch/run.json" in proc.stderr and "Traceback" not in proc.stderr
