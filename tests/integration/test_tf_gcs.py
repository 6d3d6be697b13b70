"""TensorFlow's own GCS filesystem (``tf.io.gfile`` on ``gs://``) against the GCS emulator.

TF cannot be pointed at an emulator by configuration (its endpoints are compile-time constants),
so the TF code runs in the network-namespace sandbox of tests/gcs_tf.py: inside, the Google API
host names resolve to a TLS proxy that routes to the same emulator gcsfs talks to. The test shows
that TF's requests really took that route (the proxy saw them, under the Google host names), that
TF's gfile, SavedModel and TFRecord I/O work on the bucket, and that what TF wrote is what
components.common.storage (gcsfs) lists and reads, and the other way round: one bucket, two layers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from components.common import registry, storage
from tests.gcs_emulator import GcsEmulator
from tests.gcs_tf import GCS_HOSTS, tf_gcs_sandbox
from tests.netns import NetnsUnavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tf_emulator(tmp_path_factory):
    """An emulator with memory storage: TF writes directory-marker objects (``d/``) next to
    objects below them, which the emulator's disk store cannot hold (tests/gcs_emulator.py)."""
    with GcsEmulator(tmp_path_factory.mktemp("gcs-tf") / "data", in_memory=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def sandbox(tf_emulator, tmp_path_factory):
    try:
        with tf_gcs_sandbox(tf_emulator.host, tmp_path_factory.mktemp("sandbox")) as sb:
            yield sb
    except NetnsUnavailable as e:
        pytest.fail(f"TF-on-GCS tests need Linux network namespaces (root + iproute2), as CI has: "
                    f"{e}", pytrace=False)


@pytest.fixture
def bucket(tf_emulator, monkeypatch, request):
    """A fresh bucket; this process's gcsfs talks to the same emulator directly."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", tf_emulator.host)
    return tf_emulator.bucket(f"tf-{request.node.name.replace('_', '-')[:40]}-{time.time_ns() % 10**6}")


def test_tf_gfile_savedmodel_tfrecord_on_one_bucket_with_gcsfs(sandbox, bucket):
    prefix = f"{bucket}/probe"
    storage.write_text(f"{prefix}/from-gcsfs.txt", "written by gcsfs")
    before = len(sandbox.requests)

    t0 = time.monotonic()
    proc = sandbox.run([sys.executable, "-m", "tests.integration.tf_gcs_probe", prefix],
                       timeout_s=120, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[test][tf-gcs] probe ran in {elapsed:.1f} s; {len(sandbox.requests) - before} requests "
          f"through the proxy")

    # TF's client went to the Google host names, over TLS, and was routed to the emulator.
    tf_requests = [r for r in sandbox.requests[before:] if r.tls]
    assert {r.host for r in tf_requests} == set(GCS_HOSTS)
    methods = {(r.method, r.path.split("/o")[0]) for r in tf_requests}
    assert ("POST", f"/upload/storage/v1/b/{bucket[5:]}") in methods  # uploads
    assert any(r.path.endswith("/rewriteTo/b/" + bucket[5:] + "/o/" + "probe%2Ffiles%2Frenamed.txt")
               for r in tf_requests)  # rename = rewrite + delete
    assert not [r for r in tf_requests if r.status >= 500]

    # What TF saw.
    assert seen["from_gcsfs"] == "written by gcsfs"
    assert seen["listdir"] == ["a.txt", "b.txt", "big.bin", "sub/"]
    assert seen["big_slice_ok"] and seen["big_size"] == 1 << 20
    assert seen["after_rename"] == {"old": False, "new": "alpha"}
    assert seen["glob"] == [f"{prefix}/files/b.txt", f"{prefix}/files/renamed.txt"]
    assert seen["isdir_sub"] and seen["after_remove"] is False
    assert seen["model_scores_identical"]
    assert seen["tfrecord_values"] == list(range(50))

    # What gcsfs sees in the same bucket.
    assert storage.read_text(f"{prefix}/files/renamed.txt") == "alpha"
    assert storage.read_text(f"{prefix}/files/sub/c.txt") == "gamma"
    assert not storage.exists(f"{prefix}/files/a.txt") and not storage.exists(f"{prefix}/files/b.txt")
    assert len(storage.read_bytes(f"{prefix}/files/big.bin")) == 1 << 20
    model_files = {u.split("/model/", 1)[1] for u in storage.find(f"{prefix}/model")}
    assert {"saved_model.pb", "variables/variables.index"} <= model_files
    assert any(f.startswith("variables/variables.data-") for f in model_files)
    assert storage.read_bytes(f"{prefix}/examples/data.tfrecord.gz")[:2] == b"\x1f\x8b"  # gzip


@pytest.mark.slow  # 3-4.5 min on the shared 2-core machine (every artifact through the proxy)
def test_tfx_pipeline_with_its_roots_on_the_bucket(sandbox, bucket, tmp_path):
    """The TFX pipeline (LocalDagRunner, the factory `twinpipe run` uses) with pipeline root,
    spans, schema, gate reports and push destination on the bucket; MLMD local. Every node
    completes: TF's GCS client carries ExampleGen/StatisticsGen/Transform/Trainer/Evaluator
    artifacts, gcsfs the gate, the baseline lookup and the push."""
    prefix = f"{bucket}/tfx"
    t0 = time.monotonic()
    proc = sandbox.run([sys.executable, "-m", "tests.integration.tfx_gcs_driver", prefix,
                        str(tmp_path)], timeout_s=540, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[test][tfx-gcs] pipeline on gs:// ran in {elapsed:.1f} s: {result['nodes']}")
    assert result["error"] is None, result.get("traceback")
    assert set(result["nodes"].values()) == {"COMPLETE"} and len(result["nodes"]) == 10

    # Artifacts landed in the bucket (listed through gcsfs), nothing in a local gs: folder.
    assert not (ROOT / "gs:").exists() and not (tmp_path / "gs:").exists()
    artifacts = {u[len(f"{prefix}/root/"):] for u in storage.find(f"{prefix}/root")}
    for node in ("ingest/examples", "statistics/statistics", "anomalies/anomalies",
                 "transform/transform_graph", "train/model", "evaluate/evaluation",
                 "evaluate/blessing"):
        assert any(a.startswith(node + "/") for a in artifacts), node
    assert storage.read_json(f"{prefix}/validation/gate.json")["spans"] == [201301]
    # The push is complete: push.json (written last) next to the SavedModel files.
    (version,) = [v for v in storage.listdir(f"{prefix}/pushed") if storage.exists(
        f"{prefix}/pushed/{v}/{registry.PUSH_RECORD}")]
    pushed = set(storage.listdir(f"{prefix}/pushed/{version}"))
    assert {"saved_model.pb", "variables", "signature.json", registry.PUSH_RECORD} <= pushed
