"""The cost curve of `make bench` (benchmarks/bench.py) and the report's Data scaling section
(infra/report.py), on synthetic bench results whose true lines are known."""

import json

import pytest

from benchmarks import bench
from comparison import html, report
from components.common.config import STAGES

ROWS = {1: 300_000, 3: 900_000, 10: 3_000_000, 30: 9_000_000}
# (fixed s, µs/row) per stage: the stack's and the hand-written script's
STACK = {"ingest": (2.0, 1.5), "validate": (4.0, 6.0), "train": (10.0, 9.0), "evaluate": (3.0, 2.0),
         "push": (1.0, 0.0)}
SCRIPT = {"ingest": (0.5, 1.0), "validate": (0.2, 0.5), "train": (3.0, 4.0), "evaluate": (0.3, 0.5),
          "push": (0.5, 0.0)}


def _wall(line, rows):
    fixed, us = line
    return fixed + us * 1e-6 * rows


def _entry(scale, stack=STACK, script=SCRIPT, peak=1000.0, run_wall_s=None):
    rows = ROWS[scale]
    stages = {s: {"wall_s": _wall(stack[s], rows), "cpu_s": 1.0, "peak_rss_mb": peak + scale}
              for s in STAGES}
    total = sum(v["wall_s"] for v in stages.values())
    return {"scale": scale, "rows": rows, "run_dir": f"/nowhere/scale-{scale}",
            "run_wall_s": run_wall_s if run_wall_s is not None else total + 5,
            "stages": stages, "peak_rss_mb": peak + scale, "total_s": total,
            "script_stage_s": {s: _wall(script[s], rows) for s in STAGES},
            "script_process_s": sum(_wall(script[s], rows) for s in STAGES) + 2.0,
            "stage_ratio": {s: 2.0 for s in STAGES}, "total_ratio": 2.0,
            "ingest_validate_rows_per_s": 1e5, "validate_vs_scan": 0.01,
            "samples_per_s": {"2": 1000.0}, "auc": 0.7, "script_auc": 0.7}


def _doc(scales=(1, 3, 10), stack=STACK):
    doc = {"months": "1-12", "workers": 2, "epochs": 1, "cpu_count": 2,
           "runs": {"torch": {str(k): _entry(k, stack) for k in scales}},
           "scan": {str(k): {"rows": ROWS[k], "wall_s": 0.1 + 0.05e-6 * ROWS[k], "rows_per_s": 1.0}
                    for k in scales}}
    doc["cost_curve"] = bench.cost_curve(doc)
    return doc


def test_fit_line_recovers_an_exact_line():
    pts = [(rows, _wall((3.5, 12.25), rows)) for rows in (1e5, 3e5, 1e6, 3e6)]
    fit = bench.fit_line(pts)
    assert fit["fixed_s"] == pytest.approx(3.5, abs=1e-4)
    assert fit["marginal_us_per_row"] == pytest.approx(12.25, abs=1e-4)


def test_fit_line_least_squares_and_too_few_points():
    # symmetric noise around y = 1 + 2e-6 x leaves the least-squares line unchanged
    pts = [(1e6, 3.0 + 0.5), (2e6, 5.0 - 1.0), (3e6, 7.0 + 0.5)]
    fit = bench.fit_line(pts)
    assert fit["marginal_us_per_row"] == pytest.approx(2.0, abs=1e-6)
    assert fit["fixed_s"] == pytest.approx(1.0, abs=1e-6)
    assert bench.fit_line([(1e6, 3.0)]) is None
    assert bench.fit_line([(1e6, 3.0), (1e6, 4.0)]) is None


def test_cost_curve_fits_each_stage_script_and_scan():
    c = bench.cost_curve(_doc())
    t = c["stacks"]["torch"]
    for s in STAGES:
        assert t["stages"][s]["fit"]["marginal_us_per_row"] == pytest.approx(STACK[s][1], abs=1e-3)
        assert t["stages"][s]["fit"]["fixed_s"] == pytest.approx(STACK[s][0], abs=1e-3)
        assert t["stages"][s]["script_fit"]["marginal_us_per_row"] == pytest.approx(SCRIPT[s][1], abs=1e-3)
    assert t["stages"]["train"]["ratio"] == pytest.approx(9.0 / 4.0, abs=0.01)
    assert t["total"]["fit"]["marginal_us_per_row"] == pytest.approx(18.5, abs=1e-3)
    assert t["total"]["ratio"] == pytest.approx(18.5 / 6.0, abs=0.01)
    assert c["scan"]["fit"]["marginal_us_per_row"] == pytest.approx(0.05, abs=1e-4)
    assert t["stages"]["validate"]["peak_rss_mb"] == [1001.0, 1003.0, 1010.0]


