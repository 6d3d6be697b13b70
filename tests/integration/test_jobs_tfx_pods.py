"""The TFX training job's pods, run here as their launcher would configure them.

No Kubernetes or Vertex is reachable, so the scheduling is ours, the rest is the job's: each
"pod" runs the compiled manifest's command and env (``$(VAR)`` expanded as the kubelet does), reads
the training spec the Trainer wrote to object storage (the GCS emulator), and gets the TF_CONFIG
its launcher writes — Volcano's ``tensorflow`` plugin (worker tasks only; the hosts are the svc
plugin's DNS names, localhost ports here) or Vertex (a chief pool + a worker pool). The pods train
together with MultiWorkerMirroredStrategy; only the chief writes the model and the metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.common import storage
from components.tfx import job as tfx_job
from tests.pods import small_transformed_span, tfx_pods, train_spec

# Slow (77 s on 2 cores): test_multinode covers the two-host MWMS rendezvous in `make test`, and
# tests/deploy/test_jobs_tfx.py the TF_CONFIG roles these pods derive.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Transformed train examples of a small real span (400 January rows, two features)."""
    base = tmp_path_factory.mktemp("tfx-pods")
    return (base, *small_transformed_span(base))


@pytest.mark.parametrize("launcher", ["volcano", "vertex"])
def test_job_pods_train_together_from_the_spec_on_object_storage(launcher, transformed, gcs_bucket,
                                                                 tmp_path):
    import portpicker

    base, contract, transform_output, train_files = transformed
    run_dir = storage.join(gcs_bucket, "pipeline_root", "train", "model_run")
    spec = train_spec(contract, transform_output, train_files, str(tmp_path / "serving"), run_dir,
                      scratch_dir=str(tmp_path))
    spec_uri = storage.join(run_dir, "train-spec.json")
    storage.write_json(spec_uri, spec)  # what Trainer.run_fn does before it submits
    job = tfx_job.ClusterJob(launcher=launcher, image="twinpipe-tfx:test", replicas=2,
                            contract_uri="gs://b/data/contracts/flights-0123456789ab.yaml")
    body = tfx_job.manifest(job, tfx_job.job_name(run_dir), spec_uri)
    pods = tfx_pods(body, launcher, [portpicker.pick_unused_port() for _ in range(2)])
    assert all(cmd[-1] == spec_uri for cmd, _ in pods)

    procs = []
    for cmd, env in pods:
        full = {**os.environ, **env, "PYTHONPATH": str(ROOT), "TWINPIPE_THREADS": "1",
                "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            full.pop(proxy, None)  # gRPC between the workers must not go to a proxy
        procs.append(subprocess.Popen([sys.executable, *cmd[1:]], env=full, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    metrics = storage.read_json(storage.join(run_dir, "train_metrics.json"))  # the chief's
    assert metrics["strategy"] == "MultiWorkerMirroredStrategy"
    assert metrics["workers"] == 2 and metrics["replicas"] == 2
    assert (tmp_path / "serving" / "saved_model.pb").exists()
    assert "contract gs://b/data/contracts/flights-0123456789ab.yaml" in outputs[0]
