"""`twinpipe serve` (KServe's ModelServer over each stack's runtime) on the `both` run's pushes,
loopback only: the V2 answer is `twinpipe predict`'s, a push is picked up without a restart and
without a failed request, a bad path is one paragraph and exit 1, and the small load test that
the run's report measured has its figures and no error."""

import http.client
import os
import shutil
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from comparison.serving_load import eval_features
from components.common import registry, storage
from components.common.contract import load_contract
from infra.cli import main
from serving.server import Server, post_json, v2_request
from tests.integration.cli import twinpipe

pytestmark = pytest.mark.integration

STACKS = ("tfx", "torch")


def _dest(both, stack: str) -> str:
    _, runs, _ = both
    pushed = runs[stack]["stages"]["push"]["pushed_path"]
    assert pushed, f"the {stack} run pushed no model"
    return storage.parent(pushed)


def _rows(both, stack: str, n: int) -> pd.DataFrame:
    out, runs, _ = both
    return eval_features(out, runs[stack]["spans"], load_contract(), n)


def _copier(src):
    """A push's ``fill`` that copies the version folder ``src``."""
    def fill(tmp):
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return fill


@pytest.mark.parametrize("stack", STACKS)
def test_v2_infer_answers_what_twinpipe_predict_answers(both, stack, tmp_path):
    dest = _dest(both, stack)
    version = registry.serving_uri(dest)
    table = _rows(both, stack, 300)
    table.to_csv(tmp_path / "rows.csv", index=False)  # NaN -> empty cell = missing
    # `twinpipe predict`'s own code path, in this process (a subprocess would import TF again)
    assert main(["predict", "--model", version, "--input", str(tmp_path / "rows.csv"),
                 "--output", str(tmp_path / "scored.csv")]) == 0
    expected = pd.read_csv(tmp_path / "scored.csv")["probability"].to_numpy(np.float32)

    with Server(stack, dest, log_path=tmp_path / "serve.log") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        status, v2 = post_json(conn, f"/v2/models/{stack}/infer", v2_request(table))
        assert status == 200, v2
        (out,) = v2["outputs"]
        assert out["name"] == "probability" and out["shape"] == [len(table)]
        assert v2["model_version"] == storage.basename(version)
        assert v2["parameters"]["validate_ms"] > 0 and v2["parameters"]["score_ms"] > 0
        np.testing.assert_array_equal(np.array(out["data"], np.float32), expected)
        # V1 on the same rows, row-wise
        head = table.head(5).astype(object)
        status, v1 = post_json(conn, f"/v1/models/{stack}:predict",
                               {"instances": head.where(head.notna(), None).to_dict("records")})
        assert status == 200, v1
        np.testing.assert_array_equal(np.array(v1["predictions"], np.float32), expected[:5])
        # a row that breaks the contract: HTTP 400 naming column and rule, the server goes on
        bad = v2_request(table.head(2))
        bad["inputs"][0]["data"][1] = -5
        status, err = post_json(conn, f"/v2/models/{stack}/infer", bad)
        assert status == 400 and bad["inputs"][0]["name"] in err["error"] and "range" in err["error"]
        assert post_json(conn, f"/v2/models/{stack}/infer", v2_request(table.head(1)))[0] == 200


