"""``twinpipe run --out gs://... --input gs://...`` against a real GCS JSON-API emulator.

Everything is asserted IN THE BUCKET (listed through gcsfs, i.e. over the emulator's HTTP API):
the spans generation and its pointer, gate.json, run.json, the pushed version with push.json and
the serving pointer, the report; and that nothing landed in a local ``gs:`` folder. A second run
into the same OUT while the lock object exists is refused with one paragraph.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.common import registry, storage
from components.common.contract import load_contract
from components.common.runlock import RunLock
from components.common.sources import load_default_table
from components.common.spans import resolve_spans
from tests.integration.cli import ROOT, twinpipe

pytestmark = pytest.mark.integration

# The serving runtime's files per stack (what KServe's model server loads) + the completion mark.
SERVED = {"torch": {"model.onnx", "signature.json", registry.PUSH_RECORD},
          "tfx": {"saved_model.pb", "variables", "signature.json", registry.PUSH_RECORD}}


def _inputs(bucket: str, tmp: Path) -> tuple[str, Path]:
    """Months 1-2 of the packaged flights as gs://BUCKET/in/flights.csv, and a contract whose
    blessing accepts any model (lower bound 0, no regression limit): the test is about where
    the bytes go, not how good a model 1 epoch on a sample makes."""
    doc = yaml.safe_load((ROOT / "components/common/flights.yaml").read_text())
    doc["blessing"] = {"metric": "auc", "lower_bound": 0.0, "max_regression": 1.0}
    contract = tmp / "contract.yaml"
    contract.write_text(yaml.safe_dump(doc))
    table, _ = load_default_table(load_contract())
    with storage.open(f"{bucket}/in/flights.csv", "w") as f:
        table[table["month"].isin([1, 2])].to_csv(f, index=False)
    return f"{bucket}/in/flights.csv", contract


def _run_into_bucket(bucket: str, tmp: Path, monkeypatch, stack: str, *extra: str) -> str:
    monkeypatch.chdir(tmp)  # a pathlib bug would write ./gs:/...: checked below
    src, contract = _inputs(bucket, tmp)
    out = f"{bucket}/run1"
    proc = twinpipe("run", "--stack", stack, "--input", src, "--contract", str(contract),
                    "--months", "1-2", "--sample", "3000", "--epochs", "1", "--workers", "1",
                    "--no-scaling-probe", "--measure", "serving_load", "--out", out, *extra)
    assert f"{out}/" in proc.stdout  # summaries name the bucket, not the scratch folder
    assert not (tmp / "gs:").exists() and not (ROOT / "gs:").exists()
    return out


def _assert_in_bucket(out: str, stacks: tuple[str, ...]) -> None:
    spans = resolve_spans(f"{out}/spans")
    assert spans != f"{out}/spans" and storage.basename(spans).startswith("gen-")
    assert [n for n in storage.listdir(spans) if n.startswith("span-")] == ["span-201301",
                                                                             "span-201302"]
    assert storage.glob(f"{spans}/span-201301/train/*.parquet")
    assert storage.exists(f"{spans}/history/span-201302.json")
    assert not storage.exists(f"{out}/.twinpipe.lock")  # released
    for stack in stacks:
        run = storage.read_json(f"{out}/{stack}/run.json")
        assert run["failed_stage"] is None and run["stages"]["push"]["pushed"] is True
        gate = storage.read_json(f"{out}/{stack}/validation/gate.json")
        assert gate["checks"] is not None
        dest = f"{out}/{stack}/pushed"
        (version,) = registry.versions(dest)
        assert run["stages"]["push"]["pushed_path"] == version
        # item 7: what a server is pointed at resolves to the complete pushed model
        uri = registry.serving_uri(dest)
        assert uri == version == storage.read_json(f"{dest}/current.json")["uri"]
        assert SERVED[stack] <= set(storage.listdir(uri)), storage.listdir(uri)
        assert storage.read_json(f"{uri}/push.json")["stack"] == stack
        assert "/tmp/" not in json.dumps(run["stages"]["validate"])  # paths point into OUT


def _assert_second_run_refused(out: str) -> None:
    with RunLock(out, "run"):  # a run in progress holds OUT
        proc = twinpipe("run", "--stack", "torch", "--out", out, "--no-report", check=False)
    assert proc.returncode == 1
    said = proc.stderr.strip().splitlines()[-1]
    assert "in use by another twinpipe run" in said and f"{out}/.twinpipe.lock" in said
    assert "Traceback" not in proc.stderr


def test_torch_run_into_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    out = _run_into_bucket(gcs_bucket, tmp_path, monkeypatch, "torch")
    _assert_in_bucket(out, ("torch",))
    assert storage.exists(f"{out}/report/index.html") and storage.exists(f"{out}/report/report.json")
    _assert_second_run_refused(out)


@pytest.mark.slow
def test_both_stacks_run_into_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    out = _run_into_bucket(gcs_bucket, tmp_path, monkeypatch, "both")
    _assert_in_bucket(out, ("tfx", "torch"))
    assert storage.exists(f"{out}/report/index.html") and storage.exists(f"{out}/report/report.json")
    _assert_second_run_refused(out)


def test_validate_reads_and_writes_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table, _ = load_default_table(load_contract())
    with storage.open(f"{gcs_bucket}/in/jan.csv", "w") as f:
        table[table["month"] == 1].head(400).to_csv(f, index=False)
    out = f"{gcs_bucket}/gate"
    proc = twinpipe("validate", f"{gcs_bucket}/in/jan.csv", "--out", out)
    assert f"Report: {out}/validation/gate.json" in proc.stdout
    assert storage.read_json(f"{out}/validation/gate.json")["checks"] is not None
    assert "span-201301" in storage.listdir(resolve_spans(f"{out}/spans"))
    assert not (tmp_path / "gs:").exists()
