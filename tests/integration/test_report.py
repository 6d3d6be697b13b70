"""The side-by-side report of the `--stack both` run: every section filled, its numbers consistent
with sources it was not built from (the span files, an outside clock), the identical-eval-rows
check true on the real run and false when a stack scored other rows, the HTML renders in headless
Chromium (screenshot taken), runs combine."""

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from comparison.html import render_html
from comparison.report import build_report_data
from comparison.scaling import layout
from components.common import rows
from components.common.config import STAGES
from components.common.contract import load_contract
from components.common.rowdigest import frame_digest
from components.common.threads import gpu_count
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
        points = [(p["scaling"], p["workers"]) for p in s["scaling"]["points"]]
        n = layout(gpu_count(), os.cpu_count() or 1)["workers"]  # CPU (CI): 2
        assert points == [("baseline", 1), ("weak", n), ("strong", n)], stack
        assert all(p["samples_per_s"] > 0 for p in s["scaling"]["points"])
        m = s["measurements"]
        assert set(m["latency"]) == {"1", "256"}
        assert all(v["p50_ms"] > 0 and v["p95_ms"] >= v["p50_ms"] for v in m["latency"].values())
        assert all(b > 1000 for b in m["sizes_bytes"].values())
        assert len(m["roc"]["fpr"]) > 10 and sum(m["calibration"]["count"]) == m["eval_rows"]
    assert set(run["stacks"]["torch"]["measurements"]["sizes_bytes"]) == {"TorchScript", "ONNX"}
    assert data["checks"][run["dir"]] == {"same_eval_rows": True, "same_spans": True,
                                          "measured_rows_are_scored_rows": True}
    assert run["environment"]["cpu_count"] >= 1 and run["environment"]["versions"]["tfx"] == "1.16.0"
    assert all(v["tfx"] > 0 and v["torch"] > 0 for v in data["lines_of_code"].values())
    assert len(data["summary"]) >= 8
    assert [n["stage"] for n in data["notes"]["scale_out"]] == list(STAGES)  # where each scales out


def _span_rows(out: Path, split: str) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted((out / "spans").glob(f"span-*/{split}/*.parquet")))


def test_report_numbers_agree_with_independent_sources(report):
    """Row counts against the span files, wall times against the test's own clock, the report's
    AUC against each pipeline's own evaluation (two separate scorings of the model)."""
    out, runs, proc, data = report
    (run,) = data["runs"]
    n_eval = len(_span_rows(out, "eval"))
    n_all = n_eval + len(_span_rows(out, "train"))
    for stack, s in run["stacks"].items():
        st = s["run"]["stages"]
        assert st["ingest"]["rows"] == n_all, stack
        assert s["measurements"]["eval_rows"] == st["evaluate"]["eval_rows"] == n_eval, stack
        # stages run one after another inside the stack's total
        assert sum(st[stage]["wall_s"] for stage in STAGES) <= s["run"]["total_wall_s"] + 0.05, stack
        # Scored again outside the pipeline on the same rows: TFMA's AUC (float32 batching)
        # and onnxruntime's must agree with sklearn's on the report's own predictions.
        m, ev = s["measurements"], runs[stack]["stages"]["evaluate"]
        assert m["metrics"]["auc"] == pytest.approx(ev["auc"], abs=2e-3 if stack == "tfx" else 1e-6)
    # The stacks ran one after the other after one shared spans write, inside the CLI's wall time.
    tot = {k: run["stacks"][k]["run"]["total_wall_s"] for k in ("tfx", "torch")}
    shared = run["stacks"]["tfx"]["run"]["stages"]["ingest"]["spans_write_s"]
    assert 0 < tot["tfx"] + tot["torch"] - shared <= proc.wall_s
    # the written summary is generated from these numbers
    assert any(f"{tot['tfx']:.1f} s" in line and f"{tot['torch']:.1f} s" in line for line in data["summary"])


