"""Per-replica reports (components/common/replicas.py): the digest tells replicas apart when and
only when their weights differ, and nothing is written unless the report folder is set."""

import json

import numpy as np

from components.common.replicas import REPORT_DIR_ENV, weights_digest, write_replica_report


def _weights():
    rng = np.random.default_rng(0)
    return [("dense/kernel", rng.normal(size=(4, 3)).astype(np.float32)),
            ("dense/bias", np.zeros(3, np.float32))]


def test_digest_is_equal_for_equal_weights_and_changes_with_one_bit_name_or_shape():
    base = weights_digest(_weights())
    assert weights_digest(_weights()) == base
    flipped = _weights()
    flipped[0][1].view(np.uint32)[0, 0] ^= 1  # one bit of one float
    assert weights_digest(flipped) != base
    assert weights_digest([("other", a) for _, a in _weights()]) != base
    assert weights_digest([(n, a.reshape(-1)) for n, a in _weights()]) != base
    assert weights_digest(reversed(_weights())) != base


def test_report_written_only_when_the_folder_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(REPORT_DIR_ENV, raising=False)
    assert write_replica_report("torch", 0, 2, "abc") is None
    monkeypatch.setenv(REPORT_DIR_ENV, str(tmp_path / "r"))
    path = write_replica_report("torch", 1, 2, "abc", steps=5)
    doc = json.loads(path.read_text())
    assert path.name == "torch-rank-1.json"
    assert (doc["rank"], doc["world_size"], doc["weights_sha256"], doc["steps"]) == (1, 2, "abc", 5)
    assert doc["hostname"] and list((tmp_path / "r").iterdir()) == [path]