def test_a_new_push_is_served_without_a_restart_or_a_failed_request(both, tmp_path):
    """Clients keep sending while a new version is pushed into the destination; every request
    succeeds and the answers move from the old version to the new one, never back."""
    fill = _copier(registry.serving_uri(_dest(both, "torch")))
    dest = tmp_path / "pushed"
    first = registry.push_atomic(dest, fill, {"stack": "torch", "run": "first"})
    request = v2_request(_rows(both, "torch", 3))
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    with Server("torch", str(dest), poll_s=0.2, log_path=tmp_path / "serve.log") as srv:
        def client():
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            while not stop.is_set():
                status, doc = post_json(conn, "/v2/models/torch/infer", request)
                seen.append((status, doc.get("model_version") if status == 200 else str(doc)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            while len(seen) < 20:
                time.sleep(0.05)
            second = registry.push_atomic(dest, fill, {"stack": "torch", "run": "second"})
            deadline = time.monotonic() + 60  # a bound, not an assertion on speed
            while time.monotonic() < deadline and (200, second.name) not in seen[-8:]:
                time.sleep(0.05)
            n = len(seen)
            while len(seen) < n + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    versions = [v for _, v in seen]
    assert versions[0] == first.name and versions[-1] == second.name
    switch = versions.index(second.name)
    # 4 clients: a request that took the old model before the swap may answer just after it
    assert set(versions[switch + 4:]) == {second.name}, versions


def test_a_push_on_object_storage_is_served_and_the_old_download_removed(
        both, tmp_path, gcs_bucket, monkeypatch):
    """A gs:// destination: the server downloads the version it serves, switches to a newer push
    without a restart, and removes the download it no longer serves."""
    fill = _copier(registry.serving_uri(_dest(both, "torch")))
    dest = f"{gcs_bucket}/torch/pushed"
    first = storage.basename(str(registry.push_atomic(dest, fill, {"stack": "torch", "run": "1"})))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the server's runtime downloads to
    request = v2_request(_rows(both, "torch", 3))
    with Server("torch", dest, poll_s=0.2, log_path=tmp_path / "serve.log") as srv:
        (workdir,) = tmp_path.glob("twinpipe-serve-torch-*")
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        status, doc = post_json(conn, "/v2/models/torch/infer", request)
        assert (status, doc["model_version"]) == (200, first)
        second = storage.basename(str(registry.push_atomic(dest, fill,
                                                           {"stack": "torch", "run": "2"})))
        deadline = time.monotonic() + 60  # a bound, not an assertion on speed
        while doc.get("model_version") != second and time.monotonic() < deadline:
            time.sleep(0.2)
            status, doc = post_json(conn, "/v2/models/torch/infer", request)
            assert status == 200, doc
        assert doc["model_version"] == second
        while len(list(workdir.iterdir())) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the swap is answered with before the old copy is removed
        held = sorted(p.name for p in workdir.iterdir())
        assert len(held) == 1 and first not in held[0], held
    assert not workdir.exists()  # the runtime removes its downloads at exit


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def test_a_dead_runtime_stops_the_server_with_exit_1(both, tmp_path):
    """The model runtime killed from outside (as an OOM kill would): the front does not go on
    answering 500 while ready — it stops and exits 1, so a pod's container is restarted."""
    log = tmp_path / "serve.log"
    with Server("torch", _dest(both, "torch"), log_path=log) as srv:
        (runtime,) = _children(srv.pid)
        os.kill(runtime, signal.SIGKILL)
        assert srv.proc.wait(60) == 1
    text = log.read_text()
    assert "the model runtime exited (code -9)" in text and "Traceback" not in text


def test_serve_on_a_bad_path_is_one_paragraph_and_exit_1(both, tmp_path):
    proc = twinpipe("serve", "--stack", "tfx", "--model", str(tmp_path / "nowhere"), "--port", "1",
                    check=False, timeout=120)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert "Traceback" not in err and "no pushed model there" in err and len(err.splitlines()) == 1
    # the other stack's destination: refused by the runtime before the server listens
    proc = twinpipe("serve", "--stack", "tfx", "--model", _dest(both, "torch"), "--port", "1",
                    check=False, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "--stack tfx serves" in proc.stderr


def test_the_runs_small_load_test_has_its_figures_and_no_error(both):
    """The `both` run's report measured serving_load with short levels (tests/conftest.py sets them):
    every level sent requests, none failed, and the figures are there for both stacks."""
    import json

    out, _, _ = both
    data = json.loads((out / "report" / "report.json").read_text())
    runs = data["serving_load"]["runs"]
    assert set(runs) == set(STACKS)
    for stack, doc in runs.items():
        assert [lv["clients"] for lv in doc["levels"]] == [1, 8, 32], stack
        for lv in doc["levels"]:
            assert lv["requests"] > 0 and lv["errors"] == 0 and lv["error_rate"] == 0, (stack, lv)
            assert lv["throughput_rps"] > 0 and 0 < lv["p50_ms"] <= lv["p99_ms"], (stack, lv)
            assert lv["server_cpu_cores"] > 0 and lv["server_peak_rss_mb"] > 50, (stack, lv)
            assert lv["server_validate_ms_p50"] > 0 and lv["server_score_ms_p50"] > 0, (stack, lv)
        current = storage.read_json(storage.join(_dest(both, stack), registry.CURRENT))
        assert doc["model_version"] == str(current["version"]), stack
    html = (out / "report" / "index.html").read_text()
    assert "id='serving-load'" in html and "throughput and p99 latency" in html
