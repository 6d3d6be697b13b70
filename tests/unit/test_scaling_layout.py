"""The scaling probe's layout (N workers x T threads from the hardware), the per-worker thread knob
both stacks' workers honour, and scaling.json's efficiencies from the probe's phases."""

import pytest

from comparison.scaling import layout, scaling_doc, sentence
from components.common.threads import THREADS_ENV, threads_per_worker


def test_layout_is_two_single_thread_workers_on_cpu_and_one_worker_per_gpu():
    assert layout(0, 2) == {**layout(0, 2), "workers": 2, "threads_per_worker": 1, "gpus": 0}
    assert layout(0, 64)["threads_per_worker"] == 1  # T stays 1 on a big CPU box
    gpu = layout(4, 32)
    assert (gpu["workers"], gpu["threads_per_worker"], gpu["gpus"]) == (4, 8, 4)


def test_threads_per_worker_explicit_then_env_then_cores(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert threads_per_worker(2) == 4 and threads_per_worker(16) == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert threads_per_worker(2) == 3
    assert threads_per_worker(2, threads=1) == 1


def _phase(batch, world, sps, compute, comm, step):
    return {"per_worker_batch": batch, "global_batch": batch * world, "steps": 10,
            "samples_per_s": sps, "step_ms": 1.0,
            "split": {"steps": 10, "step_ms": step, "compute_ms": compute, "comm_ms": comm}}


def test_weak_and_strong_efficiency_against_one_worker_at_the_same_threads():
    one = {"threads": 1, "phases": [_phase(256, 1, 1000.0, 0.8, 0.0, 1.0)]}
    many = {"threads": 1, "phases": [_phase(256, 2, 1500.0, 0.8, 0.5, 1.5),
                                     _phase(128, 2, 900.0, 0.5, 0.5, 1.2)]}
    doc = scaling_doc("torch", layout(0, 2), 256, one, many, {"workers": 2})
    assert [(p["scaling"], p["workers"], p["global_batch"]) for p in doc["points"]] == [
        ("baseline", 1, 256), ("weak", 2, 512), ("strong", 2, 256)]
    assert doc["weak"]["efficiency"] == pytest.approx(1500 / (2 * 1000), abs=1e-3)
    assert doc["strong"]["efficiency"] == pytest.approx(900 / (2 * 1000), abs=1e-3)
    assert (doc["speedup"], doc["efficiency"]) == (doc["weak"]["speedup"], doc["weak"]["efficiency"])
    assert doc["points"][1]["split"]["other_ms"] == pytest.approx(0.2)
    line = sentence("PyTorch", doc)
    assert "weak-scaling efficiency 75%" in line and "strong 45%" in line and "(33% of the step)" in line


def test_one_gpu_has_no_multi_worker_points():
    one = {"threads": 4, "phases": [_phase(256, 1, 1000.0, 0.8, 0.0, 1.0)]}
    doc = scaling_doc("tfx", layout(1, 4), 256, one, None, {})
    assert [p["scaling"] for p in doc["points"]] == ["baseline"] and "weak" not in doc
    assert "nothing to scale to" in doc["skipped"] and sentence("TFX", doc) is None
    assert doc["speedup"] is None and doc["efficiency"] is None  # keys kept (benchmarks read them)


def test_each_local_tf_worker_gets_its_own_gpus():
    from components.common.threads import worker_gpu_env

    gpus = ["0", "1", "2", "3"]
    assert [worker_gpu_env(i, 2, gpus) for i in range(2)] == [
        {"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert [worker_gpu_env(i, 4, gpus)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == gpus
    shared = [worker_gpu_env(i, 3, ["5", "7"]) for i in range(3)]  # more workers than GPUs
    assert [e["CUDA_VISIBLE_DEVICES"] for e in shared] == ["5", "7", "5"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for e in shared)
    assert worker_gpu_env(0, 2, []) == {}  # CPU: the environment is left alone


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    from components.common.threads import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
