"""Registry and run lock on object storage, against a real GCS JSON-API emulator (no rename, no
flock there): versions count by push.json, names and the lock are claimed with ifGenerationMatch=0."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from components.common import registry, storage
from components.common.runlock import BusyError, RunLock

ROOT = Path(__file__).resolve().parents[2]


def _model(text: str):
    def fill(d: Path) -> None:
        (d / "variables").mkdir()
        (d / "saved_model.pb").write_text(text)
        (d / "variables" / "variables.index").write_text(text)
    return fill


def test_push_publishes_versions_and_the_serving_pointer(gcs_bucket):
    dest = f"{gcs_bucket}/run/tfx/pushed"
    assert registry.latest(dest) is None and registry.serving_uri(dest) is None
    v1 = registry.push_atomic(dest, _model("1"), {"auc": 0.7})
    v2 = registry.push_atomic(dest, _model("2"), {"auc": 0.8})
    assert isinstance(v2, str) and v2.startswith(f"{dest}/") and int(v2.rsplit("/", 1)[1]) > int(
        v1.rsplit("/", 1)[1])
    assert registry.versions(dest) == [v1, v2]
    assert registry.serving_uri(dest) == v2
    assert storage.read_json(f"{dest}/{registry.CURRENT}") == {"version": int(v2.rsplit("/", 1)[1]),
                                                               "uri": v2}
    assert storage.read_json(f"{v2}/push.json")["auc"] == 0.8
    assert storage.read_text(f"{v2}/variables/variables.index") == "2"


def test_a_failed_or_unfinished_push_is_no_version(gcs_bucket, tmp_path):
    dest = f"{gcs_bucket}/pushed"
    good = registry.push_atomic(dest, _model("ok"), {})

    def broken(d: Path) -> None:
        (d / "saved_model.pb").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.push_atomic(dest, broken, {})
    # A push killed mid-upload: claimed name and model files, no push.json.
    storage.write_text(f"{dest}/99999999999999/{registry.CLAIM}", "{}")
    storage.write_text(f"{dest}/99999999999999/saved_model.pb", "half")
    assert registry.versions(dest) == [good] and registry.serving_uri(dest) == good
    assert registry.remove_leftovers(dest) == [f"{dest}/99999999999999"]
    assert storage.listdir(dest) == [good.rsplit("/", 1)[1], registry.CURRENT]
    local = registry.local_copy(good, tmp_path)
    assert (local / "saved_model.pb").read_text() == "ok" and (local / "push.json").exists()


def test_concurrent_pushes_get_distinct_versions(gcs_bucket):
    dest = f"{gcs_bucket}/pushed"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from components.common import registry
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        v = registry.push_atomic({dest!r}, lambda d: (d / "m").write_text(sys.argv[2]),
                                 {{"who": sys.argv[2]}})
        print(v)
        """)
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start), str(i)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(names)) == 4 and sorted(registry.versions(dest)) == sorted(names)
    assert sorted(storage.read_json(f"{v}/push.json")["who"] for v in names) == ["0", "1", "2", "3"]
    assert storage.read_json(f"{dest}/current.json")["uri"] == registry.latest(dest)


def test_object_lock_refuses_a_second_run_and_is_removed_on_release(gcs_bucket):
    out = f"{gcs_bucket}/run1"
    with RunLock(out, "run"):
        holder = storage.read_json(f"{out}/.twinpipe.lock")
        assert holder["command"] == "run" and holder["token"]
        with pytest.raises(BusyError) as e:
            RunLock(out, "validate").acquire()
        said = str(e.value)
        assert f"{out}/.twinpipe.lock" in said and f"pid {holder['pid']}" in said
        assert "\n" not in said
    assert not storage.exists(f"{out}/.twinpipe.lock")
    with RunLock(out, "run"):  # free again
        pass


def test_object_lock_race_has_one_winner(gcs_bucket):
    out = f"{gcs_bucket}/race"
    script = textwrap.dedent(f"""
        import sys, time
        from components.common.runlock import BusyError, RunLock
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        try:
            RunLock({out!r}, "run").acquire()   # never released: the winner keeps it
            print("won")
        except BusyError:
            print("busy")
        """)
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(5)]
    said = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert said == ["busy"] * 4 + ["won"]