def test_targets_judged_only_where_the_scales_were_run():
    tg = bench.cost_curve(_doc())["stacks"]["torch"]["targets"]
    assert tg["marginal"]["met"] is False            # 3.08x > 2x
    assert tg["30x_in_20min"]["met"] is None and tg["peak_30x_vs_3x"]["met"] is None
    assert tg["100x_completes"]["met"] is None
    doc = _doc(scales=(3, 30))
    doc["runs"]["torch"]["30"]["peak_rss_mb"] = 1.6 * doc["runs"]["torch"]["3"]["peak_rss_mb"]
    tg = bench.cost_curve(doc)["stacks"]["torch"]["targets"]
    assert tg["30x_in_20min"]["met"] is True
    assert tg["peak_30x_vs_3x"]["met"] is False
    fast = {s: (f, us / 2) for s, (f, us) in SCRIPT.items()}  # stack at half the script's marginal
    assert bench.cost_curve(_doc(stack=fast))["stacks"]["torch"]["targets"]["marginal"]["met"] is True
    doc["runs"]["torch"]["30"] = {"scale": 30, "failed": "twinpipe run exit 137", "run_wall_s": 50.0}
    assert bench.cost_curve(doc)["stacks"]["torch"]["targets"]["30x_in_20min"]["met"] is False


def test_tfx_targets_add_an_absolute_marginal_cost_and_a_30x_peak_bound():
    doc = _doc(scales=(3, 30))
    doc["runs"] = {"tfx": doc["runs"].pop("torch")}   # 18.5 µs/row = 3.08x the script
    tg = bench.cost_curve(doc)["stacks"]["tfx"]["targets"]
    assert tg["marginal"]["met"] is True and tg["marginal_us"]["met"] is True
    assert tg["peak_30x"]["met"] is True and "100x_completes" not in tg
    slow = {s: (f, us * 10) for s, (f, us) in STACK.items()}   # 185 µs/row, 31x the script
    doc = _doc(scales=(3, 30), stack=slow)
    doc["runs"] = {"tfx-tfrecord": doc["runs"].pop("torch")}
    doc["runs"]["tfx-tfrecord"]["30"]["peak_rss_mb"] = 7000.0
    tg = bench.cost_curve(doc)["stacks"]["tfx-tfrecord"]["targets"]
    assert tg["marginal"]["met"] is False and tg["marginal_us"]["met"] is False
    assert tg["peak_30x"]["met"] is False


def test_merge_keeps_other_stacks_and_refuses_other_configurations(tmp_path):
    doc = _doc()
    bench.write_outputs(tmp_path, doc)
    cfg = {k: doc[k] for k in ("months", "workers", "epochs", "cpu_count")}
    again = bench.load_doc(tmp_path / "bench.json", cfg)
    assert set(again["runs"]["torch"]) == {"1", "3", "10"}
    with pytest.raises(SystemExit, match="epochs=1"):
        bench.load_doc(tmp_path / "bench.json", {**cfg, "epochs": 3})
    assert "| torch | train |" in (tmp_path / "bench.md").read_text()


def test_data_scaling_section_follows_the_numbers(tmp_path):
    bench.write_outputs(tmp_path, _doc())
    ds = report.data_scaling(json.loads((tmp_path / "bench.json").read_text()))
    assert set(ds) >= {"points", "cost_curve", "sentences"}
    assert ds["points"]["torch"]["rows"] == [ROWS[1], ROWS[3], ROWS[10]]
    first = ds["sentences"][0]
    assert "train takes the largest share, 9.00 µs/row" in first and "2.2x the script's train" in first
    assert "18.50 µs per extra row" in first
    assert "0.050 µs/row" in ds["sentences"][-1]  # the scan
    rows = html.data_scaling_rows(ds)
    assert ["torch", "train", "10.00", "9.000", "4.000", "2.25"] == rows[2][:6]
    page = html.data_scaling_html(ds)
    assert page.count("<img") == 2 and "Data scaling" in page

    # make validate the most expensive stage: the sentence names it instead
    heavier = dict(STACK, validate=(4.0, 20.0))
    ds2 = report.data_scaling(_doc(stack=heavier))
    assert "validate takes the largest share, 20.00 µs/row" in ds2["sentences"][0]
    assert "40.0x the script's validate" in ds2["sentences"][0]


def test_one_scale_says_no_marginal_cost():
    ds = report.data_scaling(_doc(scales=(1,)))
    assert "one scale only (1x)" in ds["sentences"][0]
