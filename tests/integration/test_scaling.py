"""The scaling probe of the `--stack both` run (2 workers on this CPU machine): both stacks measured
1 and 2 workers at 1 thread per worker, weak (per-worker batch kept) and strong (global batch
kept), with each step's compute and all-reduce timed apart; the report shows it."""

import json
import os

import pytest

from comparison.scaling import layout
from components.common.threads import gpu_count

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stack", ["tfx", "torch"])
def test_probe_scales_at_fixed_threads_with_weak_strong_and_a_step_split(both, stack):
    out, runs, _ = both
    sc = json.loads((out / stack / "scaling.json").read_text())
    lay = sc["layout"]
    want = layout(gpu_count(), os.cpu_count() or 1)  # CPU (CI): 2 workers x 1 thread
    assert (lay["gpus"], lay["workers"], lay["threads_per_worker"]) == (
        want["gpus"], want["workers"], want["threads_per_worker"])
    points = {p["scaling"]: p for p in sc["points"]}
    n = want["workers"]
    assert [(p["scaling"], p["workers"]) for p in sc["points"]] == [
        ("baseline", 1), ("weak", n), ("strong", n)]
    # the thread count each worker's framework reported running with, not the one asked for
    t = want["threads_per_worker"]
    assert all(p["threads"] == t for p in sc["points"]), [p["threads"] for p in sc["points"]]
    batch = sc["per_worker_batch"]
    assert batch == runs[stack]["stages"]["train"]["global_batch"] // runs[stack]["workers"]
    assert (points["weak"]["per_worker_batch"], points["weak"]["global_batch"]) == (batch, n * batch)
    assert points["strong"]["global_batch"] == points["baseline"]["global_batch"] == batch
    base = points["baseline"]["samples_per_s"]
    assert base > 0
    for kind in ("weak", "strong"):
        # the report keeps 3 decimals: rounding alone moves an efficiency by up to 5e-4
        assert sc[kind]["efficiency"] == pytest.approx(
            points[kind]["samples_per_s"] / (n * base), rel=0.01, abs=5e-4), kind
        assert sc[kind]["efficiency"] > 0
    assert (sc["speedup"], sc["efficiency"]) == (sc["weak"]["speedup"], sc["weak"]["efficiency"])
    for kind in ("weak", "strong"):
        split = points[kind]["split"]
        assert split["compute_ms"] > 0 and split["comm_ms"] > 0, (kind, split)
        assert split["compute_ms"] + split["comm_ms"] <= split["step_ms"] + 1e-3, (kind, split)
    assert points["baseline"]["split"]["compute_ms"] > 0
    assert sc["split_method"] and sc["caveat"]


def test_report_shows_the_fixed_thread_scaling(both):
    out, _, _ = both
    data = json.loads((out / "report" / "report.json").read_text())
    html = (out / "report" / "index.html").read_text()
    for stack, name in (("tfx", "TFX"), ("torch", "PyTorch")):
        sc = data["runs"][0]["stacks"][stack]["scaling"]
        line = next(s for s in data["summary"] if s.startswith(name) and "weak-scaling" in s)
        assert f"{sc['weak']['efficiency']:.0%}" in line and f"{sc['strong']['efficiency']:.0%}" in line
    assert "compute vs all-reduce" in html and "How the split was measured" in html
