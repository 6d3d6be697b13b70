"""The storage layer against local folders and a real GCS JSON-API emulator (tests/gcs_emulator)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import storage


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    """The same tests on a local folder and on a fresh emulator bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("gcs_bucket") + "/prefix"


def test_join_keeps_the_double_slash():
    assert storage.join("gs://b/x", "spans", "span-1") == "gs://b/x/spans/span-1"
    assert storage.join("gs://b", "a") == "gs://b/a"
    assert storage.parent("gs://b/x/y") == "gs://b/x"
    assert storage.is_remote("gs://b/x") and not storage.is_remote("/tmp/gs:/b")
    assert storage.join("/tmp/a", "b") == "/tmp/a/b"


def test_write_read_list_glob_remove(root):
    f = storage.join(root, "a", "doc.json")
    assert not storage.exists(f)
    storage.write_json(f, {"k": 1})
    storage.write_text(storage.join(root, "a", "b", "t.txt"), "hé")
    storage.write_bytes(storage.join(root, "z.bin"), b"\x00\x01")
    assert storage.read_json(f) == {"k": 1}
    assert storage.read_text(storage.join(root, "a", "b", "t.txt")) == "hé"
    assert storage.listdir(root) == ["a", "z.bin"]
    assert storage.listdir(storage.join(root, "a")) == ["b", "doc.json"]
    assert storage.isdir(storage.join(root, "a")) and not storage.isdir(f)
    assert storage.glob(storage.join(root, "a", "*", "*.txt")) == [storage.join(root, "a", "b", "t.txt")]
    assert storage.listdir(storage.join(root, "missing")) == []
    storage.rm(storage.join(root, "a"), recursive=True)
    assert storage.listdir(root) == ["z.bin"]
    storage.rm(storage.join(root, "nothing-here"))  # missing is fine


def test_local_write_is_whole_file_and_leaves_no_temp(tmp_path):
    f = tmp_path / "x.json"
    storage.write_json(f, {"a": 1})
    storage.write_json(f, {"a": 2})
    assert storage.read_json(f) == {"a": 2}
    assert os.listdir(tmp_path) == ["x.json"]


def test_create_new_is_exclusive(root):
    marker = storage.join(root, "lock")
    assert storage.create_new(marker, b"first")
    assert not storage.create_new(marker, b"second")
    assert storage.read_bytes(marker) == b"first"


def test_upload_download_roundtrip(root, tmp_path):
    src = tmp_path / "src"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "v.index").write_bytes(b"idx")
    dest = storage.join(root, "model")
    written = storage.upload(src, dest)
    assert sorted(written) == [storage.join(dest, "saved_model.pb"),
                               storage.join(dest, "variables", "v.index")]
    back = storage.download(dest, tmp_path / "back")
    assert (tmp_path / "back" / "variables" / "v.index").read_bytes() == b"idx"
    assert back == str(tmp_path / "back")
    assert [rel for _, rel in storage.walk_files(dest)] == ["saved_model.pb", "variables/v.index"]


def test_pyarrow_reads_and_writes_through_the_layer(root):
    storage.makedirs(root)  # a local writer needs its folder; on GCS a no-op
    fs, path = storage.pyarrow_fs(storage.join(root, "t.parquet"))
    pq.write_table(pa.table({"x": [1, 2, 3]}), path, filesystem=fs)
    assert storage.exists(storage.join(root, "t.parquet"))
    assert pq.read_table(path, filesystem=fs).column("x").to_pylist() == [1, 2, 3]


def test_remote_never_touches_a_local_gs_folder(gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage.write_json(storage.join(gcs_bucket, "x", "y.json"), {})
    storage.makedirs(storage.join(gcs_bucket, "d"))
    assert not (tmp_path / "gs:").exists()