def test_both_stacks_recorded_the_digest_of_the_span_eval_rows(report):
    """Each stack's evaluate stage recorded the key digest of the rows it scored; they agree with
    each other and with the contract-keyed digest of the spans' eval files."""
    out, runs, _, _ = report
    key = list(load_contract().split.key)
    expected = frame_digest(_span_rows(out, "eval"), key)
    for stack, summary in runs.items():
        ev = summary["stages"]["evaluate"]
        assert ev["eval_rows_key"] == key, stack
        assert ev["eval_rows_sha256"] == expected.sha256, stack
        assert ev["eval_rows_hashed"] == ev["eval_rows"] == expected.rows, stack


def test_eval_rows_check_is_false_when_a_stack_scored_other_rows(report, tmp_path):
    """A copy of the run whose torch evaluate stage is re-run, by the stack's own evaluate code, on
    its eval rows less one: the report must say the stacks scored different rows."""
    from components.torch.evaluate import evaluate_stage

    out, runs, _, _ = report
    train = runs["torch"]["stages"]["train"]
    scored = rows.read(Path(train["train_path"]).with_name("eval_rows"), "eval")  # a rows reference
    fewer = tmp_path / "eval_rows"
    scored.drop(index=scored.index[len(scored) // 2]).to_parquet(fewer)
    evaluate_stage(str(Path(train["model_dir"]).parent), str(fewer), str(tmp_path / "no-registry"),
                   "", str(tmp_path / "blessing.json"), record_dir=str(tmp_path / "rec"))
    rerun = json.loads((tmp_path / "rec" / "evaluate.json").read_text())
    assert rerun["eval_rows"] == len(scored) - 1
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("pipeline_root", "spans", ".spans", "report"))
    torch_run = json.loads((copy / "torch" / "run.json").read_text())
    torch_run["stages"]["evaluate"].update(rerun)
    (copy / "torch" / "run.json").write_text(json.dumps(torch_run))
    data = build_report_data([copy])
    assert data["checks"][str(copy.resolve())] == {
        "same_eval_rows": False, "measured_rows_are_scored_rows": False, "same_spans": True}
    assert any(line.startswith("On the DIFFERENT ") for line in data["summary"])
    assert "scored identical eval rows (SHA-256 of the rows' split keys) <b>False</b>" in render_html(data)


def test_html_renders_in_headless_chromium_with_a_screenshot(report, tmp_path):
    out, _, _, _ = report
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is missing: `make setup` installs it (infra/scripts/setup_system.sh)"
    page = (out / "report" / "index.html").resolve().as_uri()
    html = (out / "report" / "index.html").read_text()
    for section in ("summary", "runs", "stages", "scaling", "quality", "artifacts", "serving",
                    "code", "notes", "environment"):
        assert f"id='{section}'" in html
    # stage wall, CPU, memory; scaling samples/s, step split; ROC, calibration; latency; and the
    # throughput/p99 plot of Serving under load (the run measured exports and serving_load)
    assert "id='exports'" in html and "id='serving-load'" in html
    assert html.count("<img ") == 9
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


def test_data_scaling_section_from_a_bench_json(both, tmp_path):
    """`make bench`'s bench.json adds the Data scaling section: passed explicitly, or found two
    folders above a run laid out as make bench lays them (OUT/bench/STACK/scale-K)."""
    from benchmarks import bench
    from comparison.report import build_report
    from components.common.errors import DataError
    from tests.unit.test_cost_curve import _doc

    out, _, _ = both
    run = tmp_path / "bench" / "torch" / "scale-1"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("pipeline_root", "spans", ".spans", "report"))
    assert build_report_data([run])["data_scaling"] is None  # no bench.json there yet
    bench.write_outputs(tmp_path / "bench", _doc())
    data = build_report_data([run])
    ds = data["data_scaling"]
    assert ds["sentences"][0].startswith("PyTorch") and "train takes the largest share" in ds["sentences"][0]
    page = build_report([out], tmp_path / "explicit", bench=tmp_path / "bench" / "bench.json")
    html = page.read_text()
    assert "id='data-scaling'" in html and "train takes the largest share" in html
    saved = json.loads(page.with_name("report.json").read_text())
    assert saved["data_scaling"]["cost_curve"]["stacks"]["torch"]["stages"]["train"]["ratio"] == 2.25
    (tmp_path / "not-bench.json").write_text("{}")
    with pytest.raises(DataError, match="not a bench.json"):
        build_report_data([out], tmp_path / "not-bench.json")
