"""The measuring code the report relies on: resource meter, latency harness, curves, LOC, scale."""

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from comparison.report import STAGE_CODE, code_lines, count_lines
from components.common.metrics import binary_metrics, calibration, roc_points
from components.common.resources import ResourceMeter
from components.common.serving_bench import latency


def test_meter_charges_a_child_process_cpu_to_the_stage_it_ran_in():
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"
    with ResourceMeter(interval=0.05) as m:
        m.enter("idle")
        time.sleep(0.3)
        m.enter("busy")
        subprocess.run([sys.executable, "-c", burn], check=True)
        m.enter(None)
    f = m.figures()
    assert f["busy"]["cpu_s"] >= 0.55
    assert f["idle"]["cpu_s"] < 0.2


def test_meter_sees_peak_memory_of_the_stage():
    def allocate():
        a = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        time.sleep(0.4)
        return float(a.sum())

    with ResourceMeter() as meter:
        meter.enter("call")
        t0 = time.perf_counter()
        allocate()
        wall = time.perf_counter() - t0
    fig = {"wall_s": wall, **meter.figures()["call"]}
    assert fig["peak_rss_mb"] >= 300
    assert fig["wall_s"] >= 0.4


class _SleepScorer:
    """A serving runtime whose call takes 2 ms, whatever the batch."""

    runtime = "sleep"

    def encode(self, table):
        return table.to_numpy()

    def score(self, encoded):
        time.sleep(0.002)
        return np.zeros(len(encoded))


def test_latency_harness_times_the_call_and_counts_rows():
    table = pd.DataFrame({"x": range(300)})
    out = latency(_SleepScorer(), table, batch_sizes=(1, 256), min_seconds=0.1, min_calls=10)
    assert set(out) == {"1", "256"}
    for b, r in out.items():
        assert 2.0 <= r["p50_ms"] <= r["p95_ms"] < 20
        assert r["calls"] >= 10
        assert r["rows_per_s"] == pytest.approx(int(b) / (r["p50_ms"] / 1e3), rel=0.5)


def test_roc_and_calibration_points_match_the_metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    probs = np.clip(labels * 0.3 + rng.random(5000) * 0.7, 0, 1)
    roc = roc_points(labels, probs, max_points=100)
    assert len(roc["fpr"]) <= 100 and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
    assert np.trapz(roc["tpr"], roc["fpr"]) == pytest.approx(binary_metrics(labels, probs)["auc"], abs=0.01)
    cal = calibration(labels, probs)
    assert sum(cal["count"]) == 5000
    assert cal["observed"][-1] > cal["observed"][0]


def test_code_lines_skip_blank_comment_and_docstring_lines():
    src = '"""mod doc"""\n\n# c\ndef f():\n    """doc\n    more"""\n    x = 1  # ok\n\n    return x\n'
    assert code_lines(src) == 3
    assert count_lines("components/common/split.py") > 5


def test_every_stage_code_entry_exists():
    for parts in STAGE_CODE.values():
        for specs in parts.values():
            for spec in specs:
                assert count_lines(spec) > 0, spec


def test_numpy_metrics_equal_scikit_learn_including_ties():
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score, roc_curve

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 3000)
    probs = np.round(np.clip(labels * 0.2 + rng.random(3000) * 0.8, 0, 1), 2)  # many ties
    m = binary_metrics(labels, probs)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert m["binary_accuracy"] == pytest.approx(accuracy_score(labels, probs >= 0.5))
    assert m["binary_crossentropy"] == pytest.approx(log_loss(labels, clipped), rel=1e-9)
    fpr, tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
    ours = roc_points(labels, probs, max_points=10_000)
    assert np.allclose(ours["fpr"], np.round(fpr, 5)) and np.allclose(ours["tpr"], np.round(tpr, 5))


def test_live_progress_opens_and_closes_one_line_per_stack_stage():
    import logging

    from infra.progress import RichStageHandler

    h = RichStageHandler()
    try:
        def emit(msg):
            h.emit(logging.LogRecord("twinpipe", logging.INFO, __file__, 1, msg, None, None))

        emit("[tfx][train] transform running")
        emit("[torch][validate] running")
        assert len(h.tasks) == 2
        emit("[tfx][train] transform finished in 3.0s")
        emit("[torch][validate] success in 1.2s")
        assert h.tasks == {}
        done = [t for t in h.progress.tasks if t.finished]
        assert len(done) == 2 and "transform" in done[0].description
    finally:
        h.close()


class _Halves:
    """A scorer (encode/score) that records each batch it scores."""

    def __init__(self):
        self.sizes = []

    def encode(self, table):
        return table["x"].to_numpy()

    def score(self, encoded):
        self.sizes.append(len(encoded))
        return (encoded / 2).reshape(-1, 1)


def test_predict_scores_in_batches_and_keeps_row_order():
    from components.common.serving_bench import predict

    s = _Halves()
    table = pd.DataFrame({"x": np.arange(10, dtype=np.float32)})
    got = predict(s, table, batch_size=4)
    assert s.sizes == [4, 4, 2] and got.shape == (10,)
    assert np.array_equal(got, np.arange(10) / 2)
    assert predict(s, table.iloc[:0]).shape == (0,)
